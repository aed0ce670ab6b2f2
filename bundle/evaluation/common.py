"""Helpers shared by the evaluation run's modules (suite, summary, decode): bad input named or skipped, random
subsets, and JSON written atomically."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.data.errors import DataError, SkipCounter

__all__ = [
    "data_error_cause",
    "preprocess_or_skip",
    "subsample",
    "to_jsonable",
    "write_json",
    "write_text_atomic",
]


def data_error_cause(error: BaseException | None) -> DataError | None:
    """The :class:`DataError` behind ``error`` (MONAI wraps transform errors in RuntimeError), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, DataError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def preprocess_or_skip(transform: Any, item: Mapping[str, Any], skip: SkipCounter) -> dict | None:
    """``transform`` applied to a copy of ``item``; an unreadable input raises its :class:`DataError` (naming the file),
    or is counted and gives None when ``skip`` skips bad input. Other errors propagate."""
    try:
        return transform(dict(item))
    except Exception as err:  # MONAI's Compose wraps the loader's DataError in a RuntimeError
        cause = data_error_cause(err)
        if cause is None:
            raise
        skip.handle(cause)
        return None


def subsample(items: list[dict], max_items: int | None, rng: np.random.Generator) -> list[dict]:
    """A random subset of ``max_items`` items in their original order (all of them when fewer)."""
    if max_items is None or len(items) <= max_items:
        return items
    keep = np.sort(rng.choice(len(items), size=int(max_items), replace=False))
    return [items[i] for i in keep]


def to_jsonable(value: Any) -> Any:
    """``value`` with tensors / numpy values as Python numbers and lists, paths as text, NaN / inf as None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, PathLike):
        return str(value)
    return value


def write_text_atomic(text: str, path: str | PathLike) -> Path:
    """Write ``text`` to ``path`` (folders made), atomically: a partial file never takes the final name."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)
    return target


def write_json(data: Any, path: str | PathLike) -> Path:
    """Write ``data`` as indented JSON, atomically (:func:`write_text_atomic`)."""
    return write_text_atomic(json.dumps(data, indent=2) + "\n", path)
