"""The samples to draw: one conditioning item ``{"sample_index", "seed", "labels"}`` per sample, from the user's
label choice (explicit label sets, N per class, or rows drawn from the training label distribution: the default, so a
synthetic set keeps the real co-occurrence of findings).

Sample seeds are ``seed * SEED_STRIDE + sample_index``, so each sample depends on its own seed alone and the output
does not depend on the batch size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.data.errors import DataError

__all__ = ["SEED_STRIDE", "conditioning_items", "training_label_rows"]

#: Sample seeds are ``seed * SEED_STRIDE + sample_index``: distinct for runs with different seeds.
SEED_STRIDE = 1_000_003


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
