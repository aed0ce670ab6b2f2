"""Training checkpoints and released weights: the newest checkpoint of a run, and the networks' weights read from it.

Training (:class:`bundle.training.handlers.AtomicCheckpointSaver`) writes ``checkpoint_iteration=<N>.pt`` every
``save_interval`` iterations (keeping the last ``n_saved``) and ``checkpoint_final.pt`` when a run completes or fails
after completing an iteration. :func:`latest_checkpoint` finds the newest readable one, the state a restarted run
loads (``"$@resume_from or bundle.inference.checkpoints.latest_checkpoint(@ckpt_dir)"`` in configs/train.json) and
the default weights of configs/inference.json; an empty or unreadable file is skipped with a warning naming it.
:class:`ResumeCheckpointLoader` loads it into the trainer after checking that it reads and that its networks fit the
configured ones, so a failed resume stops with an error naming the file before anything is changed.

:func:`load_inference_weights` takes the EMA generator (else the raw one) and the report decoder from a training
checkpoint or from a released ``models/model.pt``. Its parts (:func:`read_checkpoint`, :func:`load_network_weights`)
also serve the report decoder's evaluation on real images (:mod:`bundle.evaluation.decode`). Checkpoints are read
with ``weights_only=True``: a checkpoint is data, never code to run.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine
from ignite.handlers import Checkpoint
from monai.handlers import CheckpointLoader
from torch import nn

from bundle.data.errors import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "ResumeCheckpointLoader",
    "checkpoint_iteration",
    "checkpoint_mismatches",
    "checkpoint_problem",
    "checkpoint_sha256",
    "checkpoint_state",
    "latest_checkpoint",
    "load_inference_weights",
    "load_network_weights",
    "read_checkpoint",
]

# What torch.load raises for a damaged file: a zip reader error, a cut pickle, a pickle of something else.
_READ_ERRORS = (OSError, RuntimeError, ValueError, EOFError, KeyError, AttributeError, IndexError, pickle.PickleError)

_ITERATION = re.compile(r"_(?:iteration|epoch)=(\d+)\.pt$")


def checkpoint_iteration(path: str | Path) -> int:
    """The count in a ``checkpoint_iteration=<N>.pt`` (or ``_epoch=<N>``) file name; -1 for other names."""
    match = _ITERATION.search(Path(path).name)
    return int(match.group(1)) if match else -1


def checkpoint_sha256(path: str | PathLike, chunk_bytes: int = 1 << 20) -> str:
    """The SHA-256 of the whole checkpoint file (hex), read in ``chunk_bytes`` pieces: what a generated set records
    as the weights it came from, so that a resume with other weights is refused (:mod:`bundle.inference.writer`).
    The full file is hashed (about a second per GB), since a partial hash could miss a retrained checkpoint that kept
    its size. :class:`DataError` naming the file when it is missing."""
    if not Path(path).is_file():
        raise DataError(path, "missing checkpoint: train first, or set ckpt_path to a checkpoint_*.pt / model.pt")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from (empty, not a torch file, truncated, not a dict), or None.

    The file is opened memory-mapped (``mmap=True``, ``weights_only=True``): its zip directory and object records are
    read, its tensor bytes are not, so the check costs little even for a large checkpoint. A truncated file (a write
    cut short) has lost its zip directory, which sits at the end.
    """
    try:
        if Path(path).stat().st_size == 0:
            return "empty file (0 bytes)"
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except _READ_ERRORS as err:
        return f"unreadable ({type(err).__name__}: {err})"
    if not isinstance(checkpoint, Mapping):
        return f"not a dict of state dicts ({type(checkpoint).__name__})"
    return None


def latest_checkpoint(ckpt_dir: str | Path, pattern: str = "checkpoint_*.pt") -> str:
    """Path of the newest readable checkpoint in ``ckpt_dir``, or ``""`` when there is none (or no such folder).

    "Newest" is the last written (modification time): after an interrupted run that is its last interval
    checkpoint, after a completed (or crashed) one its final checkpoint. Ties (coarse file-system clocks) go to
    ``checkpoint_final.pt``, which a run writes last, then to the larger iteration number in the name. A file that
    :func:`checkpoint_problem` rejects (empty, truncated, unreadable) is skipped with a warning naming it, and the
    next newest is taken: a damaged newest file costs the iterations since the one before, not the run.
    """
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return ""
    files = [f for f in folder.glob(pattern) if f.is_file()]

    def order(f: Path) -> tuple[int, int, int]:
        return f.stat().st_mtime_ns, int(f.name.endswith("_final.pt")), checkpoint_iteration(f)

    skipped = []
    for candidate in sorted(files, key=order, reverse=True):
        problem = checkpoint_problem(candidate)
        if problem is None:
            if skipped:
                logger.warning("resuming from %s, the newest readable checkpoint", candidate)
            return str(candidate)
        logger.warning("skipping checkpoint %s: %s", candidate, problem)
        skipped.append(candidate)
    if skipped:
        logger.warning("no readable checkpoint in %s (%d skipped): nothing to resume", folder, len(skipped))
    return ""


def checkpoint_state(checkpoint: Mapping[str, Any], keys: Sequence[str], source: str) -> Mapping[str, torch.Tensor]:
    """The first of ``keys`` in ``checkpoint``; a training checkpoint (it has a ``trainer`` entry) without the first
    one gets a warning, a released ``model.pt`` (whose ``generator`` already is the EMA copy) does not."""
    for key in keys:
        if isinstance(checkpoint.get(key), Mapping):
            if key != keys[0] and "trainer" in checkpoint:
                logger.warning("%s has no %r weights; using %r", source, keys[0], key)
            return checkpoint[key]
    raise DataError(source, f"checkpoint has none of {list(keys)} (keys: {sorted(checkpoint)})")


def read_checkpoint(ckpt_path: str | PathLike, map_location: Any = "cpu") -> Mapping[str, Any]:
    """The checkpoint dict at ``ckpt_path`` (read with ``weights_only=True``); :class:`DataError` naming the file when
    it is missing, empty, unreadable or not a dict of state dicts."""
    source = str(ckpt_path)
    if not Path(source).is_file():
        raise DataError(source, "missing checkpoint: train first, or set ckpt_path to a checkpoint_*.pt / model.pt")
    if Path(source).stat().st_size == 0:
        raise DataError(source, "cannot read checkpoint: empty file (0 bytes)")
    try:
        checkpoint = torch.load(source, map_location=map_location, weights_only=True)
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


def _shape(value: Any) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def checkpoint_mismatches(
    load_dict: Mapping[str, Any], checkpoint: Mapping[str, Any], strict: bool = True, examples: int = 3
) -> list[str]:
    """What of ``checkpoint`` does not fit the objects of ``load_dict``, one line per problem and network: entries
    missing from the checkpoint, and for every network its weights of another shape and, when ``strict`` (as
    ``load_state_dict`` is), its weights missing from the checkpoint or not in the network, each with a count and its
    first ``examples`` names (``"generator: 2 weights of another shape: x.weight: checkpoint [8, 4] vs configured
    [16, 4], ..."``). Empty when everything fits."""
    problems: list[str] = []
    for key, obj in load_dict.items():
        if key not in checkpoint:
            problems.append(f"{key}: not in the checkpoint")
            continue
        if isinstance(obj, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            obj = obj.module
        if not isinstance(obj, nn.Module):
            continue
        saved, wanted = checkpoint[key], obj.state_dict()
        if not isinstance(saved, Mapping):
            problems.append(f"{key}: not a state dict in the checkpoint ({type(saved).__name__})")
            continue
        found = {
            "of another shape": [
                f"{name}: checkpoint {_shape(saved[name])} vs configured {_shape(value)}"
                for name, value in wanted.items()
                if name in saved and isinstance(value, torch.Tensor) and _shape(saved[name]) != _shape(value)
            ],
            "missing from the checkpoint": [name for name in wanted if name not in saved] if strict else [],
            "not in the configured network": [name for name in saved if name not in wanted] if strict else [],
        }
        for what, names in found.items():
            if names:
                more = f", ... ({len(names) - examples} more)" if len(names) > examples else ""
                problems.append(f"{key}: {len(names)} weights {what}: {', '.join(names[:examples])}{more}")
    return problems


class ResumeCheckpointLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` (the same arguments) that checks a checkpoint before loading any of it.

    On ``STARTED`` the file is read with :func:`read_checkpoint` (a missing, empty, truncated or unpicklable file
    raises :class:`DataError` naming it, where MONAI's loader raises a bare ``EOFError``), and every network of
    ``load_dict`` is compared with the checkpoint's weights (:func:`checkpoint_mismatches`). A run whose configs do
    not match (say ``image_size`` changed into the same output folder) stops with a :class:`DataError` naming the file
    and the mismatching weights, before the trainer, a network or an optimiser has been changed, and since no
    iteration completed, :class:`bundle.training.handlers.AtomicCheckpointSaver` writes nothing either. Any other
    failure while loading is re-raised as a :class:`DataError` naming the file. With ``strict_shape=False`` MONAI's
    partial loading is used as is.
    """

    def __call__(self, engine: Engine) -> None:
        if not self.strict_shape:
            super().__call__(engine)
            return
        source = str(self.load_path)
        checkpoint = read_checkpoint(source, map_location=self.map_location or "cpu")
        if len(self.load_dict) == 1 and next(iter(self.load_dict)) not in checkpoint:
            checkpoint = {next(iter(self.load_dict)): checkpoint}  # a bare state dict, as MONAI's loader accepts
        problems = checkpoint_mismatches(self.load_dict, checkpoint, strict=self.strict)
        if problems:
            raise DataError(
                source,
                "checkpoint does not fit the configured networks (were settings such as image_size or the network "
                "sizes changed? Train into a new output_dir, or resume with the settings it was trained with): "
                + "; ".join(problems),
            )
        prior_max_epochs = engine.state.max_epochs
        try:
            Checkpoint.load_objects(to_load=self.load_dict, checkpoint=checkpoint, strict=self.strict)
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise DataError(source, f"cannot load checkpoint: {type(err).__name__}: {err}") from err
        if prior_max_epochs is not None and engine.state.epoch > prior_max_epochs:
            raise DataError(
                source,
                f"the checkpoint is at epoch {engine.state.epoch}, beyond max_epochs={prior_max_epochs}: "
                "set max_epochs higher to train on",
            )
        engine.state.max_epochs = prior_max_epochs
        self.logger.info(f"Restored all variables from {source}")
