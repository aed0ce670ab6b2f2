"""Drawing paired samples: :class:`EMIXERSampler`, a ``monai.engines.Evaluator`` whose iteration draws each sample's
latent from its own seed (so the output does not depend on the batch size, and an interrupted run resumes exactly),
runs the generator through the ``inferer`` and greedy-decodes the report with the report decoder from the generated
image alone (``report_source="image"``, the default), or, for a ``label_conditioned`` decoder, from the conditioning
labels (``report_source="labels"``: label-conditioned writing, whose reports restate the labels they are then scored
against).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from ignite.engine import Engine
from monai.engines import Evaluator
from monai.inferers import Inferer, SimpleInferer

__all__ = [
    "REPORT_SOURCES",
    "TRUNCATION_FLOOR",
    "EMIXERSampler",
    "check_report_source",
    "check_truncation",
    "sample_latents",
]

#: What the report decoder writes a generated image's report from: the image alone, or the conditioning labels.
REPORT_SOURCES: tuple[str, ...] = ("image", "labels")

#: The smallest truncation accepted. Redrawing keeps an entry once ``|z| <= truncation``, which a draw hits with
#: probability about ``0.8 * truncation`` for small values: at this floor a 120-entry latent needs some hundreds of
#: rounds, while 1e-7 would need billions (a run that never ends).
TRUNCATION_FLOOR = 0.01

# Redraw rounds after which sample_latents gives up: far beyond what the floor needs (about 1,500 rounds for a
# 10,000-entry latent at the floor), so only a broken random source reaches it.
_MAX_REDRAW_ROUNDS = 100_000


def check_truncation(truncation: float | None) -> float | None:
    """``truncation`` checked: None (no truncation) or a number >= :data:`TRUNCATION_FLOOR`; a ValueError naming
    ``truncation`` and the allowed range otherwise (a smaller value makes the redraw loop run for ever)."""
    if truncation is None:
        return None
    try:
        value = float(truncation)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(truncation, bool) or math.isnan(value) or value < TRUNCATION_FLOOR:
        raise ValueError(
            f"truncation={truncation!r} is out of range: it must be a number >= {TRUNCATION_FLOOR} "
            "(or null for no truncation)"
        )
    return value


def sample_latents(seeds: Iterable[int], latent_dim: int, truncation: float | None = None) -> torch.Tensor:
    """One latent per seed ``[B, latent_dim]`` from its own generator, so a sample depends on its seed alone.

    ``truncation``: BigGAN's truncation trick; entries with ``|z| > truncation`` are redrawn until inside. It is
    checked by :func:`check_truncation` (at least :data:`TRUNCATION_FLOOR`), and the redraw rounds are bounded, so
    the loop always ends.
    """
    truncation = check_truncation(truncation)
    out = []
    for seed in seeds:
        rng = torch.Generator().manual_seed(int(seed))
        z = torch.randn(latent_dim, generator=rng)
        if truncation is not None:
            outside = z.abs() > truncation
            rounds = 0
            while bool(outside.any()):
                rounds += 1
                if rounds > _MAX_REDRAW_ROUNDS:
                    raise RuntimeError(
                        f"truncation={truncation}: latent of seed {seed} still has {int(outside.sum())} entries "
                        f"outside after {_MAX_REDRAW_ROUNDS} redraw rounds"
                    )
                z[outside] = torch.randn(int(outside.sum()), generator=rng)
                outside = z.abs() > truncation
        out.append(z)
    return torch.stack(out)


def check_report_source(report_source: str, report_decoder: nn.Module) -> str:
    """``report_source`` checked against :data:`REPORT_SOURCES` and the decoder: ``"labels"`` needs a
    ``label_conditioned`` decoder, since any other decoder ignores the labels it is given."""
    if report_source not in REPORT_SOURCES:
        raise ValueError(f"report_source={report_source!r} is not one of {list(REPORT_SOURCES)}")
    if report_source == "labels" and not getattr(report_decoder, "label_conditioned", False):
        raise ValueError(
            "report_source='labels' needs a label_conditioned report decoder (label_conditioned_reports: true); "
            "this one reads only the image: use report_source='image'"
        )
    return report_source


class EMIXERSampler(Evaluator):
    """Draws paired samples: ``G(z_seed, y)`` through the inferer, then F's greedy report for the image.

    ``report_source`` says what F reads: ``"image"`` (default) the generated image alone, so the report is the
    image's (a ``label_conditioned`` F reads its own label head's predictions from the image); ``"labels"`` the
    image and the conditioning labels ``y`` (only a ``label_conditioned`` F), so the report states ``y``'s findings
    whatever the image shows.

    Each batch of conditioning items ``{"sample_index", "seed", "labels"}`` becomes ``engine.state.output``:
    ``images`` in [0, 1] ``[B, C, H, W]`` (CPU), ``report_tokens [B, S, W]``, ``report_num_sentences [B]``,
    ``labels [B, k]``, ``seeds`` and ``sample_indices`` (lists of int).

    Args:
        device: device of the networks.
        val_data_loader: yields batches of conditioning items.
        generator / report_decoder: the trained networks (moved to ``device`` beforehand).
        inferer: calls the generator as ``inferer(z, generator, labels)``; SimpleInferer by default.
        truncation: BigGAN truncation of z (None = plain N(0, 1)); at least :data:`TRUNCATION_FLOOR`.
        report_source: ``"image"`` or ``"labels"`` (see above; :func:`check_report_source`).
        amp: autocast on CUDA.
        other args: as ``monai.engines.Evaluator``.
    """

    def __init__(
        self,
        device: str | torch.device,
        val_data_loader: Iterable,
        generator: nn.Module,
        report_decoder: nn.Module,
        inferer: Inferer | None = None,
        truncation: float | None = None,
        report_source: str = "image",
        epoch_length: int | None = None,
        val_handlers: Sequence | None = None,
        amp: bool = False,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(
            device=device,
            val_data_loader=val_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=lambda batch, *args, **kwargs: batch,
            val_handlers=val_handlers,
            amp=amp,
            decollate=False,
        )
        self.generator, self.report_decoder = generator, report_decoder
        self.inferer = SimpleInferer() if inferer is None else inferer
        self.truncation = check_truncation(truncation)
        self.report_source = check_report_source(report_source, report_decoder)
        self.latent_dim = int(generator.latent_dim)

    def _iteration(self, engine: Engine, batchdata: Mapping[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        seeds = [int(s) for s in torch.as_tensor(batchdata["seed"]).flatten()]
        indices = [int(i) for i in torch.as_tensor(batchdata["sample_index"]).flatten()]
        labels = torch.as_tensor(batchdata["labels"]).float()
        device = self.state.device
        z = sample_latents(seeds, self.latent_dim, self.truncation).to(device)
        self.generator.eval()
        self.report_decoder.eval()
        with torch.no_grad():
            autocast = (
                torch.autocast("cuda") if self.amp and device.type == "cuda" else torch.autocast("cpu", enabled=False)
            )
            with autocast:
                images = self.inferer(z, self.generator, labels.to(device)).float()
                given = labels.to(device) if self.report_source == "labels" else None
                decoded = self.report_decoder.greedy_decode(images, given)
        return {
            "images": ((images.clamp(-1, 1) + 1) / 2).cpu(),
            "report_tokens": decoded["tokens"].cpu(),
            "report_num_sentences": decoded["num_sentences"].cpu(),
            "labels": labels,
            "seeds": seeds,
            "sample_indices": indices,
        }
