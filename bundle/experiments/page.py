"""The results page: the Markdown page and its JSON (the same numbers, for scripts), written atomically, with the
facts that make a run reproducible and comparable (the command, the machine, the preset, the dataset, the seeds, the
wall times) and how the reports were written and the decoder baseline shared.

The page text and the JSON keys are a contract with readers of ``docs/results/``: the same inputs give the same page.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bundle.evaluation.common import write_text_atomic
from bundle.experiments.settings import DECODER_ALONE, PRESET_KEYS, SETTINGS, TARGET_SETTING
from bundle.experiments.tables import (
    aggregate_baselines,
    aggregate_settings,
    fmt,
    run_baseline_table,
    run_tables,
    summary_table,
    text_table,
)
from bundle.experiments.targets import evaluate_targets, rotation_comparison, rotation_table, targets_table


def machine_info(threads: int) -> dict[str, Any]:
    """CPU, cores, thread count, device and library versions of this run."""
    import monai
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "system": f"{platform.system()} {platform.release()}",
    }


def machine_facts(info: Mapping[str, Any]) -> list[str]:
    """:func:`machine_info` as Markdown list items."""
    return [
        f"- CPU: {info['cpu']}, {info['cores']} cores; torch threads: {info['torch_threads']}; "
        f"device: {info['device']}",
        f"- Python {info['python']}, torch {info['torch']}, MONAI {info['monai']}, {info['system']}",
    ]


def preset_lines(preset: Mapping[str, Any]) -> list[str]:
    """The preset as Markdown list items: each value and what it turns on."""
    lines = [f"- `{key}` = {json.dumps(preset.get(key))}: {meaning}" for key, meaning in PRESET_KEYS.items()]
    lines.append(f"- inference `report_source` = {json.dumps(preset.get('report_source'))}")
    return lines


def report_source_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """What the reports of the evaluated runs are: written by F from the generated image alone, or label-conditioned
    writing (named as such), per the summary's ``report_source`` of each run."""
    by_source: dict[Any, list[str]] = {}
    for row in rows:
        by_source.setdefault(row.get("report_source"), []).append(f"{row['setting']} seed {row['seed']}")
    parts = []
    if "image" in by_source:
        runs = "every run" if len(by_source) == 1 else ", ".join(by_source["image"])
        parts.append(
            f"Reports are written by F from the generated image alone (report_source image) in {runs}: report label "
            "F1, pair consistency and the text measures score what F reads in G's images."
        )
    if "labels" in by_source:
        parts.append(
            f"LABEL-CONDITIONED WRITING (report_source labels) in {', '.join(by_source['labels'])}: F is given the "
            "conditioning labels, so report label F1 there measures writing from the labels, not reading the image."
        )
    for source, runs in by_source.items():
        if source not in ("image", "labels"):
            parts.append(f"report_source {fmt(source)} in {', '.join(runs)}.")
    return " ".join(parts) or "No evaluated run."


def decoder_text(assignment: Mapping[tuple[str, int], int | None]) -> str:
    """How the ``decoder_alone`` baseline was shared among the evaluations, in words."""
    used = {key: seed for key, seed in assignment.items() if seed is not None}
    if not used:
        return "decoder_alone baseline: not trained in this run (no decoder_alone setting), so not in the tables."
    if all(seed == key[1] for key, seed in used.items()):
        return (
            "decoder_alone baseline: F trained by teacher forcing alone for the full run's F steps (same warm-up, "
            "then one step per GAN iteration; every adversarial, rotation and consistency term off, G untouched), "
            "one run per seed: each evaluation decodes its generated images with the F of its own seed."
        )
    shared = sorted({f"seed {seed}" for seed in used.values()})
    return (
        "decoder_alone baseline: F trained by teacher forcing alone for the full run's F steps (every adversarial, "
        f"rotation and consistency term off); shared: evaluations without a decoder_alone run of their own seed use "
        f"the one of {', '.join(shared)}."
    )


def _jsonable(value: Any) -> Any:
    """``value`` with paths as text, tuples as lists and NaN / inf as None (``json.dumps`` would write NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def results_document(
    rows: Sequence[Mapping[str, Any]],
    *,
    command: str,
    date: str,
    machine: Mapping[str, Any],
    preset: Mapping[str, Any],
    dataset: Mapping[str, Any],
    seeds: Mapping[str, Sequence[int]],
    decoder_runs: Sequence[Mapping[str, Any]] = (),
    assignment: Mapping[tuple[str, int], int | None] | None = None,
) -> dict[str, Any]:
    """The JSON beside the page: command, date, machine, preset, dataset (folder, seed, counts), seeds per setting,
    per setting its runs with mean / std over seeds (:func:`aggregate_settings`), the baselines
    (:func:`aggregate_baselines`), the targets (:func:`evaluate_targets`), the rotation comparison and the
    ``decoder_alone`` runs with the seed each evaluation's decoder baseline came from."""
    assignment = assignment or {}
    return _jsonable(
        {
            "command": command,
            "date": date,
            "machine": dict(machine),
            "preset": dict(preset),
            "dataset": dict(dataset),
            "seeds": {k: list(v) for k, v in seeds.items()},
            "settings": aggregate_settings(rows),
            "baselines": aggregate_baselines(rows),
            "targets": evaluate_targets(rows),
            "rotation_comparison": rotation_comparison(rows, preset.get("use_rotation_loss")),
            DECODER_ALONE: {
                "runs": [dict(run) for run in decoder_runs],
                "used_by": [
                    {"setting": setting, "seed": seed, "decoder_seed": decoder}
                    for (setting, seed), decoder in assignment.items()
                ],
            },
        }
    )


def write_results_json(path: Path, document: Mapping[str, Any]) -> Path:
    """The JSON document (:func:`results_document`) at ``path``, written atomically; no NaN in the file."""
    return write_text_atomic(json.dumps(document, indent=2, allow_nan=False) + "\n", path)


def write_results(
    path: Path,
    rows: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]],
    *,
    classifiers: Mapping[str, Mapping[str, Any]],
    dataset: Mapping[str, Any],
    command: str,
    times: Mapping[str, float],
    machine: Mapping[str, Any],
    preset: Mapping[str, Any],
    seeds: Mapping[str, Sequence[int]],
    assignment: Mapping[tuple[str, int], int | None] | None = None,
    decoder_runs: Sequence[Mapping[str, Any]] = (),
    date: str | None = None,
) -> Path:
    """The Markdown results page at ``path`` and its JSON (``path`` with ``.json``, :func:`results_document`), both
    written atomically; figure links are relative to the page. ``runs`` are the evaluated runs (setting, seed,
    record, run_dir, eval_dir, metrics, figures); ``rows`` their summary rows."""
    figure_dir = path.with_suffix("")
    date = date or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    assignment = assignment or {}
    document = results_document(
        rows,
        command=command,
        date=date,
        machine=machine,
        preset=preset,
        dataset=dataset,
        seeds=seeds,
        decoder_runs=decoder_runs,
        assignment=assignment,
    )

    def link(figure: Path | None, alt: str) -> str:
        if figure is None:
            return f"({alt}: not available)"
        return f"![{alt}]({figure.relative_to(path.parent).as_posix()})"

    counts = dataset.get("counts", {})
    seed_text = "; ".join(f"{setting} {', '.join(map(str, values))}" for setting, values in seeds.items())
    classifier_lines = [
        f"- {name}: {info.get('epochs')} epochs, best validation macro AUROC "
        f"{fmt(info.get('best_validation_macro_auroc'))}, shared by every evaluation"
        for name, info in classifiers.items()
    ]
    lines = [
        "# EMIXER on the embedded dataset: reproduction results",
        "",
        "Written by `scripts/reproduce_embedded.py` (do not edit by hand: rerun the command below); the same numbers "
        f"are in `{path.with_suffix('.json').name}` beside this page.",
        f"Date: {date}",
        "",
        "## What this page measures",
        "",
        "Preset: `configs/train.json` + `configs/demo.json` with the command's overrides (each setting adds its own, "
        "listed in its section):",
        "",
        *preset_lines(preset),
        "",
        report_source_text(rows),
        "",
        f"Seeds (training, generation and evaluation): {seed_text or '-'}. Dataset seed: {dataset.get('seed')} (the "
        "embedded dataset's generation and patient split).",
        "",
        "Baselines beside the model in every table: `retrieval_by_labels` (a random training report with the "
        "requested label set) and `most_common_per_label_set` (the most frequent training report with it) learn "
        "nothing, and are scored with the model's measures on each run's conditioning labels; a target such a "
        f"baseline meets says little about the model. {decoder_text(assignment)}"
        + "".join(
            f" decoder_alone seed {run['seed']}: {run.get('iterations')} of {run.get('planned_iterations')} "
            "iterations after its warm-up."
            for run in decoder_runs
        ),
        "",
        "## Command",
        "",
        "```",
        command,
        "```",
        "",
        "## Machine and wall times",
        "",
        *machine_facts(machine),
        f"- dataset: {dataset.get('dir')} ({', '.join(f'{k} {v}' for k, v in counts.items()) or 'counts n/a'}), "
        f"dataset seed {dataset.get('seed')}",
        *classifier_lines,
        "",
        "| step | wall time (s) |",
        "| --- | --- |",
        *[f"| {step} | {seconds:.0f} |" for step, seconds in times.items()],
        "",
        "## Summary",
        "",
        "Label agreement: macro AUROC of a real-trained classifier on generated images (against their conditioning "
        "labels) / its macro AUROC on the real test split; `independent` is the ResNet-18 that no training term "
        "uses. Report label F1: the project's labeler on the generated reports vs the conditioning labels; on the "
        "real test: F's reports of the real test images vs their labels, beside the classifier's label F1 on the "
        "same images. Pair consistency: image-report agreement of generated pairs / of real test pairs (the "
        "classifier reads the image, the labeler the report). FID ratio: FID(generated, real test) / FID(real "
        "validation, real test) on the classifier's pooled features at matched set sizes. Verbatim rate: reports "
        "equal to a training report. Seconds per GAN iteration: from the TensorBoard event times; time-limited runs "
        "on a busier machine reach fewer iterations. `-`: not computed (reasons in each run's section).",
        "",
        *summary_table(rows),
        "",
        "## Report diversity and novelty",
        "",
        "Distinct-n: distinct n-grams / all n-grams over the generated reports; self-BLEU-4 between reports of the "
        "same label set (lower = more varied); max BLEU-4 to training: each report's closest training report, "
        "averaged (1 = copies); baseline fallback rate: requests with no training report of their label set (the "
        "nearest label set's reports stand in).",
        "",
        *text_table(rows),
        "",
        "## Targets",
        "",
        f"On the `{TARGET_SETTING}` setting's mean over seeds (a reference key's mean too); targets are not lowered: "
        "a miss is stated with its size, in the measure's units and as a share of the target. The baselines are "
        "scored on the same runs against the same thresholds.",
        "",
        *targets_table(document["targets"]),
        "",
    ]
    if document["rotation_comparison"]:
        lines += [
            "## Self-supervision in the limited-label setting",
            "",
            "EMIXER credits rotation self-supervision for its limited-label results: each limited-label setting "
            "beside its twin trained without the rotation loss (means over seeds).",
            "",
            *rotation_table(document["rotation_comparison"]),
            "",
        ]
    for run in runs:
        record = run["record"]
        row = run["row"]
        stopped = " (stopped by the time limit)" if record.get("stopped_by_time_limit") else ""
        decoder_seed = assignment.get((run["setting"], run["seed"]))
        decoder = (
            "none"
            if decoder_seed is None
            else f"decoder_alone seed {decoder_seed}" + (" (shared)" if decoder_seed != run["seed"] else "")
        )
        lines += [
            f"## {run['setting']}, seed {run['seed']}",
            "",
            f"Overrides: `{json.dumps(SETTINGS.get(run['setting'], {}))}`; "
            f"{record.get('iterations')} of {record.get('planned_iterations')} iterations{stopped}; report source "
            f"{fmt(row.get('report_source'))}; decoder baseline: {decoder}; run folder `{run['run_dir']}`; full "
            f"evaluation report `{run['eval_dir']}/report.md`.",
            "",
            *run_baseline_table(row),
            "",
            *run_tables(run["metrics"]),
            "",
            link(run.get("losses"), f"loss curves, {run['setting']} seed {run['seed']}"),
            "",
            link(run.get("sheet"), f"generated samples, {run['setting']} seed {run['seed']}"),
            "",
            link(run.get("labels"), f"label agreement, {run['setting']} seed {run['seed']}"),
            "",
        ]
    figure_dir.mkdir(parents=True, exist_ok=True)
    write_results_json(path.with_suffix(".json"), document)
    write_text_atomic("\n".join(lines).rstrip() + "\n", path)
    return path
