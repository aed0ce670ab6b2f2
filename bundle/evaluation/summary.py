"""The evaluation run's flat summary and its report baselines: every report figure beside what learns nothing.

The dataset's labels are the labeler's reading of each report, so report label F1 against the conditioning labels
is met by a baseline that retrieves a training report with those labels (:mod:`.baselines`). The run therefore
states each report figure beside trivial baselines and measures that retrieval does not meet:

* :func:`summary_measures` gives ``metrics["summary"]``: one flat value per key of :data:`SUMMARY_KEYS` (a finite
  number, a bool or a string), or None with the reason in ``metrics["summary_skipped"][key]``; never a made-up
  number. It gathers the run's existing figures (label F1, label agreement, FID ratio, memorisation flag) and adds
  the non-circular ones: the classifier's thresholded reading of real test images against their labels
  (``classifier_label_f1_real``), image-report pair consistency of generated pairs relative to real ones
  (``pair_consistency_ratio``: the classifier reads the image, the labeler reads the report, no conditioning label
  involved), and report diversity and novelty (:mod:`.text_diversity`) of generated and real test reports.
* :func:`baseline_measures` gives ``metrics["baselines"]``: reports written by :func:`.baselines.retrieval_by_labels`
  and :func:`.baselines.most_common_per_label_set` for each generated item's conditioning labels (and, given a
  checkpoint of F trained by teacher forcing alone, that F's reports on the generated images), scored on the
  :data:`BASELINE_KEYS` exactly as the model's reports are, paired with the same generated images.
* :func:`independent_label_agreement` repeats the label agreement AUROC with the independent ResNet-18 classifier
  (``configs/train_classifier_independent.json``), which is never used in any training term.

Image readings binarise the (first) evaluation classifier's probabilities with per-class thresholds that maximise
F1 on the real validation split (:func:`.clinical.thresholds_from_validation`); report readings are the project
labeler's (:func:`.clinical.label_reports`). Novelty and the baselines read the whole real training split's reports
(text only, not capped by ``max_items``), so a retrieved training report always counts as a verbatim copy.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.classifier import ClassifierFeatures, auroc_per_class
from bundle.data.datalist import Datalist
from bundle.data.errors import DataError

from .baselines import most_common_per_label_set, retrieval_by_labels
from .classify import ImageSet, classify_images
from .clinical import label_f1, label_reports, pair_consistency_ratio, thresholds_from_validation
from .common import subsample, write_json
from .text_diversity import distinct_n, label_set_keys, novelty, self_bleu

__all__ = [
    "BASELINES",
    "BASELINE_KEYS",
    "SUMMARY_KEYS",
    "ImageReadings",
    "ReportMeasures",
    "ReportTexts",
    "baseline_measures",
    "check_class_count",
    "decoder_alone_reports",
    "image_readings",
    "independent_label_agreement",
    "label_agreement",
    "read_report_source",
    "report_measures",
    "summary_measures",
]

logger = logging.getLogger(__name__)

#: ``metrics["summary"]``'s keys, in order.
SUMMARY_KEYS: tuple[str, ...] = (
    "report_source",
    "report_label_f1",
    "report_label_f1_real",
    "classifier_label_f1_real",
    "pair_consistency_ratio",
    "pair_agreement_generated",
    "pair_agreement_real",
    "label_agreement_ratio",
    "label_agreement_ratio_independent",
    "fid_ratio",
    "memorisation_flag",
    "distinct_1",
    "distinct_2",
    "distinct_2_real",
    "self_bleu_4",
    "self_bleu_4_real",
    "max_bleu_to_train_mean",
    "verbatim_rate",
    "max_bleu_to_train_mean_real",
    "verbatim_rate_real",
)
#: The measures of one report writer paired with the generated images (the model's reports or a baseline's).
BASELINE_KEYS: tuple[str, ...] = (
    "report_label_f1",
    "distinct_1",
    "distinct_2",
    "self_bleu_4",
    "max_bleu_to_train_mean",
    "verbatim_rate",
    "pair_agreement_generated",
    "pair_consistency_ratio",
)
#: The trivial report writers of ``metrics["baselines"]`` (``decoder_alone`` is added with its checkpoint).
BASELINES: tuple[str, ...] = ("retrieval_by_labels", "most_common_per_label_set")


class _Values:
    """Measures by key: a finite float, a bool, a string, or None with the reason in ``skipped``."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.values: dict[str, Any] = dict.fromkeys(keys)
        self.skipped: dict[str, str] = {key: "not computed" for key in keys}

    def put(self, key: str, value: Any, reason: str | None = None) -> None:
        if isinstance(value, (bool, np.bool_)):
            value = bool(value)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            value = float(value)
            if not math.isfinite(value):
                value, reason = None, reason or "not a finite number"
        elif value is not None and not isinstance(value, str):
            raise TypeError(f"{key}: a summary value is a number, bool or str, got {type(value).__name__}")
        self.values[key] = value
        if value is None:
            self.skipped[key] = reason or "not computed"
        else:
            self.skipped.pop(key, None)

    def compute(self, key: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """``put(key, function(...))``; a ValueError (an undefined measure) becomes None with its message."""
        try:
            value = function(*args, **kwargs)
        except ValueError as err:
            self.put(key, None, str(err))
            return
        self.put(key, value)


# ------------------------------------------------------------------------------------------------ inputs
@dataclass
class ReportTexts:
    """The report texts and label rows the report measures read, label columns in ``classes`` order.

    ``generated_labels`` are the conditioning labels of the evaluated generated items; ``test_*`` the evaluated real
    test items (paired with their images); ``train_*`` every training item with report text."""

    classes: list[str]
    generated_reports: list[str] | None
    generated_labels: np.ndarray
    test_reports: list[str] | None
    test_labels: np.ndarray
    train_reports: list[str]
    train_labels: np.ndarray

    @classmethod
    def from_sets(
        cls, generated: ImageSet, test: ImageSet, real: Datalist, classes: Sequence[str], real_columns: Sequence[int]
    ) -> ReportTexts:
        train = [i for i in real.splits["training"] if isinstance(i.get("report"), str) and i["report"].strip()]
        labels = np.asarray([i["labels"] for i in train], dtype=np.float64).reshape(len(train), -1)
        return cls(
            classes=list(classes),
            generated_reports=generated.reports,
            generated_labels=generated.labels,
            test_reports=test.reports,
            test_labels=test.labels,
            train_reports=[i["report"] for i in train],
            train_labels=labels[:, list(real_columns)],
        )

    @cached_property
    def test_report_readings(self) -> np.ndarray | None:
        """The labeler's binary reading of each real test report."""
        return label_reports(self.test_reports, self.classes) if self.test_reports is not None else None


@dataclass
class ImageReadings:
    """The classifier's binary readings of the generated and real test images (``probability >= threshold``, per-class
    thresholds from the real validation split), or why there are none (``reason``)."""

    thresholds: np.ndarray | None = None
    generated: np.ndarray | None = None
    test: np.ndarray | None = None
    reason: str | None = None


def image_readings(
    validation_probs: Any, validation_labels: Any, test_probs: Any, generated_probs: Any
) -> ImageReadings:
    """Threshold the classifier's probabilities ``[N, K]`` (columns in the label order) with the per-class
    thresholds that maximise F1 on the validation split (:func:`.clinical.thresholds_from_validation`)."""
    val = np.asarray(validation_probs, dtype=np.float64)
    if val.shape[0] == 0:
        return ImageReadings(reason="the real validation split is empty: no thresholds for the classifier's readings")
    try:
        thresholds = thresholds_from_validation(val, validation_labels)
    except ValueError as err:
        return ImageReadings(reason=f"no validation thresholds: {err}")
    test = np.asarray(test_probs, dtype=np.float64)
    generated = np.asarray(generated_probs, dtype=np.float64)
    return ImageReadings(
        thresholds=thresholds,
        generated=(generated >= thresholds).astype(np.float64),
        test=(test >= thresholds).astype(np.float64),
    )


def read_report_source(datalist_path: str | PathLike) -> str | None:
    """The generated datalist's top-level ``report_source`` (``"image"`` / ``"labels"``), None when it has none."""
    data = json.loads(Path(datalist_path).read_text(encoding="utf-8"))
    value = data.get("report_source") if isinstance(data, Mapping) else None
    return str(value) if value is not None else None


# ------------------------------------------------------------------------------------------------ label agreement
def label_agreement(
    generated_probs: Any, generated_labels: Any, test_probs: Any, test_labels: Any, classes: Sequence[str]
) -> dict[str, Any]:
    """Classifier AUROC of generated images against their conditioning labels beside the same on real test images,
    and their ratio (``metrics["label_agreement"]``'s shape)."""
    generated = auroc_per_class(generated_probs, generated_labels, classes)
    real = auroc_per_class(test_probs, test_labels, classes)
    g, r = generated["macro_auroc"], real["macro_auroc"]
    return {
        "classes": list(classes),
        "generated": generated,
        "real_test": real,
        "ratio": g / r if g is not None and r else None,
    }


def check_class_count(network: torch.nn.Module, checkpoint: Any, expected: int) -> None:
    """Raise :class:`DataError` naming ``checkpoint`` when the classifier's class count is not ``expected``
    (any classifier ending in a linear layer: DenseNet, ResNet, EfficientNetBN)."""
    outputs = ClassifierFeatures(network).num_classes
    if outputs != expected:
        raise DataError(checkpoint, f"the classifier predicts {outputs} classes but the real datalist has {expected}")


def _model_selectable(real: Datalist) -> bool:
    """Whether classifier training on ``real`` can keep a model: some class of its validation split holds both label
    values 0 and 1 (the macro AUROC that selects the checkpoint is undefined otherwise)."""
    rows = [item["labels"] for item in real.splits.get("validation", [])]
    labels = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    return bool(((labels == 0).any(axis=0) & (labels == 1).any(axis=0)).any())


def independent_label_agreement(
    load: Callable[[], tuple[torch.nn.Module, dict[str, Any]]] | None,
    trains: bool,
    real: Datalist,
    sets: Mapping[str, ImageSet],
    classes: Sequence[str],
    real_columns: Sequence[int],
    device: torch.device,
    batch_size: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Label agreement measured with the independent classifier (a MONAI ResNet-18); returns ``(metrics block,
    settings)``.

    ``load()`` gives the network and its settings entry (checkpoint, whether it was trained here, config files, best
    validation AUROC); ``trains`` says that it trains one on the real training split first (no checkpoint given).
    The classifier is never used in any training term, so its agreement does not rest on a network of the same kind
    as the ones that train G. ``{"skipped": reason}`` for ``load=None`` (turned off), and when it trains and the real
    validation split cannot select a model (no class with both label values: training would keep no model; an extra
    measure, so the run goes on without it).
    """
    if load is None:
        reason = "turned off (independent_classifier=False)"
        return {"skipped": reason}, {"skipped": reason}
    if trains and not _model_selectable(real):
        reason = (
            "no independent classifier: none given, and training one here cannot keep a model (its validation macro "
            "AUROC needs a class with both label values in the real validation split)"
        )
        return {"skipped": reason}, {"skipped": reason}
    network, info = load()
    check_class_count(network, info.get("checkpoint"), len(real.class_names))
    probs = {
        name: classify_images(network, sets[name].images, batch_size, device)["probs"][:, list(real_columns)]
        for name in ("generated", "test")
    }
    block = label_agreement(probs["generated"], sets["generated"].labels, probs["test"], sets["test"].labels, classes)
    block["architecture"] = type(network).__name__
    return block, {**info, "architecture": type(network).__name__}


# ------------------------------------------------------------------------------------------------ measures
def _pair(readings: ImageReadings, report_labels: np.ndarray, texts: ReportTexts) -> dict[str, Any]:
    """:func:`.clinical.pair_consistency_ratio` of (generated image readings, ``report_labels``) against the real test
    pairs; raises ValueError with the reason when it is undefined."""
    if readings.reason is not None:
        raise ValueError(readings.reason)
    if texts.test_report_readings is None:
        raise ValueError("the real test items carry no report text")
    return pair_consistency_ratio(
        readings.generated, report_labels, readings.test, texts.test_report_readings, texts.classes
    )


@dataclass
class ReportMeasures:
    """:data:`BASELINE_KEYS` of one report writer (``values``, the reason of each None value in ``skipped``) and its
    full pair consistency block (:func:`.clinical.pair_consistency_ratio`, or ``{"skipped": reason}``)."""

    values: dict[str, Any]
    skipped: dict[str, str]
    pair: dict[str, Any]


def report_measures(
    reports: Sequence[str] | None, texts: ReportTexts, readings: ImageReadings, seed: int = 0
) -> ReportMeasures:
    """:data:`BASELINE_KEYS` of one report per generated item (``reports``, in generated-item order), paired with the
    generated images: label F1 against the conditioning labels, distinct-1/2, self-BLEU-4 within conditioning label
    sets, novelty against the training reports, and pair consistency of the labeler's reading of each report with
    the classifier's reading of its image, relative to the real test pairs."""
    values = _Values(BASELINE_KEYS)
    if reports is None:
        reason = "the generated items carry no report text"
        for key in BASELINE_KEYS:
            values.put(key, None, reason)
        return ReportMeasures(values.values, values.skipped, {"skipped": reason})
    reports = list(reports)
    if len(reports) != len(texts.generated_labels):
        raise ValueError(f"{len(reports)} reports for {len(texts.generated_labels)} generated items")
    readings_of_reports = label_reports(reports, texts.classes)
    values.compute(
        "report_label_f1", lambda: label_f1(readings_of_reports, texts.generated_labels, texts.classes)["mean_f1"]
    )
    values.compute("distinct_1", distinct_n, reports, 1)
    values.compute("distinct_2", distinct_n, reports, 2)
    values.compute("self_bleu_4", self_bleu, reports, label_set_keys(texts.generated_labels, texts.classes), seed=seed)
    for key, value, reason in _novelty(reports, texts, ("max_bleu_to_train_mean", "verbatim_rate")):
        values.put(key, value, reason)
    try:
        pair = _pair(readings, readings_of_reports, texts)
        values.put("pair_agreement_generated", pair["generated"])
        values.put("pair_consistency_ratio", pair["ratio"])
    except ValueError as err:
        pair = {"skipped": str(err)}
        values.put("pair_agreement_generated", None, str(err))
        values.put("pair_consistency_ratio", None, str(err))
    return ReportMeasures(values.values, values.skipped, pair)


def _novelty(
    reports: Sequence[str], texts: ReportTexts, keys: tuple[str, str]
) -> list[tuple[str, float | None, str | None]]:
    """``(key, value, reason)`` of the mean highest BLEU-4 to a training report and the verbatim rate
    (:func:`.text_diversity.novelty` against every training report), under the names ``keys``."""
    if not texts.train_reports:
        reason = "the real training split has no report text"
        return [(key, None, reason) for key in keys]
    try:
        found = novelty(reports, texts.train_reports)
    except ValueError as err:
        return [(key, None, str(err)) for key in keys]
    return [(keys[0], found["max_bleu_to_train_mean"], None), (keys[1], found["verbatim_rate"], None)]


def _real_report_measures(values: _Values, texts: ReportTexts, size: int | None, seed: int) -> None:
    """``*_real`` report keys of the real test reports: distinct-2 on at most ``size`` of them (a seeded subset; the
    value falls with the set size, so it is read at the generated set's size), self-BLEU-4 within their label sets,
    novelty against the training reports."""
    keys = ("distinct_2_real", "self_bleu_4_real", "max_bleu_to_train_mean_real", "verbatim_rate_real")
    if texts.test_reports is None:
        for key in keys:
            values.put(key, None, "the real test items carry no report text")
        return
    reports = subsample(list(texts.test_reports), size, np.random.default_rng(seed))
    values.compute("distinct_2_real", distinct_n, reports, 2)
    groups = label_set_keys(texts.test_labels, texts.classes)
    values.compute("self_bleu_4_real", self_bleu, texts.test_reports, groups, seed=seed)
    for key, value, reason in _novelty(texts.test_reports, texts, keys[2:]):
        values.put(key, value, reason)


def _existing(values: _Values, key: str, block: Any, path: Sequence[str], why: str) -> None:
    """``values[key]`` = ``block[path...]`` of the run's metrics; None with the reason of a ``{"skipped": reason}``
    block on the way, or ``why``."""
    for name in path:
        if isinstance(block, Mapping) and "skipped" in block and name not in block:
            values.put(key, None, str(block["skipped"]))
            return
        block = block.get(name) if isinstance(block, Mapping) else None
    values.put(key, None if isinstance(block, Mapping) else block, why)


def summary_measures(
    metrics: Mapping[str, Any],
    report_source: str | None,
    texts: ReportTexts,
    readings: ImageReadings,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """``metrics["summary"]`` (every key of :data:`SUMMARY_KEYS`), ``metrics["summary_skipped"]`` (the reason of each
    None value) and ``metrics["pair_consistency"]`` (the full :func:`.clinical.pair_consistency_ratio` result with
    chance levels and the thresholds, or ``{"skipped": reason}``).

    Read from the run's ``metrics`` computed so far: ``report_label_f1`` (``reports -> label_f1``),
    ``report_label_f1_real`` (``reports -> decoder -> label_f1``), ``label_agreement_ratio`` (and ``_independent``),
    ``fid_ratio`` (classifier features) and ``memorisation_flag``. Computed here: ``classifier_label_f1_real`` (the
    classifier's thresholded reading of the real test images against their labels), pair consistency, and report
    diversity / novelty of the generated and the real test reports (``*_real``; ``distinct_2_real`` on at most as many
    test reports as there are generated ones, since distinct-n falls with the set size)."""
    values = _Values(SUMMARY_KEYS)
    values.put("report_source", report_source, "the generated datalist records no report_source")
    reports = metrics.get("reports", {})
    _existing(values, "report_label_f1", reports, ("label_f1", "mean_f1"), "label F1 is undefined")
    decoder = reports.get("decoder") if isinstance(reports, Mapping) else None
    if decoder is None:
        values.put("report_label_f1_real", None, "needs decoder_checkpoint (F's reports on the real test images)")
    else:
        _existing(values, "report_label_f1_real", decoder, ("label_f1", "mean_f1"), "label F1 is undefined")
    if readings.reason is not None:
        values.put("classifier_label_f1_real", None, readings.reason)
    else:
        values.compute(
            "classifier_label_f1_real", lambda: label_f1(readings.test, texts.test_labels, texts.classes)["mean_f1"]
        )
    no_ratio = "no ratio: a macro AUROC is undefined or the real test one is 0"
    _existing(values, "label_agreement_ratio", metrics.get("label_agreement"), ("ratio",), no_ratio)
    _existing(
        values, "label_agreement_ratio_independent", metrics.get("label_agreement_independent"), ("ratio",), no_ratio
    )
    fid = metrics.get("fid", {}).get("classifier", {})
    _existing(values, "fid_ratio", fid, ("ratio",), str(fid.get("note", "the real-vs-real reference FID is 0")))
    _existing(values, "memorisation_flag", metrics.get("memorisation"), ("flag",), "the audit set no flag")

    own = report_measures(texts.generated_reports, texts, readings, seed)
    for key in BASELINE_KEYS:
        if key != "report_label_f1":  # the run's own figure above (the same labeler and classes)
            values.put(key, own.values[key], own.skipped.get(key))
    pair = own.pair
    if "skipped" in pair:
        values.put("pair_agreement_real", None, pair["skipped"])
    else:
        values.put("pair_agreement_real", pair["real"])
        pair = {**pair, "thresholds": dict(zip(texts.classes, readings.thresholds.tolist()))}
    size = len(texts.generated_reports) if texts.generated_reports is not None else None
    _real_report_measures(values, texts, size, seed)
    return values.values, values.skipped, pair


def decoder_alone_reports(
    decode: Callable[[Path, Path], Any], generated: ImageSet, class_names: Sequence[str], out_dir: Path
) -> list[str]:
    """The reports of a report decoder F trained by teacher forcing alone, read from the evaluated generated images,
    one per item in ``generated``'s order. ``decode(datalist, out_dir)`` decodes the images of a datalist of those
    items (``<out_dir>/generated_items.json``) into ``<out_dir>/hypotheses.jsonl`` and returns them by id
    (:func:`.decode.decode_images` with that F's parser). ``class_names``: the columns of the generated items'
    labels."""
    items = [{"id": str(n), "image": item["image"], "labels": item["labels"]} for n, item in enumerate(generated.items)]
    datalist = write_json({"class_names": list(class_names), "training": items}, out_dir / "generated_items.json")
    decoded = decode(datalist, out_dir)
    missing = [item["id"] for item in items if item["id"] not in decoded.hypotheses]
    if missing:
        raise DataError(datalist, f"the baseline decoder gave no report for {len(missing)} generated items")
    return [decoded.hypotheses[item["id"]] for item in items]


def baseline_measures(
    texts: ReportTexts,
    readings: ImageReadings,
    seed: int = 0,
    decoder_alone: Sequence[str] | None = None,
    decoder_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``metrics["baselines"]``: for each trivial report writer of :data:`BASELINES` (and ``decoder_alone``, the reports
    of F trained by teacher forcing alone, when given), one report per generated item for that item's conditioning
    labels, from the real training split's reports and labels, scored by :func:`report_measures` (the generated
    images stand beside them: "G + that report writer"). Each block holds the :data:`BASELINE_KEYS`, ``skipped_keys``
    (the reason of each None value) and ``fallbacks`` (:meth:`.baselines.BaselineReports.info`) or, for
    ``decoder_alone``, ``decoder_info``."""
    out: dict[str, Any] = {}
    writers = {
        "retrieval_by_labels": lambda: retrieval_by_labels(
            texts.train_reports, texts.train_labels, texts.generated_labels, seed=seed
        ),
        "most_common_per_label_set": lambda: most_common_per_label_set(
            texts.train_reports, texts.train_labels, texts.generated_labels
        ),
    }
    for name, write in writers.items():
        if not texts.train_reports:
            reason = "the real training split has no report text"
            out[name] = {**dict.fromkeys(BASELINE_KEYS), "skipped_keys": dict.fromkeys(BASELINE_KEYS, reason)}
            continue
        written = write()
        scored = report_measures(written.reports, texts, readings, seed)
        out[name] = {**scored.values, "skipped_keys": scored.skipped, "fallbacks": written.info()}
    if decoder_alone is not None:
        scored = report_measures(decoder_alone, texts, readings, seed)
        out["decoder_alone"] = {**scored.values, "skipped_keys": scored.skipped, **dict(decoder_info or {})}
    return out
