"""The evaluation suite's metric library: report text metrics, clinical efficacy, image fidelity and diversity,
and the memorisation audit. Functions take reports, feature arrays and image tensors, so they do not depend
on which network produced the features. :func:`evaluate` (``suite``) joins them into the full evaluation run,
:func:`summary_measures` / :func:`baseline_measures` (``summary``) give its flat summary and report baselines, and
:func:`write_report` (``report``) writes its Markdown report."""

from __future__ import annotations

from .clinical import clinical_efficacy, label_f1, label_reports, normalise_report, verbatim_copy_rate
from .image_metrics import MS_SSIM_WEIGHTS, fid, ms_ssim_diversity, ms_ssim_weights
from .memorisation import (
    NgramIndex,
    closest_pairs_figure,
    memorisation_audit,
    nearest_neighbours,
    ngram_overlap,
    ssim_nearest,
)
from .report import write_report
from .suite import evaluate
from .summary import BASELINE_KEYS, BASELINES, SUMMARY_KEYS, baseline_measures, summary_measures
from .text_metrics import METRIC_KEYS, match_ids, read_reports_jsonl, report_metrics

__all__ = [
    "BASELINES",
    "BASELINE_KEYS",
    "METRIC_KEYS",
    "MS_SSIM_WEIGHTS",
    "SUMMARY_KEYS",
    "NgramIndex",
    "baseline_measures",
    "clinical_efficacy",
    "closest_pairs_figure",
    "evaluate",
    "fid",
    "label_f1",
    "label_reports",
    "match_ids",
    "memorisation_audit",
    "ms_ssim_diversity",
    "ms_ssim_weights",
    "nearest_neighbours",
    "ngram_overlap",
    "normalise_report",
    "read_reports_jsonl",
    "report_metrics",
    "ssim_nearest",
    "summary_measures",
    "verbatim_copy_rate",
    "write_report",
]
