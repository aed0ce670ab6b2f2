"""The evaluation results as ``scripts/evaluate.py`` prints them, and :func:`score_reports`, its ``reports`` command:
generated reports scored against reference reports from two JSONL files."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from .clinical import clinical_efficacy
from .common import write_json
from .text_metrics import read_reports_jsonl, report_metrics

__all__ = [
    "CE_KEYS",
    "print_decoded_images",
    "print_decoder",
    "print_decoder_run",
    "print_evaluation",
    "print_scores",
    "print_summary",
    "score_reports",
]

#: Clinical-efficacy summary keys, in print order.
CE_KEYS = ("precision_micro", "recall_micro", "f1_micro", "precision_macro", "recall_macro", "f1_macro")


def print_scores(scores: Mapping[str, Any], indent: str = "  ") -> None:
    """Print the numeric entries of ``scores`` one a line, names aligned (missing values as n/a)."""
    width = max(len(str(k)) for k in scores)
    for key, value in scores.items():
        text = f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"
        print(f"{indent}{key:<{width}}  {text}")


def score_reports(
    references: str | PathLike,
    hypotheses: str | PathLike,
    out: str | PathLike,
    meteor: bool | str = "auto",
    clinical: bool = False,
) -> dict[str, float]:
    """Score generated reports against reference reports; write ``<out>/metrics.json`` and print it.

    Args:
        references: JSONL of the real reports, ``{"id", "report"}`` per line.
        hypotheses: JSONL of the generated reports, same ids.
        out: output folder.
        meteor: ``auto`` (when Java is available), ``True`` (required) or ``False`` (skipped).
        clinical: also write ``<out>/clinical_efficacy.json`` (CheXpert-label precision / recall / F1).
    """
    refs = read_reports_jsonl(references)
    hyps = read_reports_jsonl(hypotheses)
    metrics = report_metrics(refs, hyps, meteor=meteor)
    path = write_json(metrics, Path(out) / "metrics.json")
    print(f"{len(refs)} reports -> {path}")
    print_scores(metrics)
    if clinical:
        ce = clinical_efficacy(refs, hyps)
        ce_path = write_json(ce, Path(out) / "clinical_efficacy.json")
        print(f"clinical efficacy -> {ce_path}")
        print_scores({key: ce[key] for key in CE_KEYS})
    return metrics


def print_decoder(metrics: Mapping[str, Any]) -> None:
    """Print a report-decoder evaluation: text metrics, clinical efficacy, label F1."""
    print_scores({key: value for key, value in metrics.items() if isinstance(value, (int, float))})
    print("clinical efficacy (generated vs real reports):")
    print_scores({key: metrics["clinical_efficacy"][key] for key in CE_KEYS})
    print("label F1 (generated reports vs the images' labels):")
    print_scores({key: metrics["label_f1"][key] for key in ("mean_f1", "micro_f1")})


def print_decoded_images(decoded: Any, written: str | PathLike) -> dict[str, Any]:
    """Print how many reports :func:`.decode.decode_images` wrote where, and what it skipped; return that summary."""
    print(f"{len(decoded)} reports decoded from the images of {decoded.source} -> {written}")
    if decoded.skipped.get("skipped"):
        print(f"skipped {decoded.skipped['skipped']}: {decoded.skipped['reasons']}")
    return {"num_reports": len(decoded), "source": decoded.source, "skipped": decoded.skipped}


def print_summary(metrics: Mapping[str, Any]) -> None:
    """Print ``metrics["summary"]`` one key a line (a missing value with its reason) and each baseline's values."""
    summary, skipped = metrics["summary"], metrics["summary_skipped"]
    width = max(len(key) for key in summary)
    print("summary:")
    for key, value in summary.items():
        text = value if isinstance(value, (bool, str)) else f"{value:.4f}" if value is not None else "n/a"
        print(f"  {key:<{width}}  {text}" + (f"  ({skipped[key]})" if key in skipped else ""))
    for name, block in metrics["baselines"].items():
        print(f"baseline {name}:")
        print_scores({key: value for key, value in block.items() if value is None or isinstance(value, float)})


def print_decoder_run(metrics: Mapping[str, Any], out: str | PathLike, written: str | PathLike) -> None:
    """Print a report-decoder evaluation written to ``out``: how many reports of which split went to ``written``,
    the scores (:func:`print_decoder`) and where the metrics are."""
    print(f"{metrics['settings']['num_reports']} {metrics['settings']['split']} reports decoded -> {written}")
    print_decoder(metrics)
    print(f"metrics -> {Path(out) / 'metrics.json'}")


def print_evaluation(metrics: Mapping[str, Any], out: str | PathLike, with_decoder: bool = False) -> None:
    """Print the full evaluation written to ``out``: the verdict, with ``with_decoder`` the report decoder's scores on
    the real test images, the summary and the baselines (:func:`print_summary`), and where the report is."""
    print(metrics["verdict"])
    if with_decoder:
        print("report decoder on the real test images:")
        print_decoder(metrics["reports"]["decoder"])
    print_summary(metrics)
    print(f"report -> {Path(out) / 'report.md'}")
