"""Reproduce EMIXER's experiments on the embedded dataset and write the results page and its JSON (issue 6, 17).

    python scripts/reproduce_embedded.py                                  # every setting, seed 0, demo config
    python scripts/reproduce_embedded.py --settings "[full,decoder_alone]" --seeds "[0,1]"
    python scripts/reproduce_embedded.py --settings "[full,sm_gan]" --seeds "{full: [0,1], sm_gan: [0]}"
    python scripts/reproduce_embedded.py --settings full --dataset_seed 7 --dataset_dir data/embedded_seed7

One run, with fixed seeds, of the whole pipeline:

1. prepares the embedded dataset into ``dataset_dir`` with ``dataset_seed`` (generation and split) unless it is there
   (an existing one is reused when its summary records the same seed);
2. for every setting x seed trains EMIXER (``configs/train.json`` + ``configs/demo.json`` + the setting's overrides
   + ``overrides``) into ``<out_dir>/<setting>/seed<k>`` (:data:`SETTINGS`: ``full`` labels, EMIXER's limited-label
   ``label_fraction_0.3`` / ``label_fraction_0.5`` with and without rotation self-supervision, the ``sm_gan``
   ablation, and ``decoder_alone``: F by teacher forcing alone, a baseline that is trained but never generates); a
   run whose ``train_record.json`` matches its overrides is reused, an unfinished one resumes;
3. trains ONE real-data evaluation classifier (``configs/train_classifier.json``, DenseNet) into
   ``<out_dir>/classifier`` and ONE independent classifier (ResNet-18, :data:`bundle.classifier.INDEPENDENT_CONFIGS`)
   into ``<out_dir>/classifier_independent``, and passes both to every evaluation, so the settings are compared by
   the same networks;
4. generates ``num_samples`` paired samples per run (``configs/inference.json``, labels drawn from the training
   split) and evaluates them against the real dataset (:func:`bundle.evaluation.suite.evaluate`), with the
   ``decoder_alone`` F of the same seed (else of the smallest seed trained, shared) as the decoder baseline;
5. writes ``results`` (Markdown) and ``results`` with ``.json`` (the same numbers, for scripts). The page states
   what the preset enables and how the reports were written, the seeds and the dataset seed; its tables put the
   model beside the trivial report baselines (``metrics["baselines"]``) and the real test reference: the summary
   (one row per setting x seed from ``metrics["summary"]``, mean / std rows), report diversity and novelty, the
   targets of :data:`TARGETS` on the ``full`` setting's mean (met, or missed and by how much), the limited-label and
   rotation comparisons, per-run tables of the evaluation suite, loss curves read from the runs' TensorBoard event
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
from typing import Any, NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.data.datalist import DATALIST_NAME  # noqa: E402
from bundle.evaluation import summary as evaluation_summary  # noqa: E402

CONFIG_DIR = REPO_ROOT / "configs"
TRAIN_CONFIGS = [str(CONFIG_DIR / "train.json"), str(CONFIG_DIR / "demo.json")]
INFER_CONFIGS = [str(CONFIG_DIR / "inference.json"), str(CONFIG_DIR / "demo.json")]
CLASSIFIER_CONFIGS = [str(CONFIG_DIR / "train.json"), str(CONFIG_DIR / "train_classifier.json")]

#: The setting that trains F alone: every adversarial and rotation term off and G's consistency term off, so G gets
#: no gradient and F learns by teacher forcing (with its label head) for exactly the F steps of a full run: the same
#: warm-up, then one teacher-forcing step per GAN iteration.
DECODER_ALONE = "decoder_alone"
#: The experiments: config overrides per setting (EMIXER section 4: limited labels, with and without the rotation
#: self-supervision the paper credits for them, the SM-GAN ablation, the preset's extra terms each switched off, and the
#: teacher-forcing-only decoder baseline).
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {},
    "label_fraction_0.3": {"label_fraction": 0.3},
    "label_fraction_0.5": {"label_fraction": 0.5},
    "label_fraction_0.3_no_rotation": {"label_fraction": 0.3, "use_rotation_loss": False},
    "label_fraction_0.5_no_rotation": {"label_fraction": 0.5, "use_rotation_loss": False},
    "sm_gan": {"report_loss_weight": 0.0, "joint_loss_weight": 0.0},
    # the preset with one extra term off (the paper has none of them), and its text path unbounded or off
    "no_auxiliary_classifier": {"classification_weight": 0.0},
    "no_consistency": {"consistency_weight": 0.0},
    "no_warmup": {"report_warmup_iterations": 0},
    "text_path_unbounded": {"f_adversarial_max_ratio": None, "text_grad_max_ratio": None},
    "text_path_off": {"f_adversarial_weight": 0.0, "text_grad_to_generator": 0.0},
    DECODER_ALONE: {
        "image_loss_weight": 0.0,
        "use_rotation_loss": False,
        "report_loss_weight": 0.0,
        "joint_loss_weight": 0.0,
        "classification_weight": 0.0,
        "consistency_weight": 0.0,
    },
}
#: Settings that are trained only (no generation, no evaluation of their own).
TRAIN_ONLY_SETTINGS = frozenset({DECODER_ALONE})
NO_ROTATION_SUFFIX = "_no_rotation"

#: ``metrics["summary"]`` of :func:`bundle.evaluation.suite.evaluate`: one flat value per key (None when it cannot
#: be computed, the reason in ``metrics["summary_skipped"][key]``).
SUMMARY_KEYS: tuple[str, ...] = evaluation_summary.SUMMARY_KEYS
#: Training facts kept in each summary row beside the summary keys.
RUN_KEYS: tuple[str, ...] = ("iterations", "planned_iterations", "seconds_per_iteration", "train_wall_s")
#: ``metrics["baselines"]``: reports that learn nothing (and F by teacher forcing alone), scored like the model's
#: reports and paired with the same generated images; ``fallback_rate`` (requests with no training report of their
#: label set) is read from a block's ``fallbacks``.
BASELINE_NAMES: tuple[str, ...] = ("retrieval_by_labels", "most_common_per_label_set", DECODER_ALONE)
BASELINE_KEYS: tuple[str, ...] = (*evaluation_summary.BASELINE_KEYS, "fallback_rate")
#: A summary key -> its value on the real test reports (the "real test" reference row of the tables).
REAL_COUNTERPARTS: dict[str, str] = {
    "distinct_2": "distinct_2_real",
    "self_bleu_4": "self_bleu_4_real",
    "max_bleu_to_train_mean": "max_bleu_to_train_mean_real",
    "verbatim_rate": "verbatim_rate_real",
    "pair_agreement_generated": "pair_agreement_real",
}
#: The preset's training config values the page and the JSON state (configs/train.json + configs/demo.json +
#: the command's overrides), with what each turns on; the inference ``report_source`` is read from the inference
#: configs.
PRESET_KEYS: dict[str, str] = {
    "use_rotation_loss": "rotation self-supervision of D_image and G",
    "label_conditioned_reports": "F writes its reports from (predicted or given) labels",
    "f_adversarial_weight": "scale of the text-adversarial gradient F itself gets",
    "f_adversarial_max_ratio": "bound on that gradient per tensor, relative to F's teacher-forcing gradient",
    "text_grad_to_generator": "scale of the report / joint gradient that reaches G through F",
    "text_grad_max_ratio": "bound on that gradient per image, relative to G's image terms' gradient",
    "report_warmup_iterations": "teacher-forcing steps of F alone before the first GAN iteration",
    "consistency_weight": "G's label consistency term read by F's label head",
    "classification_weight": "D_image's auxiliary finding classifier (and G's term)",
    "report_label_head": "F's label head",
}


class Target(NamedTuple):
    """One target: ``key`` (mean over seeds) ``op`` ``factor`` x the mean of ``reference`` (None: ``factor``)."""

    key: str
    op: str
    factor: float
    reference: str | None
    wording: str


#: Targets of issue 17, computed on the ``full`` setting's mean over seeds; never lowered: a miss is stated with its
#: size. The memorisation audit (no flag in any run) is a target too, checked in :func:`evaluate_targets`.
TARGETS: tuple[Target, ...] = (
    Target("label_agreement_ratio_independent", ">=", 0.9, None, "label agreement, independent classifier"),
    Target("report_label_f1_real", ">=", 0.9, "classifier_label_f1_real", "report label F1 on real test images"),
    Target("report_label_f1", ">=", 0.9, "report_label_f1_real", "report label F1 of generated pairs"),
    Target("pair_consistency_ratio", ">=", 0.9, None, "image-report consistency of generated pairs"),
    Target("fid_ratio", "<=", 2.0, None, "FID ratio"),
    Target("distinct_2", ">=", 0.5, "distinct_2_real", "distinct-2 of generated reports"),
)
#: The limited-label settings should stay within this share of the full-label mean on these keys.
LIMITED_LABEL_TOLERANCE = 0.1
LIMITED_LABEL_KEYS: tuple[str, ...] = ("label_agreement_ratio_independent", "report_label_f1")
#: Keys compared between each limited-label setting and its ``_no_rotation`` twin.
ROTATION_KEYS: tuple[str, ...] = (
    "label_agreement_ratio_independent",
    "label_agreement_ratio",
    "report_label_f1",
    "pair_consistency_ratio",
    "fid_ratio",
)
TARGET_SETTING = "full"
RECORD_NAME = "train_record.json"
SHEET_TILE = 128


# ------------------------------------------------------------------------------------------------ steps
def prepare(dataset_dir: Path, num_items: int, seed: int) -> dict[str, Any]:
    """The embedded dataset in ``dataset_dir``: reused when its datalist is there, else prepared with ``seed``.

    A reused dataset whose summary records another embedded seed is an error: its results would be reported under
    a seed it was not made with."""
    if (dataset_dir / DATALIST_NAME).is_file():
        summary_path = dataset_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        found = summary.get("embedded", {}).get("seed") if isinstance(summary.get("embedded"), Mapping) else None
        if found is not None and int(found) != int(seed):
            raise ValueError(
                f"{dataset_dir} holds an embedded dataset made with seed {found}, not dataset_seed {seed}; "
                "choose another dataset_dir for a fresh dataset seed"
            )
        print(f"using the dataset already in {dataset_dir}")
        return summary
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
    dataset_dir: Path,
    out_dir: Path,
    image_size: int,
    epochs: int,
    threads: int,
    overrides: Mapping[str, Any],
    independent: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """ONE real-data classifier for every evaluation (reused when its ``model.pt`` and record exist).

    ``independent`` trains the independent ResNet-18 (:data:`bundle.classifier.INDEPENDENT_CONFIGS`, the first
    classifier's overrides less its architecture and files) into ``<out_dir>/classifier_independent``; else the
    DenseNet of :data:`CLASSIFIER_CONFIGS` into ``<out_dir>/classifier``. Data loading stays in this process
    (``num_workers`` 0) unless ``overrides`` say otherwise, so ``threads`` bounds the CPU the step takes."""
    from bundle.classifier import INDEPENDENT_CONFIGS, independent_overrides
    from bundle.data.datalist import read_datalist
    from bundle.evaluation.classify import classifier_overrides, train_classifier

    configs = list(INDEPENDENT_CONFIGS) if independent else CLASSIFIER_CONFIGS
    values = {"max_epochs": epochs, "num_threads": threads, "num_workers": 0, **overrides}
    settings = classifier_overrides(
        configs, read_datalist(dataset_dir), image_size, **(independent_overrides(values) if independent else values)
    )
    folder = out_dir / ("classifier_independent" if independent else "classifier")
    checkpoint, info_path = folder / "model.pt", folder / "classifier_record.json"
    if checkpoint.is_file() and info_path.is_file():
        print(f"reusing the evaluation classifier {checkpoint}")
        return checkpoint, {**json.loads(info_path.read_text()), "reused": True}
    start = time.perf_counter()
    checkpoint, best = train_classifier(configs, out_dir, settings)
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


def _mean_std(values: Sequence[Any]) -> tuple[float | None, float | None]:
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


def _groups(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Rows by setting, in the order the settings first appear."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["setting"], []).append(row)
    return groups


def setting_stats(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Mean and std over ``rows`` (one setting's seeds) of every key of :data:`STAT_KEYS`."""
    pairs = {key: _mean_std([row.get(key) for row in rows]) for key in STAT_KEYS}
    return {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}


def aggregate_settings(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The JSON's ``settings``: per setting its runs (seed, every summary key, training facts, skipped reasons and
    baselines), mean and std over the seeds, ``n_seeds`` and how many runs the memorisation audit flagged."""
    out: dict[str, dict[str, Any]] = {}
    for setting, group in _groups(rows).items():
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
    pairs = {key: _mean_std([block.get(key) for block in blocks]) for key in BASELINE_KEYS}
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
            for setting, group in _groups(rows).items()
            if any(name in row.get("baselines", {}) for row in group)
        }
    return out


def _fmt(value: Any, digits: int = 3) -> str:
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
            f"| {row['setting']} | {row['seed']} | "
            + " | ".join(_fmt(row.get(c.key), c.digits) for c in columns)
            + " |"
        )
    for setting, group in _groups(rows).items():
        mean, std = setting_stats(group)
        flagged = sum(row.get("memorisation_flag") is True for row in group)
        audited = sum(isinstance(row.get("memorisation_flag"), bool) for row in group)
        for label, stats in (("mean", mean), ("std", std)):
            cells = []
            for column in columns:
                if column.key == "memorisation_flag":
                    cells.append(f"{flagged}/{audited} flagged" if label == "mean" else "")
                else:
                    cells.append(_fmt(stats.get(column.key), column.digits))
            lines.append(f"| {setting} | {label} (n={len(group)}) | " + " | ".join(cells) + " |")
    for name, block in aggregate_baselines(rows).items():
        cells = [_fmt(block["mean"].get(c.key), c.digits) if c.key in BASELINE_KEYS else "-" for c in columns]
        lines.append(f"| baseline: {name} | mean (n={block['n_runs']}) | " + " | ".join(cells) + " |")
    real = [c for c in columns if c.key in REAL_COUNTERPARTS]
    if real:
        means = {c.key: _mean_std([row.get(REAL_COUNTERPARTS[c.key]) for row in rows])[0] for c in real}
        cells = [_fmt(means[c.key], c.digits) if c.key in means else "-" for c in columns]
        lines.append(f"| real test | mean (n={len(rows)}) | " + " | ".join(cells) + " |")
    return lines


def summary_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The summary table (:data:`SUMMARY_COLUMNS`) with the baselines and the real test reference."""
    return measure_table(rows, SUMMARY_COLUMNS)


def text_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Report diversity and novelty (:data:`TEXT_COLUMNS`) with the baselines and the real test reference."""
    return measure_table(rows, TEXT_COLUMNS)


# ------------------------------------------------------------------------------------------------ targets
def _compare(value: float | None, op: str, threshold: float | None) -> dict[str, Any]:
    """``status`` (met / missed / n/a), ``margin`` (how far past the threshold, negative when missed, in the
    measure's units) and ``relative_margin`` (the margin as a share of the threshold)."""
    if value is None or threshold is None:
        return {"status": "n/a", "margin": None, "relative_margin": None}
    margin = value - threshold if op == ">=" else threshold - value
    relative = margin / abs(threshold) if threshold else None
    return {"status": "met" if margin >= 0 else "missed", "margin": margin, "relative_margin": relative}


def _skip_reasons(rows: Sequence[Mapping[str, Any]], *keys: str | None) -> list[str]:
    """The suite's reasons, without repeats, why ``keys`` are None in ``rows``."""
    reasons = [
        f"{key}: {row.get('summary_skipped', {}).get(key)}"
        for row in rows
        for key in keys
        if key is not None and row.get(key) is None and row.get("summary_skipped", {}).get(key)
    ]
    return list(dict.fromkeys(reasons))


def evaluate_targets(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every target of :data:`TARGETS` on the ``full`` setting's mean over seeds (its baselines beside it, scored
    against the same threshold), the memorisation audit over every run, and each limited-label setting against
    ``full`` (within :data:`LIMITED_LABEL_TOLERANCE` on :data:`LIMITED_LABEL_KEYS`).

    Each entry: ``setting``, ``measure``, ``wording``, ``op``, ``factor``, ``reference`` (key or None),
    ``reference_setting``, ``reference_value``, ``threshold``, ``value`` (mean over seeds), ``n_seeds``, ``status``
    (met / missed / n/a), ``margin`` and ``relative_margin`` (negative: the size of a miss), ``baselines`` and, for
    n/a, ``reasons``."""
    groups = _groups(rows)
    means = {setting: setting_stats(group)[0] for setting, group in groups.items()}
    full_rows = groups.get(TARGET_SETTING, [])
    full = means.get(TARGET_SETTING, {})
    full_baselines = aggregate_baselines(full_rows)
    out: list[dict[str, Any]] = []
    for target in TARGETS:
        value = full.get(target.key)
        reference_value = full.get(target.reference) if target.reference else None
        if target.reference is None:
            threshold: float | None = target.factor
        else:
            threshold = target.factor * reference_value if reference_value is not None else None
        entry: dict[str, Any] = {
            "setting": TARGET_SETTING,
            "measure": target.key,
            "wording": target.wording,
            "op": target.op,
            "factor": target.factor,
            "reference": target.reference,
            "reference_setting": TARGET_SETTING if target.reference else None,
            "reference_value": reference_value,
            "threshold": threshold,
            "value": value,
            "n_seeds": len(full_rows),
            **_compare(value, target.op, threshold),
        }
        entry["baselines"] = {
            name: {
                "value": block["mean"].get(target.key),
                **_compare(block["mean"].get(target.key), target.op, threshold),
            }
            for name, block in full_baselines.items()
            if target.key in BASELINE_KEYS
        }
        if entry["status"] == "n/a":
            entry["reasons"] = (
                _skip_reasons(full_rows, target.key, target.reference) if full_rows else [f"no {TARGET_SETTING} run"]
            )
        out.append(entry)

    flagged = [f"{row['setting']} seed {row['seed']}" for row in rows if row.get("memorisation_flag") is True]
    unaudited = [
        f"{row['setting']} seed {row['seed']}" for row in rows if not isinstance(row.get("memorisation_flag"), bool)
    ]
    status = "missed" if flagged else ("n/a" if len(unaudited) == len(rows) else "met")
    out.append(
        {
            "setting": "every run",
            "measure": "memorisation_flag",
            "wording": "memorisation audit clean",
            "op": "==",
            "factor": None,
            "reference": None,
            "reference_setting": None,
            "reference_value": None,
            "threshold": 0,
            "value": len(flagged),
            "n_seeds": len(rows),
            "status": status,
            "margin": -len(flagged) if flagged else (0 if status == "met" else None),
            "relative_margin": None,
            "flagged": flagged,
            "unaudited": unaudited,
            "baselines": {},
        }
    )

    for setting, group in groups.items():
        if not setting.startswith("label_fraction"):
            continue
        for key in LIMITED_LABEL_KEYS:
            reference_value = full.get(key)
            threshold = (1 - LIMITED_LABEL_TOLERANCE) * reference_value if reference_value is not None else None
            value = means[setting].get(key)
            entry = {
                "setting": setting,
                "measure": key,
                "wording": f"within {LIMITED_LABEL_TOLERANCE:.0%} of full labels",
                "op": ">=",
                "factor": 1 - LIMITED_LABEL_TOLERANCE,
                "reference": key,
                "reference_setting": TARGET_SETTING,
                "reference_value": reference_value,
                "threshold": threshold,
                "value": value,
                "n_seeds": len(group),
                **_compare(value, ">=", threshold),
                "baselines": {},
            }
            if entry["status"] == "n/a":
                entry["reasons"] = _skip_reasons(group, key) + (
                    _skip_reasons(full_rows, key) if full_rows else [f"no {TARGET_SETTING} run"]
                )
            out.append(entry)
    return out


def _target_text(entry: Mapping[str, Any]) -> str:
    if entry["measure"] == "memorisation_flag":
        return "no flag in any run"
    if entry["reference"] is None:
        return f"{entry['op']} {entry['factor']:g}"
    where = f" of {entry['reference_setting']}" if entry["reference_setting"] != entry["setting"] else ""
    return (
        f"{entry['op']} {entry['factor']:g} x {entry['reference']}{where} ({_fmt(entry['reference_value'])}) "
        f"= {_fmt(entry['threshold'])}"
    )


def _status_text(entry: Mapping[str, Any]) -> str:
    """met (with its margin), missed by how much (in the measure's units and as a share of the target), or n/a."""
    status = entry["status"]
    if entry["measure"] == "memorisation_flag":
        if status == "missed":
            return f"missed: flagged in {', '.join(entry['flagged'])}"
        unaudited = f" ({len(entry['unaudited'])} run(s) not audited)" if entry.get("unaudited") else ""
        return ("met" if status == "met" else "n/a: no run audited") + (unaudited if status == "met" else "")
    if status == "n/a":
        reasons = entry.get("reasons") or []
        return "n/a" + (f" ({'; '.join(reasons)})" if reasons else " (not computed)")
    margin, relative = entry["margin"], entry.get("relative_margin")
    if status == "met":
        share = f", {abs(relative):.1%} of the target" if relative is not None else ""
        return f"met (margin {margin:.3f}{share})"
    share = f" ({abs(relative):.1%} of the target)" if relative is not None else ""
    return f"missed by {-margin:.3f}{share}"


def _baselines_text(entry: Mapping[str, Any]) -> str:
    parts = [f"{name} {_fmt(block['value'])} ({block['status']})" for name, block in entry.get("baselines", {}).items()]
    return "; ".join(parts) or "-"


def targets_table(targets: Sequence[Mapping[str, Any]]) -> list[str]:
    """One row per target (from :func:`evaluate_targets`): setting, measure, target, reached, met or missed and by
    how much, and the baselines on the same runs against the same threshold."""
    lines = [
        "| setting | measure | target | reached (mean over seeds) | status | baselines, same runs and threshold |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for entry in targets:
        if entry["measure"] == "memorisation_flag":
            reached = f"{entry['value']} of {entry['n_seeds']} runs flagged"
        else:
            reached = f"{_fmt(entry['value'])} (n={entry['n_seeds']})"
        lines.append(
            f"| {entry['setting']} | {entry['measure']} | {_target_text(entry)} | {reached} | {_status_text(entry)} "
            f"| {_baselines_text(entry)} |"
        )
    return lines


def rotation_comparison(rows: Sequence[Mapping[str, Any]], preset_rotation: Any) -> list[dict[str, Any]]:
    """Each limited-label setting beside its ``_no_rotation`` twin (means over seeds of :data:`ROTATION_KEYS`): does
    rotation self-supervision carry the limited-label setting, as EMIXER claims? ``use_rotation`` says what each
    side trained with (the setting's override, else the preset's ``preset_rotation``); when both are the same the
    pair differs by nothing but chance."""
    groups = _groups(rows)
    means = {setting: setting_stats(group)[0] for setting, group in groups.items()}
    out = []
    for setting in groups:
        twin = setting + NO_ROTATION_SUFFIX
        if not setting.startswith("label_fraction") or setting.endswith(NO_ROTATION_SUFFIX) or twin not in groups:
            continue
        with_rotation = SETTINGS.get(setting, {}).get("use_rotation_loss", preset_rotation)
        without = SETTINGS.get(twin, {}).get("use_rotation_loss", preset_rotation)
        for key in ROTATION_KEYS:
            a, b = means[setting].get(key), means[twin].get(key)
            out.append(
                {
                    "setting": setting,
                    "twin": twin,
                    "use_rotation": [with_rotation, without],
                    "same_training_config": with_rotation == without,
                    "measure": key,
                    "with_rotation": a,
                    "without_rotation": b,
                    "difference": a - b if a is not None and b is not None else None,
                    "n_seeds": [len(groups[setting]), len(groups[twin])],
                }
            )
    return out


def rotation_table(comparison: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows of :func:`rotation_comparison` as a table, with a line where a pair trained the same config."""
    lines = [
        "| setting vs twin | use_rotation_loss (setting / twin) | measure | setting | twin | setting - twin |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    same = []
    for entry in comparison:
        flags = " / ".join(_fmt(v) for v in entry["use_rotation"])
        lines.append(
            f"| {entry['setting']} vs {entry['twin']} | {flags} | {entry['measure']} | {_fmt(entry['with_rotation'])} "
            f"| {_fmt(entry['without_rotation'])} | {_fmt(entry['difference'])} |"
        )
        if entry["same_training_config"]:
            same.append(f"{entry['setting']} / {entry['twin']}")
    for pair in dict.fromkeys(same):
        lines += [
            "",
            f"{pair}: both trained with the same use_rotation_loss under this preset, so their difference is chance "
            "(seeds), not self-supervision.",
        ]
    return lines


# ------------------------------------------------------------------------------------------------ per run
def run_baseline_table(row: Mapping[str, Any]) -> list[str]:
    """One run's report measures beside its own baselines and the real test reference."""
    names = list(row.get("baselines", {}))
    lines = [
        "| measure | model | " + " | ".join(f"baseline: {n}" for n in names) + " | real test |",
        "|" + " --- |" * (len(names) + 3),
    ]
    for key in BASELINE_KEYS:
        model = _fmt(row.get(key)) if key in SUMMARY_KEYS else "-"
        baselines = [_fmt(row["baselines"][n].get(key)) for n in names]
        real = _fmt(row.get(REAL_COUNTERPARTS[key])) if key in REAL_COUNTERPARTS else "-"
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
        lines.append(f"| {key} | {_fmt(fid_block.get(key), 2)} |")
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
            f"| {name} | {_fmt(generated.get('auroc', {}).get(name))} "
            f"| {_fmt(real_test.get('auroc', {}).get(name))} | {_fmt(per_class_f1.get(name))} |"
        )
    lines.append(
        f"| **macro / mean** | {_fmt(generated.get('macro_auroc'))} "
        f"| {_fmt(real_test.get('macro_auroc'))} | {_fmt(f1.get('mean_f1') if isinstance(f1, Mapping) else None)} |"
    )
    diversity = metrics.get("diversity", {}).get("generated", {})
    real_diversity = metrics.get("diversity", {}).get("real_test", {})
    lines += [
        "",
        f"- MS-SSIM diversity (lower = more diverse): generated {_diversity_text(diversity)}, "
        f"real test {_diversity_text(real_diversity)}",
    ]
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
    lines.append(f"- memorisation audit: {metrics.get('memorisation', {}).get('verdict', '-')}")
    lines.append(f"- verdict: {metrics.get('verdict', '-')}")
    return lines


def _diversity_text(block: Mapping[str, Any]) -> str:
    if "skipped" in block:
        return f"skipped ({block['skipped']})"
    return f"{_fmt(block.get('mean'))} +/- {_fmt(block.get('std'))} ({block.get('num_sets')} label sets)"


# ------------------------------------------------------------------------------------------------ page facts
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


def preset_values(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """What the preset enables: the training configs' values of :data:`PRESET_KEYS` and the inference configs'
    ``report_source``, each after the command's ``overrides`` (settings' own overrides are not applied)."""
    from monai.bundle import ConfigParser

    values: dict[str, Any] = {}
    for files, keys in ((TRAIN_CONFIGS, tuple(PRESET_KEYS)), (INFER_CONFIGS, ("report_source",))):
        parser = ConfigParser()
        parser.read_config(list(files))
        for key in keys:
            values[key] = overrides[key] if key in overrides else parser.get(key)
    return values


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
            parts.append(f"report_source {_fmt(source)} in {', '.join(runs)}.")
    return " ".join(parts) or "No evaluated run."


def decoder_assignment(
    run_seeds: Sequence[tuple[str, int]], decoder_seeds: Sequence[int]
) -> dict[tuple[str, int], int | None]:
    """The ``decoder_alone`` run whose F each evaluated (setting, seed) gets as its decoder baseline: the run of the
    same seed, else the one of the smallest seed trained (shared), else None."""
    trained = sorted(set(decoder_seeds))
    return {run: (run[1] if run[1] in trained else (trained[0] if trained else None)) for run in run_seeds}


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


# ------------------------------------------------------------------------------------------------ outputs
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


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a partial file never takes the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path


def write_results_json(path: Path, document: Mapping[str, Any]) -> Path:
    """The JSON document (:func:`results_document`) at ``path``, written atomically; no NaN in the file."""
    return write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


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
        f"{_fmt(info.get('best_validation_macro_auroc'))}, shared by every evaluation"
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
            f"{_fmt(row.get('report_source'))}; decoder baseline: {decoder}; run folder `{run['run_dir']}`; full "
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
    write_text_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path


# ------------------------------------------------------------------------------------------------ the run
def reproduce(
    num_items: int = 2000,
    dataset_dir: str = "data/embedded",
    dataset_seed: int = 0,
    out_dir: str = "output/reproduce",
    results: str = "docs/results/embedded.md",
    settings: str | Sequence[str] = tuple(SETTINGS),
    seeds: int | Sequence[int] | Mapping[str, int | Sequence[int]] = (0,),
    num_samples: int = 256,
    classifier_epochs: int = 5,
    classifier_overrides: Mapping[str, Any] | None = None,
    train_minutes: float | None = None,
    num_threads: int = 1,
    train_only: bool = False,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Prepare, train every setting x seed, evaluate against ONE pair of real-trained classifiers, write ``results``
    and its JSON.

    Args:
        num_items: embedded studies to prepare when ``dataset_dir`` holds no dataset yet.
        dataset_dir: the embedded dataset (prepared here unless its datalist is there).
        dataset_seed: seed of the embedded dataset's generation and split (an existing dataset must have been made
            with it); a fresh one needs its own ``dataset_dir``.
        out_dir: runs (``<setting>/seed<k>``: models, TensorBoard, generated, evaluation) and the shared classifiers.
        results: the Markdown results file; the JSON goes beside it (``.json``), figures to the folder of the same
            name without ``.md``.
        settings: names from :data:`SETTINGS` (``decoder_alone`` is trained only: it is the decoder baseline of
            the evaluations of its seed, or of every evaluation when it has one seed).
        seeds: training / generation / evaluation seeds; two or more give the spread. A mapping gives each setting
            its own seeds (settings it leaves out get seed 0).
        num_samples: generated paired samples per run (labels drawn from the training split).
        classifier_epochs: epochs of each shared evaluation classifier.
        classifier_overrides: classifier config values (e.g. a small ``classifier_def``), used for training it and
            for rebuilding it in every evaluation; the independent classifier takes them less the architecture.
        train_minutes: stop each training run after this many minutes (None: the configured iterations).
        num_threads: torch threads for every step.
        train_only: stop after training (e.g. to train settings in parallel processes into the same ``out_dir``; a
            later call without it reuses the finished runs, evaluates them all and writes ``results``).
        overrides: training / inference config values (``epoch_length``, ``max_epochs``, ``image_size``...).

    Returns:
        the summary rows (one per evaluated setting x seed; ``decoder_alone`` runs have none).
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
        "dataset_seed": int(dataset_seed),
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
    summary = prepare(dataset, num_items, seed=int(dataset_seed))
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

    from bundle.checkpoints import latest_checkpoint
    from bundle.evaluation.suite import evaluate
    from scripts.demo import preview_sheet

    image_size = int(overrides.get("image_size", _config_value(TRAIN_CONFIGS, "image_size")))
    classifiers: dict[str, dict[str, Any]] = {}
    checkpoints: dict[str, Path] = {}
    for name, independent in (("evaluation classifier", False), ("independent evaluation classifier", True)):
        start = time.perf_counter()
        checkpoints[name], classifiers[name] = train_shared_classifier(
            dataset, out, image_size, classifier_epochs, num_threads, classifier_overrides, independent=independent
        )
        times[name + (" (reused)" if classifiers[name]["reused"] else "")] = time.perf_counter() - start

    decoder_runs: list[dict[str, Any]] = []
    decoder_checkpoints: dict[int, str] = {}
    for run in runs:
        if run["setting"] != DECODER_ALONE:
            continue
        checkpoint = latest_checkpoint(run["run_dir"] / "models") or None
        if checkpoint is None:
            raise FileNotFoundError(f"{run['run_dir'] / 'models'}: the decoder_alone run kept no checkpoint")
        decoder_checkpoints[run["seed"]] = str(checkpoint)
        record = run["record"]
        decoder_runs.append(
            {
                "seed": run["seed"],
                "checkpoint": str(checkpoint),
                "iterations": record.get("iterations"),
                "planned_iterations": record.get("planned_iterations"),
                "seconds_per_iteration": seconds_per_iteration(train_scalars(run["run_dir"] / "tensorboard")),
                "train_wall_s": record.get("wall_s"),
            }
        )
    evaluated = [run for run in runs if run["setting"] not in TRAIN_ONLY_SETTINGS]
    assignment = decoder_assignment([(run["setting"], run["seed"]) for run in evaluated], list(decoder_checkpoints))

    rows = []
    for run in evaluated:
        name = f"{run['setting']}_seed{run['seed']}"
        start = time.perf_counter()
        generated = generate(run["run_dir"], dataset, num_samples, run["seed"], run["overrides"])
        times[f"generate {name}"] = time.perf_counter() - start
        start = time.perf_counter()
        eval_dir = run["run_dir"] / "evaluation"
        decoder_overrides = {k: v for k, v in run["overrides"].items() if not k.startswith("train#")}
        decoder_seed = assignment[(run["setting"], run["seed"])]
        metrics = evaluate(
            dataset,
            generated,
            eval_dir,
            classifier_checkpoint=checkpoints["evaluation classifier"],
            classifier_config=CLASSIFIER_CONFIGS,
            image_size=image_size,
            seed=run["seed"],
            decoder_checkpoint=latest_checkpoint(run["run_dir"] / "models") or None,
            decoder_config=TRAIN_CONFIGS,
            decoder_overrides=decoder_overrides,
            independent_classifier=True,
            independent_classifier_checkpoint=checkpoints["independent evaluation classifier"],
            baseline_decoder_checkpoint=decoder_checkpoints.get(decoder_seed) if decoder_seed is not None else None,
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
        run["row"] = summary_row(run["setting"], run["seed"], metrics, run["record"], seconds_per_iteration(scalars))
        rows.append(run["row"])

    times["total"] = time.perf_counter() - start_all
    write_results(
        results_path,
        rows,
        evaluated,
        classifiers=classifiers,
        dataset={"dir": str(dataset), "seed": int(dataset_seed), "counts": summary.get("counts", {})},
        command=command,
        times=times,
        machine=machine_info(num_threads),
        preset=preset_values(overrides),
        seeds={setting: list(per_setting[setting]) for setting in settings},
        assignment=assignment,
        decoder_runs=decoder_runs,
    )
    print(f"results -> {results_path} and {results_path.with_suffix('.json')}")
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
