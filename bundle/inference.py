"""Bundle inference: label-conditional paired samples (image + report) from a trained EMIXER.

configs/inference.json builds, in MONAI's inference layout:

* ``dataset``: one item per sample to draw, ``{"sample_index", "seed", "labels"}``, made by
  :func:`conditioning_items` from the user's label choice (explicit label sets, N per class, or rows drawn from the
  training label distribution: the default, so a synthetic set keeps the real co-occurrence of findings);
* ``evaluator``: :class:`EMIXERSampler`, a ``monai.engines.Evaluator`` whose iteration draws each sample's latent
  from its own seed (so the output does not depend on the batch size, and an interrupted run resumes exactly), runs
  the generator through the ``inferer`` and greedy-decodes the report with the report decoder from the generated
  image alone (``report_source="image"``, the default), or, for a ``label_conditioned`` decoder, from the
  conditioning labels (``report_source="labels"``: label-conditioned writing, whose reports restate the labels they
  are then scored against);
* ``handlers``: :class:`PairedOutputSaver` hands every batch to :class:`bundle.writers.PairedDatasetWriter`
  (images, reports, manifest, datalist, contact sheet).

:func:`load_inference_weights` takes the EMA generator (else the raw one) and the report decoder from a training
checkpoint or from a released ``models/model.pt``. Its parts (:func:`read_checkpoint`, :func:`load_network_weights`)
and :func:`decode_report_tokens` also serve the report decoder's evaluation on real images
(:mod:`bundle.evaluation.decode`).
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from ignite.engine import Engine, Events
from monai.engines import Evaluator
from monai.inferers import Inferer, SimpleInferer

from bundle.data.errors import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "conditioning_items",
    "training_label_rows",
    "sample_latents",
    "checkpoint_state",
    "read_checkpoint",
    "load_network_weights",
    "load_inference_weights",
    "decode_report_tokens",
    "REPORT_SOURCES",
    "check_report_source",
    "EMIXERSampler",
    "PairedOutputSaver",
]

#: Sample seeds are ``seed * SEED_STRIDE + sample_index``: distinct for runs with different seeds.
SEED_STRIDE = 1_000_003
#: What the report decoder writes a generated image's report from: the image alone, or the conditioning labels.
REPORT_SOURCES: tuple[str, ...] = ("image", "labels")


# ------------------------------------------------------------------------------------------------ conditioning
def training_label_rows(path: str | PathLike, class_names: Sequence[str] | None = None) -> np.ndarray:
    """The label rows ``[N, k]`` of a datalist's training split (or of a JSON list of rows).

    With ``class_names`` given, a datalist's own ``class_names`` must match them (same order), else the rows
    would condition on the wrong findings.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing label source (a datalist.json, or a JSON list of label rows)")
    content = json.loads(path.read_text())
    if isinstance(content, Mapping):
        own = content.get("class_names")
        if class_names is not None and own is not None and list(own) != list(class_names):
            raise DataError(path, f"class_names {own} do not match the model's {list(class_names)}")
        rows = [item["labels"] for item in content.get("training", []) if "labels" in item]
    else:
        rows = content
    if not rows:
        raise DataError(path, "no training label rows to draw conditioning labels from")
    array = np.asarray(rows, dtype=np.float32)
    if array.ndim != 2 or (class_names is not None and array.shape[1] != len(class_names)):
        raise DataError(path, f"label rows have shape {array.shape}; expected [N, {len(class_names or [])}]")
    return np.clip(array, 0.0, 1.0)


def _label_set(spec: Any, class_names: Sequence[str]) -> list[float]:
    """One label set: a multi-hot list of k numbers, or a list of class names (``[]`` = nothing positive)."""
    if isinstance(spec, str):
        spec = [spec]
    spec = list(spec)
    if spec and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec):
        if len(spec) != len(class_names):
            raise ValueError(f"label set {spec} has {len(spec)} values; the model has {len(class_names)} classes")
        if any(v not in (0, 1) for v in spec):
            raise ValueError(f"label set {spec}: multi-hot values must be 0 or 1")
        return [float(v) for v in spec]
    unknown = [name for name in spec if name not in class_names]
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; the model's classes are {list(class_names)}")
    return [1.0 if name in spec else 0.0 for name in class_names]


def conditioning_items(
    labels: str | Sequence[Any] | None,
    num_samples: int,
    class_names: Sequence[str],
    train_labels: np.ndarray | Callable[[], np.ndarray] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The samples to draw: ``[{"sample_index", "seed", "labels"}, ...]``.

    ``labels``:
      * ``None`` or ``"train"``: ``num_samples`` rows drawn (with replacement, seeded) from ``train_labels``;
      * ``"per_class"``: ``num_samples`` one-hot samples for each class;
      * a list of label sets (each a list of class names or a multi-hot list): ``num_samples`` samples of each.
    ``train_labels`` may be a callable, so the label source is only read when it is needed.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1")
    k = len(class_names)
    if labels is None or labels == "train":
        rows = train_labels() if callable(train_labels) else train_labels
        if rows is None:
            raise ValueError("labels drawn from the training distribution need train_labels (a datalist)")
        rows = np.asarray(rows, dtype=np.float32)
        picks = np.random.default_rng(seed).integers(len(rows), size=num_samples)
        sets = [rows[i].tolist() for i in picks]
    elif labels == "per_class":
        sets = [[float(j == i) for j in range(k)] for i in range(k) for _ in range(num_samples)]
    elif isinstance(labels, str):
        raise ValueError(f"labels={labels!r}: use 'train', 'per_class', or a list of label sets")
    else:
        specs = list(labels)
        if not specs:
            raise ValueError("labels is an empty list; give at least one label set")
        sets = [_label_set(spec, class_names) for spec in specs for _ in range(num_samples)]
    return [
        {"sample_index": i, "seed": seed * SEED_STRIDE + i, "labels": torch.tensor(row, dtype=torch.float32)}
        for i, row in enumerate(sets)
    ]


def sample_latents(seeds: Iterable[int], latent_dim: int, truncation: float | None = None) -> torch.Tensor:
    """One latent per seed ``[B, latent_dim]`` from its own generator, so a sample depends on its seed alone.

    ``truncation``: BigGAN's truncation trick; entries with ``|z| > truncation`` are redrawn until inside.
    """
    out = []
    for seed in seeds:
        rng = torch.Generator().manual_seed(int(seed))
        z = torch.randn(latent_dim, generator=rng)
        if truncation is not None:
            if truncation <= 0:
                raise ValueError(f"truncation={truncation} must be > 0 (or null for none)")
            outside = z.abs() > truncation
            while bool(outside.any()):
                z[outside] = torch.randn(int(outside.sum()), generator=rng)
                outside = z.abs() > truncation
        out.append(z)
    return torch.stack(out)


# ------------------------------------------------------------------------------------------------ weights
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


def decode_report_tokens(tokenizer: Any, tokens: torch.Tensor, num_sentences: torch.Tensor) -> list[str]:
    """Report texts of F's output (``tokens [B, S, W]``, ``num_sentences [B]``) through ``tokenizer.decode``."""
    return [tokenizer.decode(t, int(n)) for t, n in zip(tokens, num_sentences)]


# ------------------------------------------------------------------------------------------------ engine
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
        truncation: BigGAN truncation of z (None = plain N(0, 1)).
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
        self.truncation = truncation
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


class PairedOutputSaver:
    """Writes each sampler batch through a :class:`bundle.writers.PairedDatasetWriter` and finalises it at the end.

    Args:
        writer: the output writer (it owns the folder, the manifest and resume state).
        tokenizer: the report tokenizer (``decode(tokens, num_sentences)``) that turns ids into text.
        output_transform: picks the sampler output from ``engine.state.output``.
    """

    def __init__(self, writer: Any, tokenizer: Any, output_transform: Callable[[Any], Any] = lambda x: x) -> None:
        self.writer, self.tokenizer, self.output_transform = writer, tokenizer, output_transform
        self.summary: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.finalize)

    def reports(self, tokens: torch.Tensor, num_sentences: torch.Tensor) -> list[str]:
        return decode_report_tokens(self.tokenizer, tokens, num_sentences)

    def __call__(self, engine: Engine) -> None:
        out = self.output_transform(engine.state.output)
        reports = self.reports(out["report_tokens"], out["report_num_sentences"])
        self.writer.write_batch(out["images"], reports, out["labels"], out["seeds"], out["sample_indices"])

    def finalize(self, engine: Engine | None = None) -> dict[str, Any]:
        self.summary = self.writer.finalize()
        logger.info("wrote %s paired samples to %s", self.summary.get("num_samples"), self.writer.out_dir)
        return self.summary
