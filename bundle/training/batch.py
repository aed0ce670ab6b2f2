"""The trainer's view of a batch: its keys moved to the device, and the rows the fake labels are drawn from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "BATCH_KEYS",
    "as_plain_tensor",
    "fake_label_indices",
    "fake_label_rows",
    "masked_labels",
    "prepare_emixer_batch",
]

IMAGE, LABELS, REPORT, NUM_SENTENCES, LABELLED = "image", "labels", "report_tokens", "report_num_sentences", "labelled"
#: Batch keys the trainer reads; ``report_num_sentences`` and ``labelled`` are optional.
BATCH_KEYS = (IMAGE, LABELS, REPORT, NUM_SENTENCES, LABELLED)


def as_plain_tensor(value: Any) -> Any:
    """A MetaTensor as a plain tensor (metadata tracking costs time in every op), anything else unchanged."""
    as_tensor = getattr(value, "as_tensor", None)
    return as_tensor() if callable(as_tensor) else value


def prepare_emixer_batch(
    batchdata: Mapping[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
) -> dict[str, torch.Tensor]:
    """Pick the trainer's keys from a collated batch and move them to ``device``.

    Returns ``image`` (float), ``labels`` (float ``[B, k]``), ``report_tokens`` (long ``[B, S, W]``), optionally
    ``report_num_sentences`` (long ``[B]``) and ``labelled`` (float ``[B]``, 1 = labels kept; all ones if absent).
    """
    if not isinstance(batchdata, Mapping):
        raise TypeError(f"the EMIXER trainer needs dict batches, got {type(batchdata).__name__}")
    missing = [key for key in (IMAGE, LABELS, REPORT) if key not in batchdata]
    if missing:
        raise KeyError(
            f"batch has no {missing}; the EMIXER trainer needs {list(BATCH_KEYS[:3])}; got {list(batchdata)}"
        )
    out: dict[str, torch.Tensor] = {}
    for key in BATCH_KEYS:
        if key in batchdata:
            value = torch.as_tensor(as_plain_tensor(batchdata[key]))
            value = value.float() if key in (IMAGE, LABELS, LABELLED) else value.long()
            out[key] = value.to(device=device, non_blocking=non_blocking, **kwargs)
    return out


def masked_labels(batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The batch's labels (zeros on unlabelled rows) and its ``labelled`` mask (None when absent)."""
    labelled = batch.get(LABELLED)
    labels = batch[LABELS] if labelled is None else batch[LABELS] * labelled.reshape(-1, 1)
    return labels, labelled


def fake_label_indices(
    labelled: torch.Tensor | None, batch_size: int, draws: int, size: int | None = None
) -> torch.Tensor | None:
    """Row indices ``[draws, size]`` into a batch's labels for ``draws`` sets of fake labels.

    All items labelled: a random permutation per draw (the batch's label multiset exactly). Some labelled:
    uniform draws with replacement among the labelled rows. None labelled: ``None`` (fakes get zero labels).
    Runs on the CPU (no device synchronisation). ``size`` defaults to ``batch_size``.
    """
    size = batch_size if size is None else size
    if labelled is None or bool((labelled > 0).all()):
        if size == batch_size:
            return torch.argsort(torch.rand(draws, batch_size), dim=1)
        return torch.randint(batch_size, (draws, size))
    rows = torch.nonzero(labelled > 0).flatten()
    if rows.numel() == 0:
        return None
    return rows[torch.randint(rows.numel(), (draws, size))]


def fake_label_rows(
    batchdata: Mapping[str, Any], batch_size: int, draws: int, size: int, device: torch.device, non_blocking: bool
) -> torch.Tensor | None:
    """:func:`fake_label_indices` for a collated batch, drawn on the CPU from its ``labelled`` mask (if any) and then
    moved to ``device``."""
    labelled = batchdata.get(LABELLED) if isinstance(batchdata, Mapping) else None
    if labelled is not None:
        labelled = torch.as_tensor(as_plain_tensor(labelled)).flatten().cpu()
    index = fake_label_indices(labelled, batch_size, draws, size)
    return None if index is None else index.to(device=device, non_blocking=non_blocking)
