"""The evaluation run's human-readable outputs: the verdict line, the Markdown report and its figures, and its
TensorBoard scalars.

:func:`bundle.evaluation.suite.evaluate` computes ``metrics.json``; this module only presents it, so a report can
be rewritten from a saved ``metrics.json`` (:func:`write_report`) without recomputing anything. Figures are PNGs
drawn with matplotlib's Agg canvas (no display needed); images are ``[N, C, H, W]`` in [0, 1], channels averaged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .text_metrics import METRIC_KEYS

__all__ = [
    "distance_histogram_figure",
    "format_value",
    "label_agreement_figure",
    "samples_figure",
    "verdict_line",
    "write_report",
    "write_tensorboard",
]


def format_value(value: Any, digits: int = 4) -> str:
    """A table cell: ``n/a`` for a missing value, ``yes`` / ``no`` for flags, ``digits`` significant figures."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}g}"
    return str(value).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(format_value(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _skipped(block: Any) -> str | None:
    """The reason a metric was not computed (``{"skipped": reason}``), else None."""
    return str(block["skipped"]) if isinstance(block, Mapping) and "skipped" in block else None


# ------------------------------------------------------------------------------------------------ verdict
def verdict_line(metrics: Mapping[str, Any]) -> str:
    """One line summing up fidelity (FID against the real-vs-real reference), label agreement (generated AUROC
    as a share of the real test AUROC), report labels (mean F1) and the memorisation audit's flag."""
    parts = []
    fid = metrics.get("fid", {}).get("classifier", {})
    if fid.get("generated_vs_test_matched") is not None and fid.get("validation_vs_test") is not None:
        ratio = f" ({fid['ratio']:.2f}x)" if fid.get("ratio") is not None else ""
        parts.append(
            f"FID {fid['generated_vs_test_matched']:.4g} vs real-vs-real {fid['validation_vs_test']:.4g}{ratio} "
            f"at {fid['matched_size']} images"
        )
    elif fid.get("generated_vs_test") is not None:
        parts.append(f"FID {fid['generated_vs_test']:.4g} (no real-vs-real reference)")
    agreement = metrics.get("label_agreement", {})
    generated = agreement.get("generated", {}).get("macro_auroc")
    real = agreement.get("real_test", {}).get("macro_auroc")
    if generated is not None:
        share = f", {agreement['ratio']:.0%} of real test {real:.3f}" if agreement.get("ratio") is not None else ""
        parts.append(f"label agreement AUROC {generated:.3f}{share}")
    label_f1 = metrics.get("reports", {}).get("label_f1", {})
    if label_f1.get("mean_f1") is not None:
        parts.append(f"report label F1 {label_f1['mean_f1']:.3f}")
    audit = metrics.get("memorisation", {})
    if "flag" in audit:
        parts.append("MEMORISATION SUSPECTED" if audit["flag"] else "no memorisation flag")
    return "Verdict: " + ("; ".join(parts) if parts else "no metric could be computed")


# ------------------------------------------------------------------------------------------------ figures
def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def samples_figure(
    generated: torch.Tensor, real: torch.Tensor, path: str | PathLike, columns: int = 8, title: str | None = None
) -> Path:
    """PNG of the first ``columns`` generated images (top row) above the first real test images (bottom row)."""
    rows = [("generated", generated[:columns]), ("real test", real[:columns])]
    width = max(len(images) for _, images in rows)
    figure = _figure(1.3 * width + 0.6, 2.9)
    axes = figure.subplots(2, width, squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c in range(width):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c].float().mean(dim=0).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.set_axis_off()
        axes[r][0].set_ylabel(name, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=8)
    return _save(figure, path)


def label_agreement_figure(label_agreement: Mapping[str, Any], path: str | PathLike) -> Path:
    """Bar chart of the classifier's per-class AUROC on generated images (against their conditioning labels)
    beside the same on the real test split; classes without an AUROC are left empty."""
    classes = list(label_agreement["classes"])
    series = [
        ("generated", label_agreement["generated"]["auroc"]),
        ("real test", label_agreement["real_test"]["auroc"]),
    ]
    figure = _figure(max(4.0, 0.8 * len(classes) + 1.5), 3.2)
    ax = figure.subplots()
    x = np.arange(len(classes))
    width = 0.38
    for n, (name, auroc) in enumerate(series):
        values = [auroc.get(c) for c in classes]
        heights = [v if v is not None else 0.0 for v in values]
        ax.bar(x + (n - 0.5) * width, heights, width, label=name)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, classes, rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("AUROC")
    ax.legend(fontsize=7)
    return _save(figure, path)


def distance_histogram_figure(audit: Mapping[str, Any], path: str | PathLike) -> Path:
    """Histograms of the nearest-training-image feature distances of generated and held-out real images, with
    the audit's threshold (the held-out quantile below which an image counts as "closer than real ones get")."""
    features = audit["features"]
    generated = np.asarray(features["generated_to_train"], dtype=np.float64)
    heldout = np.asarray(features["heldout_to_train"], dtype=np.float64)
    figure = _figure(4.5, 3.0)
    ax = figure.subplots()
    bins = np.histogram_bin_edges(np.concatenate([generated, heldout]), bins=30)
    ax.hist(heldout, bins=bins, alpha=0.6, density=True, label=f"held-out real ({len(heldout)})")
    ax.hist(generated, bins=bins, alpha=0.6, density=True, label=f"generated ({len(generated)})")
    ax.axvline(features["threshold"], color="black", linestyle="--", linewidth=0.8, label="threshold")
    ax.set_xlabel(f"{features['metric']} distance to the nearest training image")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return _save(figure, path)


# ------------------------------------------------------------------------------------------------ Markdown
def _data_section(metrics: Mapping[str, Any]) -> list[str]:
    settings = metrics.get("settings", {})
    counts = settings.get("counts", {})
    lines = ["## Data", ""]
    lines += [f"- real: `{settings.get('real')}`", f"- generated: `{settings.get('generated')}`"]
    lines += [f"- image size: {settings.get('image_size')} px; seed {settings.get('seed')}"]
    classifier = settings.get("classifier", {})
    how = "trained here on the real training split" if classifier.get("trained") else "given"
    lines += [f"- classifier: `{classifier.get('checkpoint')}` ({how})", ""]
    lines += _table(["set", "items"], [[name, counts[name]] for name in counts])
    skipped = settings.get("skipped", {})
    if skipped.get("skipped"):
        lines += [f"Skipped {skipped['skipped']} bad items: {skipped.get('reasons')}", ""]
    return lines


def _fid_section(metrics: Mapping[str, Any]) -> list[str]:
    lines = ["## Fidelity: FID (lower is closer to real)", ""]
    lines += [
        "Frechet distance between feature distributions, against the real test split. The reference is real "
        "validation vs real test; both sides of the ratio use the same number of images (FID is biased by set size).",
        "",
    ]
    rows, notes = [], []
    for name, block in metrics.get("fid", {}).items():
        reason = _skipped(block)
        if reason:
            notes.append(f"- {name}: skipped: {reason}")
            continue
        rows.append(
            [
                name,
                block.get("generated_vs_test"),
                block.get("matched_size"),
                block.get("generated_vs_test_matched"),
                block.get("validation_vs_test"),
                block.get("ratio"),
            ]
        )
    header = ["features", "generated vs test (all)", "matched n", "generated vs test (n)", "validation vs test (n)"]
    lines += _table([*header, "ratio"], rows) if rows else []
    return lines + (notes + [""] if notes else [])


def _diversity_section(metrics: Mapping[str, Any]) -> list[str]:
    lines = ["## Diversity: MS-SSIM within a label set (lower is more diverse)", ""]
    rows, notes = [], []
    for name, block in metrics.get("diversity", {}).items():
        reason = _skipped(block)
        if reason:
            notes.append(f"- {name}: skipped: {reason}")
        else:
            rows.append([name.replace("_", " "), block["mean"], block["std"], block["num_sets"], block["num_pairs"]])
    lines += _table(["images", "mean", "std", "label sets", "pairs"], rows) if rows else []
    return lines + (notes + [""] if notes else [])


def _agreement_section(metrics: Mapping[str, Any], figures: Mapping[str, str]) -> list[str]:
    agreement = metrics.get("label_agreement")
    if not agreement:
        return []
    lines = ["## Label agreement: classifier AUROC against the conditioning labels", ""]
    generated, real = agreement["generated"], agreement["real_test"]
    rows = []
    for name in agreement["classes"]:
        g, r = generated["auroc"].get(name), real["auroc"].get(name)
        rows.append([name, g, r, g / r if g is not None and r else None])
    rows.append(["**macro**", generated["macro_auroc"], real["macro_auroc"], agreement.get("ratio")])
    lines += _table(["class", "generated", "real test", "ratio"], rows)
    notes = [
        f"- {side}: {name}: {note}"
        for side, block in (("generated", generated), ("real test", real))
        for name, note in block.get("notes", {}).items()
    ]
    lines += notes + ([""] if notes else [])
    if "label_agreement" in figures:
        lines += [f"![label agreement]({figures['label_agreement']})", ""]
    return lines


def _decoder_lines(decoder: Any) -> list[str]:
    """The report decoder's scores on real test images: text metrics, clinical efficacy and label F1."""
    if not isinstance(decoder, Mapping):
        return []
    lines = ["### Report decoder F on real test images", ""]
    reason = _skipped(decoder)
    if reason:
        return lines + [f"Skipped: {reason}", ""]
    settings = decoder.get("settings", {})
    lines += [
        f"F's greedy reports for {format_value(settings.get('num_reports'))} real {settings.get('split', 'test')} "
        f"images against their real reports (checkpoint `{settings.get('checkpoint')}`).",
        "",
    ]
    keys = [key for key in METRIC_KEYS if key in decoder]
    lines += _table(keys, [[decoder[key] for key in keys]]) if keys else []
    ce = decoder.get("clinical_efficacy", {})
    if ce:
        rows = [
            [average, *(ce.get(f"{m}_{average}") for m in ("precision", "recall", "f1"))]
            for average in ("micro", "macro")
        ]
        lines += _table(["clinical efficacy (vs reference reports)", "precision", "recall", "F1"], rows)
    label = decoder.get("label_f1", {})
    if label:
        lines += _table(
            ["label F1 (vs the images' labels)", "value"],
            [["mean", label.get("mean_f1")], ["micro", label.get("micro_f1")]],
        )
    return lines


def _reports_section(metrics: Mapping[str, Any]) -> list[str]:
    reports = metrics.get("reports", {})
    lines = ["## Reports", ""]
    reason = _skipped(reports)
    if reason:
        return lines + [f"Skipped: {reason}", ""] + _decoder_lines(reports.get("decoder"))
    generated, real = reports.get("label_f1", {}), reports.get("real_test_label_f1", {})
    lines += ["Findings the labeler reads from each report, against the labels the report should state (F1).", ""]
    rows = [
        [name, value, real.get("per_class", {}).get(name)] for name, value in generated.get("per_class", {}).items()
    ]
    rows += [["**mean**", generated.get("mean_f1"), real.get("mean_f1")]]
    rows += [["**micro**", generated.get("micro_f1"), real.get("micro_f1")]]
    lines += _table(["class", "generated vs conditioning", "real test reports vs labels"], rows)
    lines += _table(
        ["verbatim copies of a training report", "share"],
        [
            ["generated reports", reports.get("verbatim_copy_rate")],
            ["real test reports (reference)", reports.get("real_test_verbatim_copy_rate")],
        ],
    )
    text = reports.get("text_metrics", {})
    reason = _skipped(text)
    if reason:
        lines += [f"Report-generation metrics: skipped: {reason}", ""]
    elif text:
        lines += _table(list(text), [list(text.values())])
    return lines + _decoder_lines(reports.get("decoder"))


#: The "Honest measures" table: (column, the model's summary key, a baseline's key, the real test summary key).
HONEST_COLUMNS: tuple[tuple[str, str | None, str | None, str | None], ...] = (
    ("report_label_f1", "report_label_f1", "report_label_f1", "report_label_f1_real"),
    ("classifier_label_f1", None, None, "classifier_label_f1_real"),
    ("distinct_1", "distinct_1", "distinct_1", None),
    ("distinct_2", "distinct_2", "distinct_2", "distinct_2_real"),
    ("self_bleu_4", "self_bleu_4", "self_bleu_4", "self_bleu_4_real"),
    ("max_bleu_to_train_mean", "max_bleu_to_train_mean", "max_bleu_to_train_mean", "max_bleu_to_train_mean_real"),
    ("verbatim_rate", "verbatim_rate", "verbatim_rate", "verbatim_rate_real"),
    ("pair_agreement", "pair_agreement_generated", "pair_agreement_generated", "pair_agreement_real"),
    ("pair_consistency_ratio", "pair_consistency_ratio", "pair_consistency_ratio", None),
    ("label_agreement_ratio", "label_agreement_ratio", None, None),
    ("label_agreement_ratio_independent", "label_agreement_ratio_independent", None, None),
    ("fid_ratio", "fid_ratio", None, None),
    ("memorisation_flag", "memorisation_flag", None, None),
)
REPORT_SOURCES = {
    "image": "written from the generated image",
    "labels": "written from the conditioning labels (label-conditioned)",
}


def _honest_section(metrics: Mapping[str, Any]) -> list[str]:
    """The summary beside the report baselines and the real test reference, in one table."""
    summary = metrics.get("summary")
    if not isinstance(summary, Mapping):
        return []
    source = summary.get("report_source")
    written = REPORT_SOURCES.get(source, f"report source {source!r}") if source is not None else None
    written = written or "the generated datalist does not say what they were written from"
    reading = (
        "Report label F1 against the conditioning labels is met by report writers that learn nothing (the baselines "
        "return training reports carrying the requested labels, beside the same generated images), so read it with "
        "what they fail: distinct-n (higher: more varied), self-BLEU-4 within a label set and the highest BLEU-4 to a "
        "training report (lower: less repetitive, less copied), the verbatim copy rate, and pair consistency (the "
        "classifier's reading of each image against the labeler's reading of its report; generated / real test)."
    )
    lines = ["## Honest measures", "", f"Generated reports: {written}.", "", reading, ""]
    baselines = metrics.get("baselines", {})
    rows = [["model", *(summary.get(model) if model else None for _, model, _, _ in HONEST_COLUMNS)]]
    for name, block in baselines.items():
        rows.append([f"baseline: {name}", *(block.get(key) if key else None for _, _, key, _ in HONEST_COLUMNS)])
    rows.append(["real test (reference)", *(summary.get(real) if real else None for _, _, _, real in HONEST_COLUMNS)])
    lines += _table(["writer", *(column for column, *_ in HONEST_COLUMNS)], rows)

    counts = metrics.get("settings", {}).get("counts", {})
    real_row = (
        "- real test row: report_label_f1 is F's greedy reports on the real test images against their labels, "
        "classifier_label_f1 the classifier's reading of those images (thresholds from the validation split) against "
        f"their labels; distinct_2 on at most as many test reports as generated ones ({counts.get('generated')})."
    )
    same_images = (
        "- baselines pair their reports with the model's generated images: the image measures (label agreement, FID, "
        "memorisation) are the model's."
    )
    notes = [real_row, same_images]
    pair = metrics.get("pair_consistency", {})
    if isinstance(pair, Mapping) and pair.get("generated_chance") is not None:
        notes.append(
            f"- pair agreement by chance (reports paired with images at random): generated "
            f"{format_value(pair['generated_chance'])}, real test {format_value(pair.get('real_chance'))}."
        )
    for name, block in baselines.items():
        fallbacks = block.get("fallbacks")
        if isinstance(fallbacks, Mapping) and fallbacks.get("num_fallbacks"):
            notes.append(
                f"- {name}: {fallbacks['num_fallbacks']} of {fallbacks['num_requests']} requested label sets carried "
                "by no training report, answered from the nearest ones (mean Hamming distance "
                f"{format_value(fallbacks['mean_fallback_distance'])})."
            )
    skipped = [f"{key}: {reason}" for key, reason in metrics.get("summary_skipped", {}).items()]
    for name, block in baselines.items():
        skipped += [f"{name} {key}: {reason}" for key, reason in block.get("skipped_keys", {}).items()]
    notes += [f"- not computed: {item}" for item in skipped]
    return lines + notes + [""]


def _memorisation_section(metrics: Mapping[str, Any], figures: Mapping[str, str]) -> list[str]:
    audit = metrics.get("memorisation")
    if not audit:
        return []
    lines = ["## Memorisation audit", "", f"**{audit.get('verdict', '')}**", ""]
    rows = []
    for name, key in (("features", "share_closer"), ("ssim", "share_above")):
        if name in audit:
            part = audit[name]
            rows.append(
                [name, part["threshold"], part[key], part["expected_share"], part["p_value"], bool(part["flag"])]
            )
    lines += _table(["test", "threshold", "share of generated past it", "expected", "p-value", "flag"], rows)
    lines += [
        f"Generated {audit.get('num_generated')}, held-out real {audit.get('num_heldout')}, "
        f"training {audit.get('num_train')} images.",
        "",
    ]
    if "reports" in audit:
        part = audit["reports"]
        lines += _table(
            [f"report {part['n']}-gram overlap with the nearest training report", "value"],
            [
                ["mean overlap", part["mean_overlap"]],
                ["share fully overlapping", part["share_full_overlap"]],
                ["verbatim copy rate", part["verbatim_copy_rate"]],
            ],
        )
    for key, caption in (("memorisation_distances", "distances"), ("closest_pairs", "closest pairs")):
        if key in figures:
            lines += [f"![{caption}]({figures[key]})", ""]
    return lines


def write_report(metrics: Mapping[str, Any], path: str | PathLike) -> Path:
    """Write the Markdown report of an evaluation run (``metrics.json``'s content) to ``path``.

    Sections: the verdict line, data, fidelity (FID), diversity (MS-SSIM), label agreement, reports, honest measures
    (the summary beside the report baselines and the real test reference), memorisation audit, and links to the
    figures listed in ``metrics["figures"]`` (paths relative to ``path``).
    """
    figures = dict(metrics.get("figures", {}))
    verdict = metrics.get("verdict") or verdict_line(metrics)
    lines = ["# EMIXER-CXR evaluation", "", f"**{verdict}**", ""]
    lines += _data_section(metrics)
    lines += _fid_section(metrics)
    lines += _diversity_section(metrics)
    lines += _agreement_section(metrics, figures)
    lines += _reports_section(metrics)
    lines += _honest_section(metrics)
    lines += _memorisation_section(metrics, figures)
    if "samples" in figures:
        lines += ["## Samples", "", f"![samples]({figures['samples']})", ""]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ TensorBoard
def _scalars(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of ``metrics`` (settings, lists and missing values left out) as TensorBoard tags."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        tag = f"{prefix}{str(key).replace(' ', '_')}"
        if key in ("settings", "figures"):
            continue
        if isinstance(value, Mapping):
            out.update(_scalars(value, tag + "/"))
        elif isinstance(value, (bool, int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
            out[tag] = float(value)
    return out


def write_tensorboard(metrics: Mapping[str, Any], log_dir: str | PathLike) -> None:
    """The numeric leaves of ``metrics`` as step-0 scalars and its verdict as text, in ``log_dir``."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for tag, value in _scalars(metrics).items():
            writer.add_scalar(tag, value, 0)
        writer.add_text("verdict", str(metrics.get("verdict", "")), 0)
    finally:
        writer.close()
