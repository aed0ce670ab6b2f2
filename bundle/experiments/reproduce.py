"""Reproduce EMIXER's experiments on the embedded dataset and write the results page and its JSON.

One run, with fixed seeds, of the whole pipeline:

1. prepares the embedded dataset into ``dataset_dir`` with ``dataset_seed`` (generation and split) unless it is there
   (an existing one is reused when its summary records the same seed);
2. for every setting x seed trains EMIXER (``configs/train.json`` + ``configs/demo.json`` + the setting's overrides
   + ``overrides``) into ``<out_dir>/<setting>/seed<k>`` (:data:`~bundle.experiments.settings.SETTINGS`: ``full``
   labels, EMIXER's limited-label ``label_fraction_0.3`` / ``label_fraction_0.5`` with and without rotation
   self-supervision, the ``sm_gan`` ablation, and ``decoder_alone``: F by teacher forcing alone, a baseline that is
   trained but never generates); a run whose ``train_record.json`` matches its overrides is reused, an unfinished
   one resumes;
3. trains ONE real-data evaluation classifier (``configs/train_classifier.json``, DenseNet) into
   ``<out_dir>/classifier`` and ONE independent classifier (ResNet-18,
   :data:`bundle.workflows.INDEPENDENT_CONFIGS`) into ``<out_dir>/classifier_independent``, and passes both to every
   evaluation, so the settings are compared by the same networks;
4. generates ``num_samples`` paired samples per run (``configs/inference.json``, labels drawn from the training
   split) and evaluates them against the real dataset (:func:`bundle.workflows.evaluate`), with the
   ``decoder_alone`` F of the same seed (else of the smallest seed trained, shared) as the decoder baseline;
5. writes ``results`` (Markdown) and ``results`` with ``.json`` (the same numbers, for scripts). The page states
   what the preset enables and how the reports were written, the seeds and the dataset seed; its tables put the
   model beside the trivial report baselines (``metrics["baselines"]``) and the real test reference: the summary
   (one row per setting x seed from ``metrics["summary"]``, mean / std rows), report diversity and novelty, the
   targets of :data:`~bundle.experiments.settings.TARGETS` on the ``full`` setting's mean (met, or missed and by how
   much), the limited-label and rotation comparisons, per-run tables of the evaluation suite, loss curves read from
   the runs' TensorBoard event files, generated sample sheets, the command line, the machine and the wall times.
   Figures go to ``<results without .md>/`` next to it and are linked relatively.

Other keyword arguments override ids of the training and inference configs (e.g. ``--image_size 32``); ids of
the training config only (``train#...``) are left out of generation. ``train_minutes`` stops each training run
after that long (Ignite's ``TimeLimit``), so a run fits a time budget; the iterations reached are reported.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bundle.experiments.page import machine_info, write_results
from bundle.experiments.runs import (
    decoder_assignment,
    generate,
    loss_curves,
    prepare,
    seconds_per_iteration,
    train_run,
    train_scalars,
    train_shared_classifier,
)
from bundle.experiments.settings import (
    CLASSIFIER_CONFIGS,
    DECODER_ALONE,
    SETTINGS,
    SHEET_TILE,
    TRAIN_CONFIGS,
    TRAIN_ONLY_SETTINGS,
    config_value,
    preset_values,
)
from bundle.experiments.tables import summary_row


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

    from bundle.data.preview import preview_sheet
    from bundle.inference.checkpoints import latest_checkpoint
    from bundle.workflows import evaluate

    image_size = int(overrides.get("image_size", config_value(TRAIN_CONFIGS, "image_size")))
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
