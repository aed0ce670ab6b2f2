"""The evaluation classifier as the evaluation run uses it: its config files and overrides, its preprocessing,
training it, and its features and probabilities on image sets loaded through that preprocessing."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bundle.classifier import DEFAULT_CONFIGS, predict
from bundle.data.datalist import Datalist
from bundle.data.errors import DataError, SkipCounter

from .common import config_files, preprocess_or_skip

__all__ = [
    "ImageSet",
    "classifier_configs",
    "classifier_overrides",
    "classifier_preprocessing",
    "classify_images",
    "load_image_set",
    "train_classifier",
]


def classifier_configs(config_file: str | PathLike | Sequence[str | PathLike] | None = None) -> list[str]:
    """The classifier's config files: ``config_file`` (one file or a list, merged in order) or the defaults
    ``configs/train.json`` + ``configs/train_classifier.json``. Put your overrides last in a list."""
    return config_files(config_file, DEFAULT_CONFIGS, "classifier")


def classifier_overrides(
    config_files: Sequence[str],
    datalist: Datalist | None = None,
    image_size: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Config overrides that point the classifier configs at ``datalist`` and keep images only.

    The report tokenizer step is dropped from ``preprocessing_transforms`` (the classifier never reads reports),
    so a dataset without ``tokenizer.json`` works too; ``image_size`` and ``overrides`` are applied as given.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(list(config_files))
    out: dict[str, Any] = {}
    if "preprocessing_transforms" in parser:
        out["preprocessing_transforms"] = [
            t
            for t in parser["preprocessing_transforms"]
            if not (isinstance(t, Mapping) and str(t.get("_target_", "")).endswith("TokenizeReportd"))
        ]
    if datalist is not None:
        out.update(dataset_dir=str(datalist.root), datalist_path=str(datalist.path))
    if image_size is not None:
        out["image_size"] = int(image_size)
    out.update(overrides)
    return out


def classifier_preprocessing(config_files: Sequence[str], overrides: Mapping[str, Any]) -> Any:
    """The classifier's evaluation preprocessing (its ``image_transforms``) as a MONAI ``Compose``."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config(list(config_files))
    for key, value in overrides.items():
        parser[key] = value
    key = "image_transforms" if "image_transforms" in parser else "preprocessing_transforms"
    return Compose(parser.get_parsed_content(key))


def train_classifier(
    config_files: Sequence[str], output_dir: str | PathLike, overrides: Mapping[str, Any]
) -> tuple[Path, float | None]:
    """Train the classifier with its bundle config (``python -m monai.bundle run`` in-process) into
    ``<output_dir>/classifier/``; returns the best checkpoint (validation macro AUROC) and that AUROC.

    The process's torch thread count is restored afterwards (the config may set its own)."""
    from monai.bundle import ConfigWorkflow

    settings = {**overrides, "output_dir": str(output_dir)}
    threads = torch.get_num_threads()
    try:
        flow = ConfigWorkflow(config_file=list(config_files), logging_file=False, workflow_type="train", **settings)
        flow.initialize()
        flow.run()
        flow.finalize()
    finally:
        torch.set_num_threads(threads)
    checkpoint = Path(flow.parser.get_parsed_content("classifier_checkpoint"))
    if not checkpoint.is_file():
        raise RuntimeError(
            f"{checkpoint}: classifier training kept no model; the validation macro AUROC that selects it needs a "
            "validation split where some class has both label values"
        )
    best = getattr(flow.parser.get_parsed_content("validate#evaluator").state, "best_metric", None)
    return checkpoint, (float(best) if best is not None and math.isfinite(best) else None)


def _input_channels(network: nn.Module) -> int:
    first = next((m for m in network.modules() if isinstance(m, nn.Conv2d)), None)
    return int(first.in_channels) if first is not None else 1


def classify_images(
    network: nn.Module, images: torch.Tensor, batch_size: int = 32, device: str | torch.device | None = None
) -> dict[str, torch.Tensor]:
    """``features`` and ``probs`` of :func:`bundle.classifier.predict` on grey ``[N, 1, H, W]`` images in [0, 1],
    turned back into the network's input (channels repeated, [-1, 1]) one batch at a time, so only a batch is
    ever expanded."""
    channels = _input_channels(network)
    parts = [
        predict(network, chunk.expand(-1, channels, -1, -1) * 2 - 1, batch_size=batch_size, device=device)
        for chunk in images.split(batch_size)
    ]
    return {key: torch.cat([p[key] for p in parts]) for key in ("features", "probs")}


# ------------------------------------------------------------------------------------------------ image sets
@dataclass
class ImageSet:
    """One evaluated set: its items, grey images ``[N, 1, H, W]`` in [0, 1], labels ``[N, K]`` and reports."""

    name: str
    items: list[dict]
    images: torch.Tensor
    labels: np.ndarray
    reports: list[str] | None

    def __len__(self) -> int:
        return len(self.items)


def load_image_set(
    name: str,
    items: Sequence[Mapping[str, Any]],
    transform: Any,
    skip: SkipCounter,
    label_columns: Sequence[int] | None = None,
) -> ImageSet:
    """Load ``items`` through ``transform`` (output ``[C, H, W]`` in [-1, 1]); keep the first channel in [0, 1].

    An unreadable image raises its :class:`DataError` (naming the file), or is counted and left out when
    ``skip`` skips bad input. ``label_columns`` picks and orders the label columns kept.
    """
    kept, images = [], []
    for item in items:
        data = preprocess_or_skip(transform, item, skip)
        if data is None:
            continue
        image = torch.as_tensor(data["image"]).as_subclass(torch.Tensor).float()
        if image.ndim != 3:
            raise DataError(item.get("image"), f"preprocessing gave shape {tuple(image.shape)}, expected [C, H, W]")
        images.append(((image[:1] + 1) / 2).clamp(0, 1))
        kept.append(dict(item))
    if not kept:
        raise DataError(name, "no loadable images")
    labels = np.asarray([item["labels"] for item in kept], dtype=np.float64)
    if label_columns is not None:
        labels = labels[:, list(label_columns)]
    reports = [item.get("report") for item in kept]
    has_reports = all(isinstance(r, str) for r in reports)
    return ImageSet(name, kept, torch.stack(images), labels, reports if has_reports else None)
