"""Finding labels in the CheXpert / MIMIC-CXR convention and their conversion to multi-hot vectors.

A label *record* maps a CheXpert observation name to 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or
``None`` (not mentioned), exactly as ``mimic-cxr-2.0.0-chexpert.csv`` stores them. Training uses a
multi-hot vector over the configured ``class_names``; the uncertain-label policy decides what -1.0 becomes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .errors import DataError

#: The 14 CheXpert observations, in the column order of mimic-cxr-2.0.0-chexpert.csv.
CHEXPERT_CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)

#: The findings the embedded dataset draws with a measurable sign; the default conditioning classes.
DEFAULT_CLASSES: tuple[str, ...] = (
    "No Finding",
    "Cardiomegaly",
    "Pleural Effusion",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Support Devices",
)

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")

_TEXT_VALUES = {
    "1": POSITIVE, "1.0": POSITIVE, "positive": POSITIVE, "pos": POSITIVE, "true": POSITIVE, "yes": POSITIVE,
    "0": NEGATIVE, "0.0": NEGATIVE, "negative": NEGATIVE, "neg": NEGATIVE, "false": NEGATIVE, "no": NEGATIVE,
    "-1": UNCERTAIN, "-1.0": UNCERTAIN, "uncertain": UNCERTAIN, "u": UNCERTAIN,
    "": None, "nan": None, "none": None, "null": None,
}


def parse_label_value(value: object, source: str | None = None, column: str | None = None) -> float | None:
    """Turn a CSV / JSON label cell into 1.0, 0.0, -1.0 or None; raise :class:`DataError` for anything else."""
    if value is None:
        return None
    if isinstance(value, bool):
        return POSITIVE if value else NEGATIVE
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return None
        if float(value) in (POSITIVE, NEGATIVE, UNCERTAIN):
            return float(value)
    elif isinstance(value, str) and value.strip().lower() in _TEXT_VALUES:
        return _TEXT_VALUES[value.strip().lower()]
    where = f" in column {column!r}" if column else ""
    raise DataError(source, f"unknown label value {value!r}{where} (expected 1, 0, -1 or empty)")


def check_class_names(class_names: Sequence[str], source: str | None = None) -> list[str]:
    """Validate configured class names against the CheXpert observations; return them as a list."""
    unknown = [c for c in class_names if c not in CHEXPERT_CLASSES]
    if unknown:
        raise DataError(source, f"unknown label {unknown} (known: {', '.join(CHEXPERT_CLASSES)})")
    if len(set(class_names)) != len(class_names):
        raise DataError(source, f"duplicate class names in {list(class_names)}")
    return list(class_names)


def to_multi_hot(
    record: Mapping[str, float | None],
    class_names: Sequence[str],
    uncertain: str = "zeros",
) -> list[float]:
    """Multi-hot vector over ``class_names`` from a label record.

    ``uncertain`` is the policy for -1.0: ``"zeros"`` (U-Zeros), ``"ones"`` (U-Ones) or ``"ignore"``
    (kept as -1.0 so a loss can mask it). Unmentioned findings are negative. ``No Finding`` is positive
    when the record says so, or when no other configured finding is positive and the record has no
    explicit value for it.
    """
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain policy {uncertain!r} is not one of {UNCERTAIN_POLICIES}")
    out: list[float] = []
    for name in class_names:
        value = record.get(name)
        if value is None:
            out.append(NEGATIVE)
        elif value == UNCERTAIN:
            out.append({"zeros": NEGATIVE, "ones": POSITIVE, "ignore": UNCERTAIN}[uncertain])
        else:
            out.append(float(value))
    if "No Finding" in class_names and record.get("No Finding") is None:
        others = [v for n, v in zip(class_names, out) if n != "No Finding"]
        out[list(class_names).index("No Finding")] = POSITIVE if not any(v == POSITIVE for v in others) else NEGATIVE
    return out
