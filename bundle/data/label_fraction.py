"""EMIXER's limited-label setting: keep the labels of a fraction of the items of each class.

The paper (section 4.5.1, appendix 6.3.2) builds partially labelled training sets "by randomly selecting 30%
of the samples from each class". An item keeps its labels if it is selected for any of its positive classes;
items with no positive class ("normal" when "No Finding" is not a class) form one more group, sampled the
same way. Classes are filled rarest first; items already kept through another class count towards a
class's quota, and a class's picks prefer items without a label of an already filled class, so every class
keeps ``round(fraction x its size)`` of its items (more only when co-occurrence leaves no other choice).

The items not kept get ``"labelled": 0.0`` and all-zero ``"labels"``, so the trainer uses them for the
unconditional and rotation terms only; their labels stay in ``"labels_full"`` for evaluation. Every item
gets both keys, so batches collate. Usable from a bundle config:
``"$bundle.data.label_fraction.apply_label_fraction(@train_datalist, @label_fraction, @class_names)"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bundle.data.errors import DataError

__all__ = ["apply_label_fraction", "NO_CLASS"]

#: Group name of the items with no positive class.
NO_CLASS = "(no positive class)"


def _label_vector(item: Mapping[str, Any], index: int, num_classes: int) -> np.ndarray:
    name = item.get("image", f"item {index}")
    if "labels" not in item:
        raise DataError(name, "item has no 'labels'")
    labels = np.asarray(item["labels"], dtype=np.float64).reshape(-1)
    if labels.shape[0] != num_classes:
        raise DataError(name, f"item has {labels.shape[0]} labels but there are {num_classes} class names")
    return labels


def apply_label_fraction(
    items: Sequence[Mapping[str, Any]], fraction: float, class_names: Sequence[str], seed: int = 0
) -> list[dict[str, Any]]:
    """Return copies of ``items`` where only ``fraction`` of each class keeps its labels.

    Args:
        items: datalist items, each with ``"labels"``: multi-hot over ``class_names``.
        fraction: share of each class's items that keep their labels, in [0, 1] (0.3 in the paper; 1 keeps all).
        class_names: the label vector's class names.
        seed: seed of the selection (the same seed selects the same items).

    Returns:
        New item dicts with ``"labelled"`` (1.0 / 0.0), ``"labels_full"`` (the original labels) and ``"labels"``
        (the original labels if kept, else zeros).
    """
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"label_fraction={fraction} must be in [0, 1]")
    k = len(class_names)
    vectors = np.stack([_label_vector(item, i, k) for i, item in enumerate(items)]) if items else np.zeros((0, k))
    positive = vectors > 0.5
    groups = [np.flatnonzero(positive[:, c]) for c in range(k)] + [np.flatnonzero(~positive.any(axis=1))]
    keep = np.zeros(len(items), dtype=bool)
    if fraction >= 1.0:
        keep[:] = True
    else:
        rng = np.random.default_rng(seed)
        filled = np.zeros(k, dtype=bool)  # classes whose quota is met
        for g in sorted(range(len(groups)), key=lambda g: (len(groups[g]), g)):  # rarest class first
            members = groups[g]
            quota = int(round(float(fraction) * len(members)))
            missing = quota - int(keep[members].sum())
            if missing > 0:
                candidates = rng.permutation(members[~keep[members]])
                # prefer items that add no label to an already filled class, so earlier quotas stay exact
                overlap = positive[candidates][:, filled].sum(axis=1)
                keep[candidates[np.argsort(overlap, kind="stable")[:missing]]] = True
            if g < k:
                filled[g] = True
    out = []
    for item, vector, kept in zip(items, vectors, keep):
        new = dict(item)
        new["labels_full"] = [float(v) for v in vector]
        new["labels"] = [float(v) for v in vector] if kept else [0.0] * k
        new["labelled"] = 1.0 if kept else 0.0
        out.append(new)
    return out
