"""Running and reusing the experiment's steps: the embedded dataset, one training run per setting x seed (reused when
its record matches, resumed when unfinished), the shared evaluation classifiers, generation, and the runs' training
logs (TensorBoard scalars, loss curves, seconds per iteration).

A finished run is only reused with the overrides, time limit and training config files (their digest) it was trained
with; anything else is an error, so results are never reported for a run of other settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bundle.data.datalist import DATALIST_NAME
from bundle.experiments.settings import CLASSIFIER_CONFIGS, INFER_CONFIGS, RECORD_NAME, TRAIN_CONFIGS


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
    from bundle.data.prepare import prepare_data

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

    ``independent`` trains the independent ResNet-18 (:data:`bundle.workflows.INDEPENDENT_CONFIGS`, the first
    classifier's overrides less its architecture and files) into ``<out_dir>/classifier_independent``; else the
    DenseNet of :data:`CLASSIFIER_CONFIGS` into ``<out_dir>/classifier``. Data loading stays in this process
    (``num_workers`` 0) unless ``overrides`` say otherwise, so ``threads`` bounds the CPU the step takes."""
    from bundle.data.datalist import read_datalist
    from bundle.workflows import INDEPENDENT_CONFIGS, classifier_overrides, independent_overrides, train_classifier

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
    from bundle.workflows import run_workflow

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


def decoder_assignment(
    run_seeds: Sequence[tuple[str, int]], decoder_seeds: Sequence[int]
) -> dict[tuple[str, int], int | None]:
    """The ``decoder_alone`` run whose F each evaluated (setting, seed) gets as its decoder baseline: the run of the
    same seed, else the one of the smallest seed trained (shared), else None."""
    trained = sorted(set(decoder_seeds))
    return {run: (run[1] if run[1] in trained else (trained[0] if trained else None)) for run in run_seeds}
