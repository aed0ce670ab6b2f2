"""Reproduce EMIXER's experiments on the embedded dataset and write the results file (issue 6).

    python scripts/reproduce_embedded.py                                  # all settings, seed 0, demo config
    python scripts/reproduce_embedded.py --settings full --seeds "[0,1]"  # one setting, spread over two seeds
    python scripts/reproduce_embedded.py --settings "[full,sm_gan]" --seeds "{full: [0,1], sm_gan: [0]}"
    python scripts/reproduce_embedded.py --settings full --epoch_length 50 --max_epochs 6 --train_minutes 40

One run, with fixed seeds, of the whole pipeline:

1. prepares the embedded dataset into ``dataset_dir`` unless it is there (an existing one is reused);
2. for every setting x seed trains EMIXER (``configs/train.json`` + ``configs/demo.json`` + the setting's overrides
   + ``overrides``) into ``<out_dir>/<setting>/seed<k>``: ``full`` labels, EMIXER's limited-label
   ``label_fraction_0.3`` / ``label_fraction_0.5``, and the ``sm_gan`` ablation (report and joint discriminator
   terms off); a run whose ``train_record.json`` matches its overrides is reused, an unfinished one resumes;
3. trains ONE real-data evaluation classifier (``configs/train_classifier.json``) into ``<out_dir>/classifier`` and
   passes it to every evaluation, so the settings are compared by the same network;
4. generates ``num_samples`` paired samples per run (``configs/inference.json``, labels drawn from the training
   split) and evaluates them against the real dataset (:func:`bundle.evaluation.suite.evaluate`);
5. writes ``results`` (Markdown): a summary table (one row per setting x seed, mean / std rows), the targets and
   whether they are met, per-run tables of the evaluation suite, loss curves read from the runs' TensorBoard event
   files, generated sample sheets, the command line, the machine and the wall times. Figures go to
   ``<results without .md>/`` next to it and are linked relatively.

Other keyword arguments override ids of the training and inference configs (e.g. ``--image_size 32``); ids of
the training config only (``train#...``) are left out of generation. ``train_minutes`` stops each training run
after that long (Ignite's ``TimeLimit``), so a run fits a time budget; the iterations reached are reported.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.data.datalist import DATALIST_NAME  # noqa: E402

CONFIG_DIR = REPO_ROOT / "configs"
TRAIN_CONFIGS = [str(CONFIG_DIR / "train.json"), str(CONFIG_DIR / "demo.json")]
INFER_CONFIGS = [str(CONFIG_DIR / "inference.json"), str(CONFIG_DIR / "demo.json")]
CLASSIFIER_CONFIGS = [str(CONFIG_DIR / "train.json"), str(CONFIG_DIR / "train_classifier.json")]

#: The experiments: config overrides per setting (EMIXER section 4: limited labels and the SM-GAN ablation).
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {},
    "label_fraction_0.3": {"label_fraction": 0.3},
    "label_fraction_0.5": {"label_fraction": 0.5},
    "sm_gan": {"train#trainer#use_report_loss": False, "train#trainer#use_joint_loss": False},
}
#: Targets of issue 6: (summary column, comparison, threshold, wording).
TARGETS: dict[str, tuple[str, float, str]] = {
    "label_agreement_ratio": (">=", 0.9, "AUROC on generated >= 0.9 x AUROC on real test"),
    "report_label_f1": (">=", 0.85, "labeler F1 of generated reports vs conditioning labels >= 0.85"),
    "fid_ratio": ("<=", 2.0, "FID(gen, test) <= 2 x FID(val, test) (classifier features, matched sizes)"),
}
LIMITED_LABEL_TOLERANCE = 0.1
RECORD_NAME = "train_record.json"
SHEET_TILE = 128


# ------------------------------------------------------------------------------------------------ steps
def prepare(dataset_dir: Path, num_items: int, seed: int) -> dict[str, Any]:
    """The embedded dataset in ``dataset_dir``: reused when its datalist is there, else prepared (and its summary)."""
    if (dataset_dir / DATALIST_NAME).is_file():
        print(f"using the dataset already in {dataset_dir}")
        return (
            json.loads((dataset_dir / "summary.json").read_text()) if (dataset_dir / "summary.json").is_file() else {}
        )
    from scripts.prepare_data import prepare_data

    return prepare_data(source="embedded", out_dir=str(dataset_dir), num_items=num_items, seed=seed)


def config_digest(files: Sequence[str | Path] = TRAIN_CONFIGS) -> str:
    """SHA-256 (first 16 hex digits) of the training config files' contents: a run is only reused, resumed or
    compared with the configs it was trained with."""
    digest = hashlib.sha256()
    for name in files:
        digest.update(Path(name).read_bytes())
    return digest.hexdigest()[:16]


def train_run(run_dir: Path, overrides: Mapping[str, Any], train_minutes: float | None) -> dict[str, Any]:
    """Train one EMIXER run into ``run_dir`` (resuming an unfinished one); reuse it when its record matches.

    Returns the record written to ``<run_dir>/train_record.json``: the overrides, the config digest, iterations
    reached, planned iterations, wall seconds and whether the time limit stopped it. A finished run of other
    settings or other config files is an error (pick another ``out_dir``): it is never overwritten or mixed in."""
    record_path = run_dir / RECORD_NAME
    wanted = json.loads(json.dumps(dict(overrides)))
    digest = config_digest()
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        found = (record.get("overrides"), record.get("train_minutes"), record.get("config_digest"))
        if found == (wanted, train_minutes, digest):
            print(f"reusing the finished training run in {run_dir}")
            return {**record, "reused": True}
        raise ValueError(
            f"{record_path}: this run was trained with other settings (overrides {found[0]}, train_minutes "
            f"{found[1]}, config digest {found[2]}; now {wanted}, {train_minutes}, {digest}); use another out_dir"
        )
    from ignite.engine import Events
    from ignite.handlers import TimeLimit
    from monai.bundle import ConfigWorkflow

    start = time.perf_counter()
    flow = ConfigWorkflow(config_file=TRAIN_CONFIGS, workflow_type="train", logging_file=False, **wanted)
    flow.initialize()
    trainer = flow.parser.get_parsed_content("train#trainer")
    if train_minutes is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, TimeLimit(limit_sec=int(train_minutes * 60)))
    flow.run()
    flow.finalize()
    planned = trainer.state.epoch_length * trainer.state.max_epochs
    record = {
        "overrides": wanted,
        "config_digest": digest,
        "train_minutes": train_minutes,
        "iterations": int(trainer.state.iteration),
        "planned_iterations": int(planned),
        "stopped_by_time_limit": int(trainer.state.iteration) < planned,
        "wall_s": time.perf_counter() - start,
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return {**record, "reused": False}


def train_shared_classifier(
    dataset_dir: Path, out_dir: Path, image_size: int, epochs: int, threads: int, overrides: Mapping[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """ONE real-data classifier for every evaluation (reused when ``<out_dir>/classifier/model.pt`` exists).

    Data loading stays in this process (``num_workers`` 0) unless ``overrides`` say otherwise, so ``threads``
    bounds the CPU the step takes."""
    from bundle.evaluation.suite import classifier_overrides, read_datalist, train_classifier

    settings = classifier_overrides(
        CLASSIFIER_CONFIGS,
        read_datalist(dataset_dir),
        image_size,
        **{"max_epochs": epochs, "num_threads": threads, "num_workers": 0, **overrides},
    )
    checkpoint = out_dir / "classifier" / "model.pt"
    info_path = out_dir / "classifier" / "classifier_record.json"
    if checkpoint.is_file() and info_path.is_file():
        print(f"reusing the evaluation classifier {checkpoint}")
        return checkpoint, {**json.loads(info_path.read_text()), "reused": True}
    start = time.perf_counter()
    checkpoint, best = train_classifier(CLASSIFIER_CONFIGS, out_dir, settings)
    info = {"epochs": epochs, "best_validation_macro_auroc": best, "wall_s": time.perf_counter() - start}
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return checkpoint, {**info, "reused": False}


def generate(run_dir: Path, dataset_dir: Path, num_samples: int, seed: int, overrides: Mapping[str, Any]) -> Path:
    """``num_samples`` paired samples of the run's EMA generator and report decoder, labels drawn from training."""
    from scripts.demo import run_workflow

    generated = run_dir / "generated"
    settings = {k: v for k, v in overrides.items() if not k.startswith("train#")}
    settings.update(
        dataset_dir=str(dataset_dir),
        output_dir=str(run_dir),
        generated_dir=str(generated),
        labels="train",
        num_samples=num_samples,
        seed=seed,
        overwrite=True,
        logging_file=False,
    )
    run_workflow(INFER_CONFIGS, "infer", **settings)
    return generated


# ------------------------------------------------------------------------------------------------ figures
def train_scalars(tensorboard_dir: Path) -> dict[str, dict[int, Any]]:
    """Every ``train/`` scalar of a run's TensorBoard event files (all files, a resumed run's included), read once:
    ``{tag: {step: event}}``, each event with ``value`` and ``wall_time``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, dict[int, Any]] = {}
    for events in sorted(tensorboard_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0}).Reload()
        for tag in accumulator.Tags().get("scalars", []):
            if tag.startswith("train/"):
                series.setdefault(tag, {}).update({e.step: e for e in accumulator.Scalars(tag)})
    return series


def loss_curves(scalars: Mapping[str, Mapping[int, Any]], out_path: Path, title: str) -> Path | None:
    """Plot every ``train/`` scalar (from :func:`train_scalars`), one panel per loss term."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {tag: {step: event.value for step, event in events.items()} for tag, events in scalars.items()}
    if not series:
        return None
    tags = sorted(series)
    columns = min(4, len(tags))
    rows = math.ceil(len(tags) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    for ax, tag in zip(axes.flat, tags):
        steps = sorted(series[tag])
        ax.plot(steps, [series[tag][s] for s in steps], linewidth=1)
        ax.set_title(tag.removeprefix("train/"), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(tags) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=80)
    plt.close(fig)
    return out_path


def seconds_per_iteration(scalars: Mapping[str, Mapping[int, Any]], tag: str = "train/g_total") -> float | None:
    """Seconds per GAN iteration from the event times of one logged loss (from :func:`train_scalars`), between its
    first and last logged iterations (start-up and the decoder warm-up excluded). Time-limited runs on a machine
    shared with other work reach fewer iterations; this says how fast each run actually went (a pause between a
    stop and its resume counts). None when fewer than two are logged."""
    times = {step: event.wall_time for step, event in scalars.get(tag, {}).items()}
    if len(times) < 2:
        return None
    first, last = min(times), max(times)
    return (times[last] - times[first]) / (last - first)


# ------------------------------------------------------------------------------------------------ results
def summary_row(
    setting: str,
    seed: int,
    metrics: Mapping[str, Any],
    record: Mapping[str, Any],
    seconds_per_iteration: float | None = None,
) -> dict[str, Any]:
    """The numbers of one run that the summary table and the targets use."""
    reports = metrics.get("reports", {})
    f1 = reports.get("label_f1", {}) if isinstance(reports, Mapping) else {}
    return {
        "setting": setting,
        "seed": seed,
        "label_agreement_ratio": metrics["label_agreement"].get("ratio"),
        "generated_auroc": metrics["label_agreement"]["generated"].get("macro_auroc"),
        "real_test_auroc": metrics["label_agreement"]["real_test"].get("macro_auroc"),
        "report_label_f1": f1.get("mean_f1") if isinstance(f1, Mapping) else None,
        "fid_ratio": metrics["fid"]["classifier"].get("ratio"),
        "memorisation_flag": bool(metrics["memorisation"]["flag"]),
        "iterations": record.get("iterations"),
        "seconds_per_iteration": seconds_per_iteration,
        "train_wall_s": record.get("wall_s"),
    }


def _mean_std(values: Sequence[Any]) -> tuple[float | None, float | None]:
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numbers:
        return None, None
    mean = sum(numbers) / len(numbers)
    std = math.sqrt(sum((v - mean) ** 2 for v in numbers) / (len(numbers) - 1)) if len(numbers) > 1 else None
    return mean, std


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _met(column: str, value: Any) -> str:
    if not isinstance(value, (int, float)) or value is None:
        return "n/a"
    op, threshold, _ = TARGETS[column]
    ok = value >= threshold if op == ">=" else value <= threshold
    return "met" if ok else "not met"


NUMERIC_COLUMNS = ("label_agreement_ratio", "report_label_f1", "fid_ratio", "seconds_per_iteration", "train_wall_s")


def summary_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One row per setting x seed, then mean / std rows per setting (std needs two or more seeds)."""
    head = (
        "| setting | seed | label-agreement ratio | generated AUROC | real test AUROC | report label F1 | FID ratio "
        "| memorisation flag | iterations | s per GAN iteration | train wall time (s) |"
    )
    lines = [head, "|" + " --- |" * 11]
    for row in rows:
        lines.append(
            f"| {row['setting']} | {row['seed']} | {_fmt(row['label_agreement_ratio'])} "
            f"| {_fmt(row['generated_auroc'])} | {_fmt(row['real_test_auroc'])} | {_fmt(row['report_label_f1'])} "
            f"| {_fmt(row['fid_ratio'], 2)} "
            f"| {_fmt(row['memorisation_flag'])} | {_fmt(row['iterations'])} "
            f"| {_fmt(row['seconds_per_iteration'], 2)} | {_fmt(row['train_wall_s'], 0)} |"
        )
    for setting in dict.fromkeys(r["setting"] for r in rows):
        group = [r for r in rows if r["setting"] == setting]
        stats = {c: _mean_std([r[c] for r in group]) for c in NUMERIC_COLUMNS + ("generated_auroc", "real_test_auroc")}
        flags = sum(bool(r["memorisation_flag"]) for r in group)
        for label, index in (("mean", 0), ("std", 1)):
            lines.append(
                f"| {setting} | {label} (n={len(group)}) | {_fmt(stats['label_agreement_ratio'][index])} "
                f"| {_fmt(stats['generated_auroc'][index])} | {_fmt(stats['real_test_auroc'][index])} "
                f"| {_fmt(stats['report_label_f1'][index])} | {_fmt(stats['fid_ratio'][index], 2)} "
                f"| {f'{flags}/{len(group)} flagged' if index == 0 else ''} | "
                f"| {_fmt(stats['seconds_per_iteration'][index], 2)} | {_fmt(stats['train_wall_s'][index], 0)} |"
            )
    return lines


def targets_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each target per setting (means over seeds) and whether it is met."""
    lines = ["| setting | target | reached (mean over seeds) | status |", "| --- | --- | --- | --- |"]
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    means = {s: {c: _mean_std([r[c] for r in rows if r["setting"] == s])[0] for c in TARGETS} for s in settings}
    for setting in settings:
        for column, (_, _, wording) in TARGETS.items():
            value = means[setting][column]
            lines.append(f"| {setting} | {wording} | {_fmt(value)} | {_met(column, value)} |")
        flagged = [r["seed"] for r in rows if r["setting"] == setting and r["memorisation_flag"]]
        status = "met" if not flagged else f"not met (seeds {flagged})"
        lines.append(f"| {setting} | no memorisation flag | {len(flagged)} flagged | {status} |")
    full = means.get("full")
    for setting in settings:
        if not setting.startswith("label_fraction") or full is None:
            continue
        for column in ("label_agreement_ratio", "report_label_f1"):
            value, reference = means[setting][column], full[column]
            if value is None or not reference:
                status, reached = "n/a", "-"
            else:
                gap = (reference - value) / abs(reference)
                status = "met" if gap <= LIMITED_LABEL_TOLERANCE else "not met"
                reached = f"{value:.3f} vs {reference:.3f} ({-gap:+.1%})"
            wording = f"{column.replace('_', ' ')} within {LIMITED_LABEL_TOLERANCE:.0%} of full labels"
            lines.append(f"| {setting} | {wording} | {reached} | {status} |")
    return lines


def run_tables(metrics: Mapping[str, Any]) -> list[str]:
    """The evaluation suite's numbers for one run: FID, label agreement and report F1 per class, diversity, audit."""
    lines = ["| FID (classifier features) | value |", "| --- | --- |"]
    for key in ("generated_vs_test", "generated_vs_test_matched", "validation_vs_test", "ratio", "matched_size"):
        lines.append(f"| {key} | {_fmt(metrics['fid']['classifier'].get(key), 2)} |")
    xrv = metrics["fid"].get("xrv", {})
    if "skipped" in xrv:
        lines.append(f"| torchxrayvision FID | skipped: {xrv['skipped']} |")
    agreement = metrics["label_agreement"]
    reports = metrics.get("reports", {})
    f1 = reports.get("label_f1", {}) if "skipped" not in reports else {}
    per_class_f1 = f1.get("per_class", {}) if isinstance(f1, Mapping) else {}
    lines += ["", "| class | AUROC generated | AUROC real test | report label F1 |", "| --- | --- | --- | --- |"]
    for name in agreement["classes"]:
        value = per_class_f1.get(name)
        lines.append(
            f"| {name} | {_fmt(agreement['generated']['auroc'].get(name))} "
            f"| {_fmt(agreement['real_test']['auroc'].get(name))} | {_fmt(value)} |"
        )
    lines.append(
        f"| **macro / mean** | {_fmt(agreement['generated'].get('macro_auroc'))} "
        f"| {_fmt(agreement['real_test'].get('macro_auroc'))} | {_fmt(f1.get('mean_f1'))} |"
    )
    diversity = metrics.get("diversity", {}).get("generated", {})
    real_diversity = metrics.get("diversity", {}).get("real_test", {})
    lines += [
        "",
        f"- MS-SSIM diversity (lower = more diverse): generated {_diversity_text(diversity)}, "
        f"real test {_diversity_text(real_diversity)}",
    ]
    if "skipped" not in reports:
        lines.append(
            f"- report label F1 of real test reports: {_fmt(reports.get('real_test_label_f1', {}).get('mean_f1'))}; "
            f"verbatim copies of training reports: generated {_fmt(reports.get('verbatim_copy_rate'))}, "
            f"real test {_fmt(reports.get('real_test_verbatim_copy_rate'))}"
        )
    decoder = reports.get("decoder") if isinstance(reports, Mapping) else None
    if isinstance(decoder, Mapping):
        ce = decoder.get("clinical_efficacy", {})
        scores = ", ".join(
            f"{key} {_fmt(decoder.get(key))}"
            for key in ("BLEU-1", "BLEU-4", "CIDEr", "ROUGE-L", "METEOR")
            if key in decoder
        )
        lines.append(
            f"- report decoder F on the real test images: {scores}; clinical efficacy F1 micro "
            f"{_fmt(ce.get('f1_micro'))} / macro {_fmt(ce.get('f1_macro'))}; label F1 against the images' labels "
            f"{_fmt(decoder.get('label_f1', {}).get('mean_f1'))}"
        )
    lines.append(f"- memorisation audit: {metrics['memorisation'].get('verdict', '-')}")
    lines.append(f"- verdict: {metrics.get('verdict', '-')}")
    return lines


def _diversity_text(block: Mapping[str, Any]) -> str:
    if "skipped" in block:
        return f"skipped ({block['skipped']})"
    return f"{_fmt(block.get('mean'))} +/- {_fmt(block.get('std'))} ({block.get('num_sets')} label sets)"


def machine_facts(threads: int) -> list[str]:
    """CPU, cores, thread count and library versions of this run."""
    import monai
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; torch threads: {threads}; device: {device}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, MONAI {monai.__version__}, "
        f"{platform.system()} {platform.release()}",
    ]


def command_line(arguments: Mapping[str, Any]) -> str:
    """The command that reproduces this run (``python scripts/reproduce_embedded.py --name value ...``). Values other
    than strings are written as Python literals, which fire reads back as they were (JSON's ``false`` or ``null``,
    at any depth, would come back as strings)."""
    parts = ["python", "scripts/reproduce_embedded.py"]
    for name, value in arguments.items():
        parts.append(f"--{name} {shlex.quote(value)}" if isinstance(value, str) else f"--{name}={_literal(value)}")
    return " ".join(parts)


def _literal(value: Any) -> str:
    """``repr(value)`` as one shell word: bare when it needs no quoting, else in double quotes when nothing in it is
    special there (``--seeds="{'full': [0, 1]}"``), else single-quoted."""
    text = repr(value)
    if shlex.quote(text) == text:
        return text
    return f'"{text}"' if not set(text) & set('"$`\\!') else shlex.quote(text)


def write_results(
    path: Path,
    rows: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]],
    classifier: Mapping[str, Any],
    dataset: Mapping[str, Any],
    command: str,
    times: Mapping[str, float],
    threads: int,
) -> Path:
    """The Markdown results file; figure links are relative to it."""
    figure_dir = path.with_suffix("")

    def link(figure: Path | None, alt: str) -> str:
        if figure is None:
            return f"({alt}: not available)"
        return f"![{alt}]({figure.relative_to(path.parent).as_posix()})"

    counts = dataset.get("counts", {})
    lines = [
        "# EMIXER on the embedded dataset: reproduction results",
        "",
        "Written by `scripts/reproduce_embedded.py` (do not edit by hand: rerun the command below).",
        f"Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        "## Command",
        "",
        "```",
        command,
        "```",
        "",
        "## Machine and wall times",
        "",
        *machine_facts(threads),
        f"- dataset: {dataset.get('dataset_dir')} ({', '.join(f'{k} {v}' for k, v in counts.items()) or 'counts n/a'})",
        f"- evaluation classifier: {classifier.get('epochs')} epochs, best validation macro AUROC "
        f"{_fmt(classifier.get('best_validation_macro_auroc'))}, shared by every evaluation",
        "",
        "| step | wall time (s) |",
        "| --- | --- |",
        *[f"| {step} | {seconds:.0f} |" for step, seconds in times.items()],
        "",
        "## Summary",
        "",
        "Label-agreement ratio: macro AUROC of the real-trained classifier on generated images (against their "
        "conditioning labels) / its macro AUROC on the real test split. Report label F1: the project's CheXpert-style "
        "labeler on generated reports vs the conditioning labels. FID ratio: FID(generated, real test) / FID(real "
        "validation, real test) on the classifier's pooled features at matched set sizes. Seconds per GAN iteration: "
        "from the TensorBoard event times of the logged iterations; time-limited runs on a busier machine reach "
        "fewer iterations.",
        "",
        *summary_table(rows),
        "",
        "## Targets",
        "",
        *targets_table(rows),
        "",
    ]
    for run in runs:
        record = run["record"]
        stopped = " (stopped by the time limit)" if record.get("stopped_by_time_limit") else ""
        lines += [
            f"## {run['setting']}, seed {run['seed']}",
            "",
            f"Overrides: `{json.dumps(SETTINGS[run['setting']]) if run['setting'] in SETTINGS else '{}'}`; "
            f"{record.get('iterations')} of {record.get('planned_iterations')} iterations{stopped}; "
            f"run folder `{run['run_dir']}`; full evaluation report `{run['eval_dir']}/report.md`.",
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
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ the run
def reproduce(
    num_items: int = 2000,
    dataset_dir: str = "data/embedded",
    out_dir: str = "output/reproduce",
    results: str = "docs/results/embedded.md",
    settings: str | Sequence[str] = ("full", "label_fraction_0.3", "label_fraction_0.5", "sm_gan"),
    seeds: int | Sequence[int] | Mapping[str, int | Sequence[int]] = (0,),
    num_samples: int = 256,
    classifier_epochs: int = 5,
    classifier_overrides: Mapping[str, Any] | None = None,
    train_minutes: float | None = None,
    num_threads: int = 1,
    train_only: bool = False,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Prepare, train every setting x seed, evaluate against ONE real-trained classifier, write ``results``.

    Args:
        num_items: embedded studies to prepare when ``dataset_dir`` holds no dataset yet.
        dataset_dir: the embedded dataset (prepared here unless its datalist is there).
        out_dir: runs (``<setting>/seed<k>``: models, TensorBoard, generated, evaluation) and the shared classifier.
        results: the Markdown results file; figures go to the folder of the same name without ``.md``.
        settings: names from :data:`SETTINGS`.
        seeds: training / generation / evaluation seeds; two or more give the spread. A mapping gives each setting
            its own seeds (settings it leaves out get seed 0).
        num_samples: generated paired samples per run (labels drawn from the training split).
        classifier_epochs: epochs of the shared evaluation classifier.
        classifier_overrides: classifier config values (e.g. a small ``classifier_def``), used for training it and
            for rebuilding it in every evaluation.
        train_minutes: stop each training run after this many minutes (None: the configured iterations).
        num_threads: torch threads for every step.
        train_only: stop after training (e.g. to train settings in parallel processes into the same ``out_dir``; a
            later call without it reuses the finished runs, evaluates them all and writes ``results``).
        overrides: training / inference config values (``epoch_length``, ``max_epochs``, ``image_size``...).

    Returns:
        the summary rows (one per setting x seed).
    """
    import torch

    settings = (settings,) if isinstance(settings, str) else tuple(settings)
    per_setting = {
        setting: _seed_tuple(seeds.get(setting, (0,)) if isinstance(seeds, Mapping) else seeds) for setting in settings
    }
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    if isinstance(seeds, Mapping) and set(seeds) - set(settings):
        raise ValueError(f"seeds name settings that are not run: {sorted(set(seeds) - set(settings))}")
    classifier_overrides = dict(classifier_overrides or {})
    arguments = {
        "num_items": num_items,
        "dataset_dir": dataset_dir,
        "out_dir": out_dir,
        "results": results,
        "settings": list(settings),
        "seeds": (
            {k: list(v) for k, v in per_setting.items()}
            if isinstance(seeds, Mapping)
            else list(per_setting[settings[0]])
        ),
        "num_samples": num_samples,
        "classifier_epochs": classifier_epochs,
        **({"classifier_overrides": classifier_overrides} if classifier_overrides else {}),
        **({"train_minutes": train_minutes} if train_minutes is not None else {}),
        "num_threads": num_threads,
        **overrides,
    }
    command = command_line(arguments)
    torch.set_num_threads(num_threads)
    start_all = time.perf_counter()
    times: dict[str, float] = {}
    dataset, out, results_path = Path(dataset_dir), Path(out_dir), Path(results)
    figure_dir = results_path.with_suffix("")
    figure_dir.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    summary = prepare(dataset, num_items, seed=0)
    times["prepare dataset"] = time.perf_counter() - start

    runs: list[dict[str, Any]] = []
    for setting in settings:
        for seed in per_setting[setting]:
            run_dir = out / setting / f"seed{seed}"
            run_overrides = {
                "num_threads": num_threads,
                **overrides,
                **SETTINGS[setting],
                "dataset_dir": str(dataset),
                "output_dir": str(run_dir),
                "seed": seed,
            }
            print(f"training {setting}, seed {seed} -> {run_dir}")
            record = train_run(run_dir, run_overrides, train_minutes)
            times[f"train {setting} seed {seed}" + (" (reused)" if record["reused"] else "")] = record["wall_s"]
            runs.append(
                {"setting": setting, "seed": seed, "run_dir": run_dir, "overrides": run_overrides, "record": record}
            )

    if train_only:
        print(f"trained {len(runs)} run(s) into {out}; run again without --train_only to evaluate and write results")
        return []

    start = time.perf_counter()
    image_size = int(overrides.get("image_size", _config_value(TRAIN_CONFIGS, "image_size")))
    checkpoint, classifier = train_shared_classifier(
        dataset, out, image_size, classifier_epochs, num_threads, classifier_overrides
    )
    times["evaluation classifier" + (" (reused)" if classifier["reused"] else "")] = time.perf_counter() - start

    from bundle.checkpoints import latest_checkpoint
    from bundle.evaluation.suite import evaluate
    from scripts.demo import preview_sheet

    rows = []
    for run in runs:
        name = f"{run['setting']}_seed{run['seed']}"
        start = time.perf_counter()
        generated = generate(run["run_dir"], dataset, num_samples, run["seed"], run["overrides"])
        times[f"generate {name}"] = time.perf_counter() - start
        start = time.perf_counter()
        eval_dir = run["run_dir"] / "evaluation"
        decoder_overrides = {k: v for k, v in run["overrides"].items() if not k.startswith("train#")}
        metrics = evaluate(
            dataset,
            generated,
            eval_dir,
            classifier_checkpoint=checkpoint,
            classifier_config=CLASSIFIER_CONFIGS,
            image_size=image_size,
            seed=run["seed"],
            decoder_checkpoint=latest_checkpoint(run["run_dir"] / "models") or None,
            decoder_config=TRAIN_CONFIGS,
            decoder_overrides=decoder_overrides,
            num_threads=num_threads,
            **classifier_overrides,
        )
        times[f"evaluate {name}"] = time.perf_counter() - start
        run["metrics"], run["eval_dir"] = metrics, eval_dir
        scalars = train_scalars(run["run_dir"] / "tensorboard")
        run["losses"] = loss_curves(scalars, figure_dir / f"{name}_losses.png", name)
        run["sheet"] = preview_sheet(generated, figure_dir / f"{name}_samples.png", tile=SHEET_TILE)
        labels_png = eval_dir / metrics.get("figures", {}).get("label_agreement", "figures/labels.png")
        if labels_png.is_file():
            run["labels"] = figure_dir / f"{name}_label_agreement.png"
            run["labels"].write_bytes(labels_png.read_bytes())
        rows.append(summary_row(run["setting"], run["seed"], metrics, run["record"], seconds_per_iteration(scalars)))

    times["total"] = time.perf_counter() - start_all
    write_results(
        results_path,
        rows,
        runs,
        classifier,
        {"dataset_dir": str(dataset), "counts": summary.get("counts", {})},
        command,
        times,
        num_threads,
    )
    print(f"results -> {results_path}")
    return rows


def _seed_tuple(seeds: int | Sequence[int]) -> tuple[int, ...]:
    return (int(seeds),) if isinstance(seeds, int) else tuple(int(s) for s in seeds)


def _config_value(config_files: Sequence[str], key: str) -> Any:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(list(config_files))
    return parser[key]


if __name__ == "__main__":
    import fire

    fire.Fire(reproduce, serialize=lambda _: None)
