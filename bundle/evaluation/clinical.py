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
* :func:`pair_agreement` / :func:`pair_consistency_ratio` check that an image and its report state the same
  findings (classifier readings of images against labeler readings of reports, generated pairs relative to real
  ones), which needs no conditioning labels; :func:`thresholds_from_validation` binarises the probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from bundle.data.errors import DataError
from bundle.data.labeler import label_report
from bundle.data.labels import CHEXPERT_CLASSES, DEFAULT_CLASSES, check_class_names, to_multi_hot
from bundle.data.reports import normalise_report_text

from .text_metrics import Reports, match_ids

__all__ = [
    "chance_pair_agreement",
    "clinical_efficacy",
    "label_f1",
    "label_reports",
    "normalise_report",
    "pair_agreement",
    "pair_consistency_ratio",
    "thresholds_from_validation",
    "verbatim_copy_rate",
]


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
    """The form in which two reports count as the same text (:func:`bundle.data.reports.normalise_report_text`:
    lower case, punctuation stripped, whitespace collapsed), shared with the data layer's held-out text checks."""
    return normalise_report_text(text)


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


# ------------------------------------------------------------------------------------------ pair consistency
def _binary_readings(labels: Any, num_classes: int, what: str) -> np.ndarray:
    array = np.asarray(labels, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != num_classes:
        raise ValueError(f"{what} must be [N, {num_classes}] (one column per class), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    bad = ~np.isin(array, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"{what} must be binary readings (1 or 0), got {array[bad][:5].tolist()}")
    return array


def _pair_scores(image_labels: Any, report_labels: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """:func:`label_f1` of the report readings against the image readings, both checked to be binary."""
    names = check_class_names(class_names)
    image = _binary_readings(image_labels, len(names), "image_labels")
    report = _binary_readings(report_labels, len(names), "report_labels")
    if image.shape != report.shape:
        raise ValueError(f"image_labels {image.shape} and report_labels {report.shape} differ in shape")
    scores = label_f1(report, image, names)
    if not math.isfinite(scores["mean_f1"]):
        raise ValueError("no class has a positive reading on either side: pair agreement is undefined")
    return scores


def pair_agreement(
    image_labels: np.ndarray | Sequence[Sequence[float]],
    report_labels: np.ndarray | Sequence[Sequence[float]],
    class_names: Sequence[str] = DEFAULT_CLASSES,
) -> float:
    """Do the images and the reports of the same pairs state the same findings? Macro F1 over classes.

    Both sides are binary readings ``[N, K]`` of the same N pairs: the images read by a classifier (e.g. the
    evaluation classifier's predictions thresholded with :func:`thresholds_from_validation`), the reports read
    by the project's labeler (:func:`label_reports`). F1 is symmetric in its two sides, so neither is the
    truth. A class with no positive reading on either side has no F1 and is left out of the mean (as in
    :func:`label_f1`, which computes it); a class read positive on one side only scores 0.

    Unlike :func:`label_f1` against the conditioning labels, this needs no labels the generator was given, so a
    generator cannot meet it by retrieving a training report with the requested labels unless its image shows
    the same findings.

    Raises:
        ValueError: for non-binary or mismatched inputs, or when no class has a positive reading at all.
    """
    return float(_pair_scores(image_labels, report_labels, class_names)["mean_f1"])


def chance_pair_agreement(
    image_labels: np.ndarray | Sequence[Sequence[float]],
    report_labels: np.ndarray | Sequence[Sequence[float]],
    class_names: Sequence[str] = DEFAULT_CLASSES,
) -> float:
    """The :func:`pair_agreement` expected when reports are paired with images at random.

    Under a random permutation of the pairing, each side keeps its positives (``a_k`` image positives, ``r_k``
    report positives of class k out of N), so a class's F1 denominator ``a_k + r_k`` is fixed and its expected
    true positives are ``a_k r_k / N``: the expected F1 is exactly ``2 a_k r_k / (N (a_k + r_k))``, averaged over
    the same classes :func:`pair_agreement` keeps (a positive on either side). An agreement near this value
    says images and reports of a pair are unrelated, whatever their marginal label rates.
    """
    names = check_class_names(class_names)
    image = _binary_readings(image_labels, len(names), "image_labels")
    report = _binary_readings(report_labels, len(names), "report_labels")
    if image.shape != report.shape:
        raise ValueError(f"image_labels {image.shape} and report_labels {report.shape} differ in shape")
    a, r = image.sum(axis=0), report.sum(axis=0)
    kept = (a + r) > 0
    if not kept.any():
        raise ValueError("no class has a positive reading on either side: pair agreement is undefined")
    return float(np.mean(2 * a[kept] * r[kept] / (len(image) * (a[kept] + r[kept]))))


def pair_consistency_ratio(
    gen_image_labels: np.ndarray | Sequence[Sequence[float]],
    gen_report_labels: np.ndarray | Sequence[Sequence[float]],
    real_image_labels: np.ndarray | Sequence[Sequence[float]],
    real_report_labels: np.ndarray | Sequence[Sequence[float]],
    class_names: Sequence[str] = DEFAULT_CLASSES,
) -> dict[str, Any]:
    """Image-report agreement of generated pairs relative to that of real pairs read the same way.

    The classifier and the labeler disagree on real pairs too, so generated agreement is read against real
    agreement: a ratio of 1 means generated pairs are as consistent as real ones, and a ratio near
    ``generated_chance / real`` means their images and reports are unrelated. Needs no conditioning labels.

    Args:
        gen_image_labels, gen_report_labels: binary readings ``[N, K]`` of the generated images and reports.
        real_image_labels, real_report_labels: binary readings ``[M, K]`` of real (held-out) images and reports,
            read by the same classifier, thresholds and labeler.
        class_names: the K classes, in column order.

    Returns:
        ``generated`` and ``real`` (:func:`pair_agreement`), ``ratio`` (generated / real), ``generated_chance``
        and ``real_chance`` (:func:`chance_pair_agreement`), and ``per_class`` (``{name: {"generated",
        "real"}}``, F1 or None when neither side has a positive).

    Raises:
        ValueError: as :func:`pair_agreement`, and when real agreement is 0 (the ratio is undefined).
    """
    names = check_class_names(class_names)
    generated = _pair_scores(gen_image_labels, gen_report_labels, names)
    real = _pair_scores(real_image_labels, real_report_labels, names)
    if real["mean_f1"] == 0:
        raise ValueError("real image-report agreement is 0: the classifier and labeler never agree, no ratio")
    return {
        "generated": float(generated["mean_f1"]),
        "real": float(real["mean_f1"]),
        "ratio": float(generated["mean_f1"] / real["mean_f1"]),
        "generated_chance": chance_pair_agreement(gen_image_labels, gen_report_labels, names),
        "real_chance": chance_pair_agreement(real_image_labels, real_report_labels, names),
        "per_class": {
            name: {"generated": generated["per_class"][name], "real": real["per_class"][name]} for name in names
        },
    }


def thresholds_from_validation(
    probabilities: np.ndarray | Sequence[Sequence[float]],
    labels: np.ndarray | Sequence[Sequence[float]],
    default: float = 0.5,
) -> np.ndarray:
    """Per-class decision thresholds that maximise F1 on a validation split.

    Used to binarise probabilities (the evaluation classifier's, or F's label head) before :func:`pair_agreement`
    or :func:`label_f1` (which scores the binarised predictions: macro F1 over classes with a positive on
    either side, per-class F1, micro F1). A sample is positive when its probability is at least the threshold.

    For each class every distinct validation probability is a candidate cut; the best F1 wins (ties: the
    highest cut, fewest positives), and the threshold returned is the midpoint between that cut and the next
    lower validation probability, so test probabilities between the two fall on the side of the nearer one
    (the lowest probability itself when every sample is predicted positive). Unknown labels (-1) are left out.

    Args:
        probabilities: ``[N, K]`` validation probabilities.
        labels: ``[N, K]`` validation labels (1, 0, or -1 unknown).
        default: the threshold of a class without a known positive in validation (its F1 cannot be maximised).

    Returns:
        ``[K]`` float64 thresholds.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probabilities must be a non-empty [N, K] array, got shape {probs.shape}")
    if not np.isfinite(probs).all():
        raise ValueError("probabilities must be finite")
    truth = _as_label_array(labels, probs.shape[1], "labels")
    if truth.shape != probs.shape:
        raise ValueError(f"probabilities {probs.shape} and labels {truth.shape} differ in shape")
    thresholds = np.full(probs.shape[1], float(default))
    for k in range(probs.shape[1]):
        known = truth[:, k] != -1
        p, y = probs[known, k], truth[known, k]
        positives = y.sum()
        if positives == 0:
            continue
        order = np.argsort(-p, kind="stable")
        p, y = p[order], y[order]
        last = np.flatnonzero(np.append(p[1:] != p[:-1], True))  # the last sample of each distinct value
        f1 = 2 * np.cumsum(y)[last] / (last + 1 + positives)  # predicted positives = last + 1
        best = last[int(np.argmax(f1))]
        thresholds[k] = p[best] if best + 1 == len(p) else (p[best] + p[best + 1]) / 2
    return thresholds
