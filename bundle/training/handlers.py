"""Ignite handlers of EMIXER training, in MONAI's handler style (a class with ``attach(engine)``).

* :class:`StopOnNonFinite` stops a run at the first NaN / inf loss with an error naming the terms, the
  iteration and the epoch (Ignite's ``TerminateOnNan`` stops quietly), without checkpointing the broken state.
* :class:`TensorBoardSampleHandler` writes a grid of generated images for fixed ``z`` and fixed label rows, and
  their decoded reports as a Markdown table, to TensorBoard and to ``output_dir/samples/`` (PNG + Markdown).
* :class:`RNGState` makes the torch / numpy / Python random states part of a MONAI ``CheckpointSaver``'s
  ``save_dict``, so a resumed run draws the same numbers as an uninterrupted one.
* :func:`prefix_keys` turns the trainer's loss dict into ``train/<key>`` scalars for MONAI's
  ``TensorBoardStatsHandler`` (which logs every key of a dict that its ``output_transform`` returns).
* :class:`AtomicCheckpointSaver` is MONAI's ``CheckpointSaver`` whose files are written atomically
  (:func:`atomic_save`) and which writes no final checkpoint for a run that failed before completing an iteration,
  so a crash, a kill or a failed resume never leaves a damaged or untrained checkpoint in place of a good one.

Loading is :class:`bundle.inference.checkpoints.ResumeCheckpointLoader` (MONAI's ``CheckpointLoader`` that checks the
file and the networks first), with :meth:`bundle.training.EMIXERTrainer.checkpoint_dict` as the save / load dict; the
progress bar is Ignite's ``ProgressBar``.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver
from monai.handlers.tensorboard_handlers import TensorBoardHandler
from PIL import Image
from torch import nn

from bundle.training.gradients import eval_mode

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = [
    "AtomicCheckpointSaver",
    "NonFiniteLossError",
    "RNGState",
    "StopOnNonFinite",
    "TensorBoardSampleHandler",
    "atomic_save",
    "image_grid",
    "prefix_keys",
    "reports_markdown",
]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite during training."""


class StopOnNonFinite:
    """Raise :class:`NonFiniteLossError` after the first iteration whose output holds a NaN / inf value.

    The message names the terms and their values, the iteration and the epoch. Attach it before MONAI's
    ``CheckpointSaver`` (first in ``train_handlers``): handlers of an event run in attachment order, so the
    interval checkpoint of the broken iteration is never written, and this handler's ``EXCEPTION_RAISED``
    callback re-raises the error before ``CheckpointSaver(save_final=True)`` could save the broken state as
    its final checkpoint. Other exceptions are left to the later ``EXCEPTION_RAISED`` handlers (re-raised
    here when there are none, so nothing is swallowed).

    Args:
        output_transform: maps ``engine.state.output`` to a dict (or sequence) of scalars to check.
        name: logger name; None uses the engine's logger.
    """

    def __init__(self, output_transform: Callable[[Any], Any] = lambda x: x, name: str | None = None) -> None:
        self.output_transform = output_transform
        self._name = name
        self.logger = logging.getLogger(name)

    def attach(self, engine: Engine) -> None:
        if self._name is None:
            self.logger = engine.logger
        if not engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)
            engine.add_event_handler(Events.EXCEPTION_RAISED, self.exception_raised)

    @staticmethod
    def _items(output: Any) -> list[tuple[str, Any]]:
        if isinstance(output, Mapping):
            return list(output.items())
        if isinstance(output, Sequence) and not isinstance(output, str):
            return [(str(i), v) for i, v in enumerate(output)]
        return [("output", output)]

    @staticmethod
    def _finite(value: Any) -> bool:
        if isinstance(value, torch.Tensor):
            return bool(torch.isfinite(value).all())
        if isinstance(value, (float, int, np.floating, np.integer)):
            return math.isfinite(value)
        return True  # non-numeric outputs are not losses

    def __call__(self, engine: Engine) -> None:
        output = self.output_transform(engine.state.output)
        bad = [(key, value) for key, value in self._items(output) if not self._finite(value)]
        if bad:
            terms = ", ".join(f"{key}={value}" for key, value in bad)
            message = (
                f"non-finite loss at iteration {engine.state.iteration} (epoch {engine.state.epoch}): {terms}; "
                "training stopped (this iteration was not checkpointed). Lower the learning rates, check the "
                "input data for NaNs, or resume from the last checkpoint."
            )
            self.logger.error(message)
            raise NonFiniteLossError(message)

    def exception_raised(self, engine: Engine, e: BaseException) -> None:
        """Re-raise a non-finite-loss error at once; leave other errors to the next ``EXCEPTION_RAISED`` handlers."""
        if isinstance(e, NonFiniteLossError):
            raise e
        # Ignite swallows an exception when no EXCEPTION_RAISED handler re-raises it; make sure someone does.
        handlers = getattr(engine, "_event_handlers", {}).get(Events.EXCEPTION_RAISED, ())
        if len(handlers) <= 1:
            raise e


class RNGState:
    """The global random states (torch CPU and CUDA, numpy, Python ``random``) as a checkpointable object.

    Put an instance into a ``CheckpointSaver``'s ``save_dict`` and the same key into the ``CheckpointLoader``'s
    ``load_dict``. Everything is stored as tensors and plain Python values, so the checkpoint loads with
    ``torch.load(weights_only=True)`` (which MONAI's ``CheckpointLoader`` uses).
    """

    def state_dict(self) -> dict[str, Any]:
        _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "numpy_pos": int(pos),
            "numpy_has_gauss": int(has_gauss),
            "numpy_cached_gaussian": float(cached_gaussian),
            "python_version": int(version),
            "python_internal": torch.tensor(internal, dtype=torch.int64),
            "python_gauss_next": gauss_next,
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        torch.set_rng_state(state["torch"].cpu())
        keys = state["numpy_keys"].cpu().numpy().astype(np.uint32)
        np.random.set_state(
            ("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_cached_gaussian"])
        )
        internal = tuple(int(v) for v in state["python_internal"].tolist())
        random.setstate((state["python_version"], internal, state["python_gauss_next"]))
        cuda = state.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def _write_error(target: Path, err: Exception) -> OSError:
    """``err`` of a failed checkpoint write as an ``OSError`` naming ``target`` and the free space in its folder."""
    try:
        free = f"{shutil.disk_usage(target.parent).free / 2**20:.0f} MiB free in {target.parent}"
    except OSError:
        free = f"free space in {target.parent} unknown"
    full = "no space left on the device; " if getattr(err, "errno", None) == errno.ENOSPC else ""
    return OSError(f"cannot write checkpoint {target}: {full}{type(err).__name__}: {err} ({free})")


def _fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename) to disk; a no-op where the file system cannot sync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | os.PathLike, save: Callable[[Any, Any], Any] = torch.save) -> None:
    """Write ``obj`` to ``path`` with ``save(obj, file)`` so that ``path`` holds its old content or the complete new
    file, never a part of it.

    The bytes go to a temporary file in the same folder (``.<name>.<random>.tmp``, which ``checkpoint_*.pt`` globs do
    not match), are flushed and fsynced, and the file is renamed over ``path`` with ``os.replace`` (atomic within a
    file system); the folder is then fsynced so the rename itself survives a power cut. The file gets the permissions
    a plain ``open`` would give (umask applied), not ``mkstemp``'s owner-only ones. A failed write removes the
    temporary file and raises ``OSError`` naming ``path`` and the free space there (a full disk otherwise shows as
    torch's bare ``unexpected pos`` error).
    """
    target = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)  # reopened by name, so the file object names the file it writes
    try:
        with open(temp, "wb") as file:
            save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, target)
    except BaseException as err:
        Path(temp).unlink(missing_ok=True)
        if isinstance(err, Exception):
            raise _write_error(target, err) from err
        raise
    _fsync_folder(target.parent)


class _AtomicDiskSaver(DiskSaver):
    """Ignite's ``DiskSaver`` writing through :func:`atomic_save` (Ignite's own ``atomic`` mode neither fsyncs nor
    keeps group read access, hence MONAI turns it off), with MONAI's optional fixed ``filename``. A checkpoint that
    Ignite asks to remove (beyond ``n_saved``, which it does *before* writing the next one) is deleted only once the
    next file is complete, so a crash between the two never leaves fewer complete checkpoints."""

    def __init__(self, dirname: str | os.PathLike, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, atomic=True, require_empty=False)
        self.filename = filename
        self._to_remove: list[Path] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        atomic_save(checkpoint, path, func)
        for old in self._to_remove:
            if old != path:
                old.unlink(missing_ok=True)
        self._to_remove.clear()

    def remove(self, filename: str) -> None:
        if idist.get_rank() == self.save_on_rank:
            self._to_remove.append(self.dirname / (self.filename or filename))


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` (the same arguments, file names and checkpoint keys) made crash-safe.

    * Every file is written by :func:`atomic_save`: a kill, a crash or a full disk during a save leaves the previous
      files complete, plus at most a hidden ``.<name>.<random>.tmp`` file, which the next saver removes (with a
      warning naming it) when it is attached.
    * A checkpoint beyond ``n_saved`` is deleted only after the next one is complete.
    * On an exception, the final checkpoint is written only when this run completed at least one iteration. A run
      that fails while starting (an unreadable or mismatching checkpoint to resume, bad data in the first batch)
      leaves the folder as it was, instead of replacing ``checkpoint_final.pt`` with freshly initialised or
      half-loaded weights that the next run would resume from.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                fixed = getattr(checkpoint.save_handler, "filename", None)
                checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, filename=fixed)
        self._iterations_done = 0

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._count_iteration)
        if idist.get_rank() == 0:
            for temp in sorted(Path(self.save_dir).glob(".*.pt.*.tmp")):
                self.logger.warning("removing %s: the unfinished write of a killed or failed run", temp)
                temp.unlink(missing_ok=True)

    def _count_iteration(self, engine: Engine) -> None:
        self._iterations_done += 1

    def completed(self, engine: Engine) -> None:
        self._iterations_done = 0
        super().completed(engine)

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        """Save the final checkpoint and re-raise ``e``; only re-raise when no iteration of this run completed."""
        done, self._iterations_done = self._iterations_done, 0
        if done == 0:
            self.logger.warning(
                "the run failed before completing an iteration: no final checkpoint written, %s is left as it was",
                self.save_dir,
            )
            raise e
        super().exception_raised(engine, e)


def prefix_keys(prefix: str = "train/") -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """An ``output_transform`` for MONAI's ``TensorBoardStatsHandler``: ``{"d_image": v}`` -> ``{"train/d_image": v}``
    (that handler writes every key of a returned dict as a scalar)."""

    def transform(output: Mapping[str, Any]) -> dict[str, Any]:
        return {f"{prefix}{key}": value for key, value in output.items()}

    return transform


def image_grid(images: torch.Tensor, columns: int, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile ``images [N, C, H, W]`` (values in [0, 1]) row by row, ``columns`` per row, with ``padding`` between."""
    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    grid = images.new_full((c, rows * (h + padding) + padding, columns * (w + padding) + padding), pad_value)
    for i in range(n):
        top, left = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def _label_text(row: Sequence[float], class_names: Sequence[str]) -> str:
    names = [name for name, value in zip(class_names, row) if value > 0.5]
    return ", ".join(names) if names else "(no class)"


def reports_markdown(label_rows: Sequence[Sequence[float]], reports: Sequence[str], class_names: Sequence[str]) -> str:
    """A Markdown table ``| # | labels | report |``, one line per generated sample."""
    lines = ["| # | labels | report |", "|---|---|---|"]
    for i, (row, report) in enumerate(zip(label_rows, reports)):
        text = report.replace("|", "\\|").replace("\n", " ") or "(empty)"
        lines.append(f"| {i} | {_label_text(row, class_names)} | {text} |")
    return "\n".join(lines)


def _decode(tokenizer: Any, tokens: torch.Tensor, num_sentences: torch.Tensor) -> list[str]:
    if tokenizer is None:
        return [" ".join(str(int(t)) for t in row.flatten() if int(t) != 0) for row in tokens]
    return [tokenizer.decode(row, int(n)) for row, n in zip(tokens, num_sentences)]


class TensorBoardSampleHandler(TensorBoardHandler):
    """Every ``interval`` iterations (or epochs), log generated pairs for fixed ``z`` and fixed labels.

    The label rows are, by default, one per class (one-hot) and one all-zero row; each row is generated with
    the same ``samples_per_label`` latent vectors (drawn once from ``seed`` with a private generator, so the
    training random streams are untouched), giving a grid with one row per label set. The images (mapped from
    [-1, 1] to [0, 1]) go to TensorBoard as ``<tag>/images`` and the reports F greedy-decodes from each image alone
    (never given the labels, as bundle inference writes them by default) as a Markdown table ``<tag>/reports``;
    both are also saved as ``output_dir/samples/<tag>_iteration_<N>.png`` and ``.md``.

    Args:
        class_names: names of the label vector's entries.
        tokenizer: turns an id matrix into text (``ReportTokenizer.decode(ids, num_sentences)``); None writes ids.
        generator: network to sample with; None takes the engine's ``ema_generator`` if it has one, else its
            ``generator``.
        report_decoder: F; None takes the engine's ``report_decoder``.
        summary_writer: a TensorBoard ``SummaryWriter``; None creates one in ``log_dir``.
        log_dir: TensorBoard directory when no writer is given.
        output_dir: where ``samples/`` is written; None writes no files.
        interval: log every ``interval`` iterations (or epochs with ``epoch_level``).
        epoch_level: count ``interval`` in epochs instead of iterations.
        samples_per_label: latent vectors (grid columns) per label row.
        labels: explicit label rows ``[[...k floats], ...]``; None = one-hot per class plus an all-zero row.
        seed: seed of the fixed latent vectors.
        tag: TensorBoard tag prefix and file name prefix.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        tokenizer: Any = None,
        generator: nn.Module | None = None,
        report_decoder: nn.Module | None = None,
        summary_writer: SummaryWriter | None = None,
        log_dir: str = "./runs",
        output_dir: str | None = None,
        interval: int = 1000,
        epoch_level: bool = False,
        samples_per_label: int = 4,
        labels: Sequence[Sequence[float]] | None = None,
        seed: int = 0,
        tag: str = "samples",
    ) -> None:
        super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        if interval < 1 or samples_per_label < 1:
            raise ValueError(f"interval={interval} and samples_per_label={samples_per_label} must be >= 1")
        self.class_names = list(class_names)
        k = len(self.class_names)
        if labels is None:
            rows = torch.cat([torch.eye(k), torch.zeros(1, k)])
        else:
            rows = torch.as_tensor(labels, dtype=torch.float32)
            if rows.dim() != 2 or rows.shape[1] != k:
                raise ValueError(f"labels must be rows of {k} values (one per class), got shape {tuple(rows.shape)}")
        self.label_rows = rows
        self.tokenizer, self.generator, self.report_decoder = tokenizer, generator, report_decoder
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.interval, self.epoch_level = int(interval), bool(epoch_level)
        self.samples_per_label, self.seed, self.tag = int(samples_per_label), int(seed), tag
        self._z: torch.Tensor | None = None

    def attach(self, engine: Engine) -> None:
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        engine.add_event_handler(event(every=self.interval), self)

    def _networks(self, engine: Engine | None) -> tuple[nn.Module, nn.Module]:
        generator, decoder = self.generator, self.report_decoder
        if generator is None:
            generator = getattr(engine, "ema_generator", None)
        if generator is None:
            generator = getattr(engine, "generator", None)
        if decoder is None:
            decoder = getattr(engine, "report_decoder", None)
        if generator is None or decoder is None:
            raise ValueError("TensorBoardSampleHandler needs a generator and a report_decoder (or an engine with them)")
        return generator, decoder

    @torch.no_grad()
    def generate(self, engine: Engine | None = None) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """Images in [0, 1] ``[R * C, ch, H, W]`` (row-major: label row, then latent), reports, and label rows."""
        generator, decoder = self._networks(engine)
        device = next(generator.parameters()).device
        if self._z is None:  # a private generator: the training random streams stay untouched
            private = torch.Generator().manual_seed(self.seed)
            self._z = torch.randn(self.samples_per_label, generator.latent_dim, generator=private)
        r, c = self.label_rows.shape[0], self.samples_per_label
        z = self._z.repeat(r, 1).to(device)
        labels = self.label_rows.repeat_interleave(c, dim=0).to(device)
        with eval_mode(generator), eval_mode(decoder):
            images = generator(z, labels).float()
            decoded = decoder.greedy_decode(images)
        reports = _decode(self.tokenizer, decoded["tokens"].cpu(), decoded["num_sentences"].cpu())
        return ((images.clamp(-1, 1) + 1) / 2).cpu(), reports, labels.cpu()

    def __call__(self, engine: Engine) -> None:
        step = engine.state.epoch if self.epoch_level else engine.state.iteration
        images, reports, labels = self.generate(engine)
        grid = image_grid(images, columns=self.samples_per_label)
        table = reports_markdown(labels.tolist(), reports, self.class_names)
        self._writer.add_image(f"{self.tag}/images", grid, step)
        self._writer.add_text(f"{self.tag}/reports", table, step)
        self._writer.flush()
        if self.output_dir is not None:
            folder = self.output_dir / "samples"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{self.tag}_{'epoch' if self.epoch_level else 'iteration'}_{step:07d}"
            pixels = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(folder / f"{name}.png")
            (folder / f"{name}.md").write_text(table + "\n")
