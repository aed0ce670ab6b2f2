"""Clinical-efficacy metrics: do generated reports state the same findings as the reports (or labels) they
should match?

Both sides are labelled with the project's CheXpert-style labeler (:func:`bundle.data.labeler.label_report`)
and turned into multi-hot vectors with :func:`bundle.data.labels.to_multi_hot`, so "uncertain" follows the
same policy as training (U-Zeros by default) and "No Finding" follows the project's convention.

* :func:`clinical_efficacy` is R2Gen's CE convention: generated vs reference reports of the same studies over
  the 14 CheXpert observations, precision / recall / F1 from scikit-learn, micro and macro averaged, with a
  class that has no positives on either side counting as 0 in the macro average (sklearn ``zero_division=0``).
* :func:`label_f1` checks EMIXER's conditioning: generated reports against the labels they were generated for.
* :func:`verbatim_copy_rate` is the share of generated reports that repeat a training report word for word.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from bundle.data.errors import DataError
from bundle.data.labeler import label_report
from bundle.data.labels import CHEXPERT_CLASSES, DEFAULT_CLASSES, check_class_names, to_multi_hot

from .text_metrics import Reports, match_ids

__all__ = ["clinical_efficacy", "label_f1", "label_reports", "normalise_report", "verbatim_copy_rate"]


def label_reports(
    reports: Iterable[str], class_names: Sequence[str] = CHEXPERT_CLASSES, uncertain: str = "zeros"
) -> np.ndarray:
    """Multi-hot labels ``[N, len(class_names)]`` (float) of reports, read by the project's labeler."""
    names = check_class_names(class_names)
    rows = [to_multi_hot(label_report(text), names, uncertain) for text in reports]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))


def clinical_efficacy(
    references: Reports,
    hypotheses: Reports,
    class_names: Sequence[str] = CHEXPERT_CLASSES,
    uncertain: str = "zeros",
) -> dict[str, Any]:
    """CE precision / recall / F1 (micro and macro) of generated reports against the reference reports.

    Args:
        references: ``{id: report}`` or a list; one reference report per id.
        hypotheses: generated reports over the same ids.
        class_names: observations scored (R2Gen scores all 14 CheXpert observations).
        uncertain: policy for uncertain mentions (``"zeros"``: uncertain counts as absent, as in R2Gen).

    Returns:
        ``precision_micro``, ``recall_micro``, ``f1_micro``, ``precision_macro``, ``recall_macro``,
        ``f1_macro`` and ``per_class`` (``{name: {precision, recall, f1, support}}``, support = reference
        positives).
    """
    if uncertain == "ignore":
        raise ValueError("clinical_efficacy needs binary labels: use uncertain='zeros' or 'ones'")
    refs, hyps = match_ids(references, hypotheses)
    several = [i for i, texts in refs.items() if len(texts) != 1]
    if several:
        raise DataError(None, f"clinical efficacy needs one reference report per id; several for {several[:5]}")
    names = check_class_names(class_names)
    y_true = label_reports((refs[i][0] for i in refs), names, uncertain)
    y_pred = label_reports((hyps[i][0] for i in refs), names, uncertain)
    out: dict[str, Any] = {}
    for average in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        out.update({f"precision_{average}": float(p), f"recall_{average}": float(r), f"f1_{average}": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    out["per_class"] = {
        name: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
        for k, name in enumerate(names)
    }
    return out


def _as_label_array(labels: Any, num_classes: int, what: str) -> np.ndarray:
    array = np.asarray(labels, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != num_classes:
        raise ValueError(f"{what} must be [N, {num_classes}] (one column per class), got shape {array.shape}")
    bad = ~np.isin(array, (0.0, 1.0, -1.0))
    if bad.any():
        raise ValueError(f"{what} must hold 1, 0 or -1 (unknown), got {array[bad][:5].tolist()}")
    return array


def label_f1(
    report_labels: np.ndarray | Sequence[Sequence[float]] | Sequence[str],
    conditioning_labels: np.ndarray | Sequence[Sequence[float]],
    class_names: Sequence[str] = DEFAULT_CLASSES,
    uncertain: str = "zeros",
) -> dict[str, Any]:
    """F1 of the findings generated reports state against the labels the reports were generated for.

    Args:
        report_labels: multi-hot labels of the generated reports ``[N, K]``, or the report texts themselves
            (labelled here with the project's labeler and ``uncertain`` policy).
        conditioning_labels: the conditioning multi-hot vectors ``[N, K]``; -1 marks an unknown label (EMIXER's
            limited-label setting), which is left out of that class's score.
        class_names: the K conditioning classes, in column order.

    Returns:
        ``per_class`` (``{name: F1 or None}``; None when neither side has a positive, F1 being undefined),
        ``mean_f1`` (mean over the classes with a defined F1), ``micro_f1`` and ``num_reports``.
    """
    names = check_class_names(class_names)
    if len(report_labels) and isinstance(report_labels[0], str):
        report_labels = label_reports(report_labels, names, uncertain)
    pred = _as_label_array(report_labels, len(names), "report_labels")
    true = _as_label_array(conditioning_labels, len(names), "conditioning_labels")
    if pred.shape != true.shape:
        raise ValueError(f"report_labels {pred.shape} and conditioning_labels {true.shape} differ in shape")
    if (pred == -1).any():
        raise ValueError("report_labels must be 1 or 0: label the reports with uncertain='zeros' or 'ones'")
    known = true != -1
    per_class: dict[str, float | None] = {}
    for k, name in enumerate(names):
        score = f1_score(true[known[:, k], k], pred[known[:, k], k], zero_division=np.nan)
        per_class[name] = None if np.isnan(score) else float(score)
    defined = [v for v in per_class.values() if v is not None]
    micro = f1_score(true[known], pred[known], zero_division=np.nan) if known.any() else np.nan
    return {
        "per_class": per_class,
        "mean_f1": float(np.mean(defined)) if defined else float("nan"),
        "micro_f1": float(micro),
        "num_reports": int(len(pred)),
    }


def normalise_report(text: str) -> str:
    """Lower case with whitespace collapsed: the form in which two reports count as the same text."""
    return " ".join(text.lower().split())


def verbatim_copy_rate(generated_reports: Iterable[str], training_reports: Iterable[str]) -> float:
    """Share of generated reports equal to some training report (after :func:`normalise_report`).

    Radiology reports are formulaic ("No acute cardiopulmonary process."), so short normal reports repeat
    training text legitimately; read this together with the n-gram overlap of :mod:`.memorisation`.
    """
    training = {normalise_report(t) for t in training_reports}
    generated = [normalise_report(t) for t in generated_reports]
    if not generated:
        raise ValueError("no generated reports")
    return sum(g in training for g in generated) / len(generated)
