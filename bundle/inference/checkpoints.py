"""Training checkpoints and released weights: the newest checkpoint of a run, and the networks' weights read from it.

MONAI's ``CheckpointSaver`` writes ``checkpoint_iteration=<N>.pt`` every ``save_interval`` iterations (keeping the
last ``n_saved``) and ``checkpoint_final.pt`` when a run completes or fails. :func:`latest_checkpoint` finds the
newest of these, the state a restarted run loads (``"$@resume_from or
bundle.inference.checkpoints.latest_checkpoint(@ckpt_dir)"`` in configs/train.json) and the default weights of
configs/inference.json.

:func:`load_inference_weights` takes the EMA generator (else the raw one) and the report decoder from a training
checkpoint or from a released ``models/model.pt``. Its parts (:func:`read_checkpoint`, :func:`load_network_weights`)
also serve the report decoder's evaluation on real images (:mod:`bundle.evaluation.decode`). Checkpoints are read
with ``weights_only=True``: a checkpoint is data, never code to run.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from bundle.data.errors import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "latest_checkpoint",
    "checkpoint_iteration",
    "checkpoint_state",
    "read_checkpoint",
    "load_network_weights",
    "load_inference_weights",
]

_ITERATION = re.compile(r"_(?:iteration|epoch)=(\d+)\.pt$")


def checkpoint_iteration(path: str | Path) -> int:
    """The count in a ``checkpoint_iteration=<N>.pt`` (or ``_epoch=<N>``) file name; -1 for other names."""
    match = _ITERATION.search(Path(path).name)
    return int(match.group(1)) if match else -1


def latest_checkpoint(ckpt_dir: str | Path, pattern: str = "checkpoint_*.pt") -> str:
    """Path of the newest checkpoint in ``ckpt_dir``, or ``""`` when there is none (or no such folder).

    "Newest" is the last written (modification time): after an interrupted run that is its last interval
    checkpoint, after a completed (or crashed) one its final checkpoint. Ties (coarse file-system clocks) go to
    ``checkpoint_final.pt``, which a run writes last, then to the larger iteration number in the name.
    """
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return ""
    files = [f for f in folder.glob(pattern) if f.is_file()]
    if not files:
        return ""

    def order(f: Path) -> tuple[int, int, int]:
        return f.stat().st_mtime_ns, int(f.name.endswith("_final.pt")), checkpoint_iteration(f)

    return str(max(files, key=order))


def checkpoint_state(checkpoint: Mapping[str, Any], keys: Sequence[str], source: str) -> Mapping[str, torch.Tensor]:
    """The first of ``keys`` in ``checkpoint``; a training checkpoint (it has a ``trainer`` entry) without the first
    one gets a warning, a released ``model.pt`` (whose ``generator`` already is the EMA copy) does not."""
    for key in keys:
        if isinstance(checkpoint.get(key), Mapping):
            if key != keys[0] and "trainer" in checkpoint:
                logger.warning("%s has no %r weights; using %r", source, keys[0], key)
            return checkpoint[key]
    raise DataError(source, f"checkpoint has none of {list(keys)} (keys: {sorted(checkpoint)})")


def read_checkpoint(ckpt_path: str | PathLike) -> Mapping[str, Any]:
    """The checkpoint dict at ``ckpt_path`` (read with ``weights_only=True``); :class:`DataError` naming the file when
    it is missing, unreadable or not a dict of state dicts."""
    source = str(ckpt_path)
    if not Path(source).is_file():
        raise DataError(source, "missing checkpoint: train first, or set ckpt_path to a checkpoint_*.pt / model.pt")
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise DataError(source, f"cannot read checkpoint: {type(err).__name__}: {err}") from err
    if not isinstance(checkpoint, Mapping):
        raise DataError(source, f"checkpoint must be a dict of state dicts, got {type(checkpoint).__name__}")
    return checkpoint


def load_network_weights(
    network: nn.Module, checkpoint: Mapping[str, Any], keys: Sequence[str], source: str | PathLike
) -> nn.Module:
    """Load the first of ``keys`` in ``checkpoint`` (:func:`checkpoint_state`) into ``network``; weights that do not
    fit (wrong names or shapes) raise :class:`DataError` naming ``source``."""
    try:
        network.load_state_dict(checkpoint_state(checkpoint, keys, str(source)))
    except RuntimeError as err:
        raise DataError(source, f"weights do not fit the configured {keys[-1]}: {err}") from err
    return network


def load_inference_weights(
    ckpt_path: str | PathLike, generator: nn.Module, report_decoder: nn.Module, use_ema: bool = True
) -> tuple[nn.Module, nn.Module]:
    """Load G (its EMA copy when ``use_ema`` and present) and F from ``ckpt_path`` into the given networks.

    ``ckpt_path`` is a training checkpoint written by the train workflow (``checkpoint_*.pt``) or a released
    ``models/model.pt`` holding ``{"generator", "report_decoder"}``. Read with ``weights_only=True``.
    """
    checkpoint = read_checkpoint(ckpt_path)
    g_keys = ("ema_generator", "generator") if use_ema else ("generator",)
    for network, keys in ((generator, g_keys), (report_decoder, ("report_decoder",))):
        load_network_weights(network, checkpoint, keys, str(ckpt_path))
    return generator.eval(), report_decoder.eval()
