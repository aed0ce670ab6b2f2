"""The results' numbers and tables: one summary row per evaluated run, mean / std over seeds per setting and per
baseline, and the Markdown tables of the page (summary, report diversity and novelty, each run's measures beside its
baselines, each run's evaluation suite).

A value that could not be computed is None in the rows and the JSON and ``-`` in the tables; means and standard
deviations are taken over the numbers present (a standard deviation needs two).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from bundle.experiments.settings import BASELINE_KEYS, BASELINE_NAMES, REAL_COUNTERPARTS, RUN_KEYS, SUMMARY_KEYS


def summary_row(
    setting: str,
    seed: int,
    metrics: Mapping[str, Any],
    record: Mapping[str, Any],
    seconds_per_iteration: float | None = None,
) -> dict[str, Any]:
    """One run's row: every key of ``metrics["summary"]`` (None where the suite could not compute it, the reasons in
    ``summary_skipped``), the run's baselines (``metrics["baselines"]``, each with :data:`BASELINE_KEYS`) and its
    training facts (:data:`RUN_KEYS`)."""
    summary = metrics.get("summary") or {}
    row: dict[str, Any] = {"setting": setting, "seed": seed, **{key: summary.get(key) for key in SUMMARY_KEYS}}
    row.update(
        iterations=record.get("iterations"),
        planned_iterations=record.get("planned_iterations"),
        seconds_per_iteration=seconds_per_iteration,
        train_wall_s=record.get("wall_s"),
    )
    row["summary_skipped"] = dict(metrics.get("summary_skipped") or {})
    baselines = metrics.get("baselines") or {}
    row["baselines"] = {name: baseline_values(block) for name, block in baselines.items() if isinstance(block, Mapping)}
    return row


def baseline_values(block: Mapping[str, Any]) -> dict[str, Any]:
    """One baseline of ``metrics["baselines"]`` as the tables read it: the :data:`BASELINE_KEYS` (``fallback_rate``
    from its ``fallbacks`` block), its ``fallbacks`` and the reasons of its None values (``skipped_keys``)."""
    fallbacks = block.get("fallbacks")
    values = {key: block.get(key) for key in BASELINE_KEYS}
    values["fallback_rate"] = fallbacks.get("fallback_rate") if isinstance(fallbacks, Mapping) else None
    return {**values, "fallbacks": fallbacks, "skipped_keys": dict(block.get("skipped_keys") or {})}


def _number(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (None, text, booleans, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def mean_std(values: Sequence[Any]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the numbers among ``values`` (std needs two of them)."""
    numbers = [v for v in (_number(value) for value in values) if v is not None]
    if not numbers:
        return None, None
    mean = sum(numbers) / len(numbers)
    std = math.sqrt(sum((v - mean) ** 2 for v in numbers) / (len(numbers) - 1)) if len(numbers) > 1 else None
    return mean, std


#: The keys averaged over seeds: the numeric summary keys and the training facts.
STAT_KEYS: tuple[str, ...] = (
    tuple(k for k in SUMMARY_KEYS if k not in ("report_source", "memorisation_flag")) + RUN_KEYS
)


def by_setting(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Rows by setting, in the order the settings first appear."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["setting"], []).append(row)
    return groups


def setting_stats(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Mean and std over ``rows`` (one setting's seeds) of every key of :data:`STAT_KEYS`."""
    pairs = {key: mean_std([row.get(key) for row in rows]) for key in STAT_KEYS}
    return {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}


def aggregate_settings(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The JSON's ``settings``: per setting its runs (seed, every summary key, training facts, skipped reasons and
    baselines), mean and std over the seeds, ``n_seeds`` and how many runs the memorisation audit flagged."""
    out: dict[str, dict[str, Any]] = {}
    for setting, group in by_setting(rows).items():
        mean, std = setting_stats(group)
        out[setting] = {
            "runs": [{k: v for k, v in row.items() if k != "setting"} for row in group],
            "mean": mean,
            "std": std,
            "n_seeds": len(group),
            "memorisation_flagged": sum(row.get("memorisation_flag") is True for row in group),
        }
    return out


def _baseline_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    found = {name for row in rows for name in row.get("baselines", {})}
    return [n for n in BASELINE_NAMES if n in found] + sorted(found - set(BASELINE_NAMES))


def _baseline_stats(rows: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any]:
    blocks = [row["baselines"][name] for row in rows if name in row.get("baselines", {})]
    pairs = {key: mean_std([block.get(key) for block in blocks]) for key in BASELINE_KEYS}
    return {
        "mean": {k: v[0] for k, v in pairs.items()},
        "std": {k: v[1] for k, v in pairs.items()},
        "n_runs": len(blocks),
    }


def aggregate_baselines(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The JSON's ``baselines``: per baseline its mean / std over every run's evaluation (``n_runs``) and the same per
    setting (``by_setting``). Retrieval baselines depend on a run only through its conditioning labels and pair
    consistency; ``decoder_alone`` reads each run's generated images, so its per-setting values differ more."""
    out: dict[str, dict[str, Any]] = {}
    for name in _baseline_names(rows):
        out[name] = _baseline_stats(rows, name)
        out[name]["by_setting"] = {
            setting: _baseline_stats(group, name)
            for setting, group in by_setting(rows).items()
            if any(name in row.get("baselines", {}) for row in group)
        }
    return out


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "-"
    return str(value)


class Column(NamedTuple):
    """A table column: its header, the summary key it shows and the digits of its numbers."""

    header: str
    key: str
    digits: int = 3


#: The summary table (issue 17): label agreement with both classifiers, report label F1 of generated pairs and of
#: F on real images beside the classifier's, pair consistency, FID, report diversity and copying, the audit.
SUMMARY_COLUMNS: tuple[Column, ...] = (
    Column("label agreement, independent", "label_agreement_ratio_independent"),
    Column("label agreement", "label_agreement_ratio"),
    Column("report label F1", "report_label_f1"),
    Column("report label F1, real test", "report_label_f1_real"),
    Column("classifier label F1, real test", "classifier_label_f1_real"),
    Column("pair consistency", "pair_consistency_ratio"),
    Column("FID ratio", "fid_ratio", 2),
    Column("distinct-2", "distinct_2"),
    Column("verbatim rate", "verbatim_rate"),
    Column("memorisation flag", "memorisation_flag"),
    Column("iterations", "iterations", 0),
    Column("s per GAN iteration", "seconds_per_iteration", 2),
    Column("train wall time (s)", "train_wall_s", 0),
)
#: The report diversity and novelty table.
TEXT_COLUMNS: tuple[Column, ...] = (
    Column("distinct-1", "distinct_1"),
    Column("distinct-2", "distinct_2"),
    Column("self-BLEU-4", "self_bleu_4"),
    Column("max BLEU-4 to training (mean)", "max_bleu_to_train_mean"),
    Column("verbatim rate", "verbatim_rate"),
    Column("pair agreement", "pair_agreement_generated"),
    Column("pair consistency", "pair_consistency_ratio"),
    Column("baseline fallback rate", "fallback_rate"),
)


def measure_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> list[str]:
    """One row per setting x seed, mean / std rows per setting (std needs two or more seeds), a mean row per
    baseline (over every run's evaluation; "-" where a baseline has no such measure) and a "real test" row with
    the real counterparts (:data:`REAL_COUNTERPARTS`, mean over the runs)."""
    lines = [
        "| setting | seed | " + " | ".join(c.header for c in columns) + " |",
        "|" + " --- |" * (len(columns) + 2),
    ]
    for row in rows:
        lines.append(
            f"| {row['setting']} | {row['seed']} | " + " | ".join(fmt(row.get(c.key), c.digits) for c in columns) + " |"
        )
    for setting, group in by_setting(rows).items():
        mean, std = setting_stats(group)
        flagged = sum(row.get("memorisation_flag") is True for row in group)
        audited = sum(isinstance(row.get("memorisation_flag"), bool) for row in group)
        for label, stats in (("mean", mean), ("std", std)):
            cells = []
            for column in columns:
                if column.key == "memorisation_flag":
                    cells.append(f"{flagged}/{audited} flagged" if label == "mean" else "")
                else:
                    cells.append(fmt(stats.get(column.key), column.digits))
            lines.append(f"| {setting} | {label} (n={len(group)}) | " + " | ".join(cells) + " |")
    for name, block in aggregate_baselines(rows).items():
        cells = [fmt(block["mean"].get(c.key), c.digits) if c.key in BASELINE_KEYS else "-" for c in columns]
        lines.append(f"| baseline: {name} | mean (n={block['n_runs']}) | " + " | ".join(cells) + " |")
    real = [c for c in columns if c.key in REAL_COUNTERPARTS]
    if real:
        means = {c.key: mean_std([row.get(REAL_COUNTERPARTS[c.key]) for row in rows])[0] for c in real}
        cells = [fmt(means[c.key], c.digits) if c.key in means else "-" for c in columns]
        lines.append(f"| real test | mean (n={len(rows)}) | " + " | ".join(cells) + " |")
    return lines


def summary_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The summary table (:data:`SUMMARY_COLUMNS`) with the baselines and the real test reference."""
    return measure_table(rows, SUMMARY_COLUMNS)


def text_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Report diversity and novelty (:data:`TEXT_COLUMNS`) with the baselines and the real test reference."""
    return measure_table(rows, TEXT_COLUMNS)


def run_baseline_table(row: Mapping[str, Any]) -> list[str]:
    """One run's report measures beside its own baselines and the real test reference."""
    names = list(row.get("baselines", {}))
    lines = [
        "| measure | model | " + " | ".join(f"baseline: {n}" for n in names) + " | real test |",
        "|" + " --- |" * (len(names) + 3),
    ]
    for key in BASELINE_KEYS:
        model = fmt(row.get(key)) if key in SUMMARY_KEYS else "-"
        baselines = [fmt(row["baselines"][n].get(key)) for n in names]
        real = fmt(row.get(REAL_COUNTERPARTS[key])) if key in REAL_COUNTERPARTS else "-"
        lines.append(f"| {key} | {model} | " + " | ".join(baselines) + (" | " if names else "") + f"{real} |")
    skipped = row.get("summary_skipped") or {}
    if skipped:
        lines += ["", "Not computed: " + "; ".join(f"{key} ({reason})" for key, reason in skipped.items()) + "."]
    for name in names:
        reasons = row["baselines"][name].get("skipped_keys") or {}
        if reasons:
            lines += ["", f"Not computed for {name}: " + "; ".join(f"{k} ({v})" for k, v in reasons.items()) + "."]
    return lines


def run_tables(metrics: Mapping[str, Any]) -> list[str]:
    """The evaluation suite's numbers for one run: FID, label agreement and report F1 per class, diversity, audit."""
    fid_block = metrics.get("fid", {}).get("classifier", {})
    lines = ["| FID (classifier features) | value |", "| --- | --- |"]
    for key in ("generated_vs_test", "generated_vs_test_matched", "validation_vs_test", "ratio", "matched_size"):
        lines.append(f"| {key} | {fmt(fid_block.get(key), 2)} |")
    xrv = metrics.get("fid", {}).get("xrv", {})
    if "skipped" in xrv:
        lines.append(f"| torchxrayvision FID | skipped: {xrv['skipped']} |")
    agreement = metrics.get("label_agreement", {})
    generated, real_test = agreement.get("generated", {}), agreement.get("real_test", {})
    reports = metrics.get("reports", {})
    f1 = reports.get("label_f1", {}) if "skipped" not in reports else {}
    per_class_f1 = f1.get("per_class", {}) if isinstance(f1, Mapping) else {}
    lines += ["", "| class | AUROC generated | AUROC real test | report label F1 |", "| --- | --- | --- | --- |"]
    for name in agreement.get("classes", []):
        lines.append(
            f"| {name} | {fmt(generated.get('auroc', {}).get(name))} "
            f"| {fmt(real_test.get('auroc', {}).get(name))} | {fmt(per_class_f1.get(name))} |"
        )
    lines.append(
        f"| **macro / mean** | {fmt(generated.get('macro_auroc'))} "
        f"| {fmt(real_test.get('macro_auroc'))} | {fmt(f1.get('mean_f1') if isinstance(f1, Mapping) else None)} |"
    )
    diversity = metrics.get("diversity", {}).get("generated", {})
    real_diversity = metrics.get("diversity", {}).get("real_test", {})
    lines += [
        "",
        (
            f"- MS-SSIM diversity (lower = more diverse): generated {_diversity_text(diversity)}, "
            f"real test {_diversity_text(real_diversity)}"
        ),
    ]
    decoder = reports.get("decoder") if isinstance(reports, Mapping) else None
    if isinstance(decoder, Mapping):
        ce = decoder.get("clinical_efficacy", {})
        scores = ", ".join(
            f"{key} {fmt(decoder.get(key))}"
            for key in ("BLEU-1", "BLEU-4", "CIDEr", "ROUGE-L", "METEOR")
            if key in decoder
        )
        lines.append(
            f"- report decoder F on the real test images: {scores}; clinical efficacy F1 micro "
            f"{fmt(ce.get('f1_micro'))} / macro {fmt(ce.get('f1_macro'))}; label F1 against the images' labels "
            f"{fmt(decoder.get('label_f1', {}).get('mean_f1'))}"
        )
    lines.append(f"- memorisation audit: {metrics.get('memorisation', {}).get('verdict', '-')}")
    lines.append(f"- verdict: {metrics.get('verdict', '-')}")
    return lines


def _diversity_text(block: Mapping[str, Any]) -> str:
    if "skipped" in block:
        return f"skipped ({block['skipped']})"
    return f"{fmt(block.get('mean'))} +/- {fmt(block.get('std'))} ({block.get('num_sets')} label sets)"
