"""The evaluation classifier as the evaluation run uses it: its preprocessing (from a parser of its configs, composed
by :mod:`bundle.workflows`), and its features and probabilities on image sets loaded through that preprocessing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bundle.classifier import predict
from bundle.data.errors import DataError, SkipCounter

from .common import preprocess_or_skip

__all__ = [
    "ImageSet",
    "classify_images",
    "image_preprocessing",
    "load_image_set",
]


def image_preprocessing(parser: Any) -> Any:
    """The classifier's evaluation preprocessing (its ``image_transforms``, else ``preprocessing_transforms``) of a
    parser of its configs, as a MONAI ``Compose``."""
    from monai.transforms import Compose

    key = "image_transforms" if "image_transforms" in parser else "preprocessing_transforms"
    return Compose(parser.get_parsed_content(key))


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
