"""Does synthetic data help a classifier? Train on real data alone and on real + k x synthetic, test on real data.

The protocol of EMIXER's Table 1 (real images augmented with growing amounts of generated ones) and RoentGen's
Table 5: the same classifier (``configs/train_classifier.json``, the bundle's evaluation classifier) is trained on

* the real training split alone (k = 0), and
* the real training split plus ``k x`` as many generated items (k = 1, 2, ...), each with the labels it was
  generated for (its conditioning labels, not what a labeler reads from its report),

over several seeds (network initialisation, shuffling and augmentation), and scored on the real test split: macro
AUROC and accuracy, mean +- std over the seeds. Model selection uses the real validation split in every run.

Each k gets a dataset folder ``<out>/datasets/k_<k>/`` (``datalist.json`` with absolute image paths, the real
tokenizer copied) that the classifier config trains on exactly as on any project dataset; runs go to
``<out>/runs/k_<k>/seed_<seed>/`` (TensorBoard logs; checkpoints removed unless ``--keep_checkpoints``). The
table is written as ``<out>/augmentation.json`` and ``<out>/augmentation.md``.

When fewer generated items exist than ``k x`` the real training split, all of them are used and the table says so.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.classifier import auroc_per_class
from bundle.data.datalist import Datalist, read_datalist
from bundle.data.errors import DataError, SkipCounter
from bundle.evaluation.classify import classify_images, load_image_set
from bundle.evaluation.common import to_jsonable, write_text_atomic
from bundle.workflows import (
    CLASSIFIER_CONFIGS,
    classifier_overrides,
    classifier_preprocessing,
    config_files,
    load_classifier,
    train_classifier,
    unknown_config_ids,
)

logger = logging.getLogger("augmentation_experiment")


def _numbers(values: Any, kind: type, what: str) -> list:
    """A fire argument as a list of numbers: one number, a list, or a comma-separated string."""
    if isinstance(values, str):
        values = [v for v in values.replace("[", "").replace("]", "").split(",") if v.strip()]
    elif not isinstance(values, (list, tuple)):
        values = [values]
    try:
        out = [kind(v) for v in values]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be numbers, got {values!r}") from err
    if not out:
        raise ValueError(f"{what} is empty")
    return out


def label_accuracy(probs: Any, labels: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy of ``probs >= threshold`` per class over the items with a 0 / 1 label, and its mean over classes."""
    p = np.asarray(probs, dtype=np.float64) >= threshold
    y = np.asarray(labels, dtype=np.float64)
    per_class = []
    for k in range(y.shape[1]):
        known = (y[:, k] == 0) | (y[:, k] == 1)
        per_class.append(float(np.mean(p[known, k] == (y[known, k] == 1))) if known.any() else None)
    scored = [v for v in per_class if v is not None]
    return {"per_class": per_class, "mean": float(np.mean(scored)) if scored else None}


#: The keys every training item is written with: a batch collates only items with the same keys.
ITEM_KEYS = ("image", "report", "labels", "subject", "study")
SYNTHETIC_PREFIX = "synthetic-"


def training_item(item: dict, labels: Sequence[float] | None = None, prefix: str = "") -> dict:
    """``item`` reduced to :data:`ITEM_KEYS` (a missing report is empty), with ``labels`` when given and
    ``prefix`` before its subject and study (so synthetic "patients" never share an id with real ones)."""
    return {
        "image": item["image"],
        "report": str(item.get("report") or ""),
        "labels": [float(v) for v in (labels if labels is not None else item["labels"])],
        "subject": f"{prefix}{item.get('subject', '')}",
        "study": f"{prefix}{item.get('study', '')}",
    }


def synthetic_items(generated: Datalist, class_names: Sequence[str]) -> list[dict]:
    """The generated items as training items over ``class_names``: conditioning labels reordered to the real
    datalist's classes, image paths absolute, subjects and studies prefixed with ``synthetic-``."""
    missing = [name for name in class_names if name not in generated.class_names]
    if missing:
        raise DataError(generated.path, f"the generated datalist lacks the real classes {missing}")
    columns = [generated.class_names.index(name) for name in class_names]
    items = [training_item(item, [item["labels"][c] for c in columns], SYNTHETIC_PREFIX) for item in generated.items()]
    if not items:
        raise DataError(generated.path, "no generated items")
    return items


def write_combined_dataset(
    real: Datalist, synthetic: Sequence[dict], k: float, out_dir: Path, rng: np.random.Generator
) -> tuple[Path, int]:
    """Write ``out_dir/datalist.json``: the real training split + ``k x`` as many synthetic items (a random subset,
    or all when there are fewer), the real validation and test splits; copy the real ``tokenizer.json``.
    Returns the folder and the number of synthetic items used."""
    training = real.splits["training"]
    wanted = int(round(k * len(training)))
    if wanted > len(synthetic):
        logger.warning("k=%g asks for %d synthetic items but only %d exist: using all", k, wanted, len(synthetic))
    count = min(wanted, len(synthetic))
    chosen = [synthetic[i] for i in np.sort(rng.choice(len(synthetic), size=count, replace=False))] if count else []
    out_dir.mkdir(parents=True, exist_ok=True)
    datalist = {
        "class_names": real.class_names,
        "source": "augmentation-experiment",
        "augmentation": {"k": k, "num_real": len(training), "num_synthetic": count},
        "training": [training_item(item) for item in training] + chosen,
        "validation": real.splits["validation"],
        "test": real.splits["test"],
    }
    (out_dir / "datalist.json").write_text(json.dumps(datalist, indent=1), encoding="utf-8")
    tokenizer = real.root / "tokenizer.json"
    if tokenizer.is_file():
        shutil.copy2(tokenizer, out_dir / "tokenizer.json")
    return out_dir, count


def _mean_std(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample standard deviation (None with fewer than two values) of the values that exist."""
    scored = [v for v in values if v is not None]
    if not scored:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(scored, ddof=1)) if len(scored) > 1 else None
    return {"mean": float(np.mean(scored)), "std": std, "n": len(scored)}


def _cell(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}" if stat["std"] is not None else f"{stat['mean']:.3f}"


def write_tables(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``augmentation.json`` (every run and the summary) and ``augmentation.md`` (the summary table)."""
    json_path = write_text_atomic(json.dumps(to_jsonable(result), indent=2) + "\n", out / "augmentation.json")
    settings = result["settings"]
    lines = [
        "# Classifier augmentation with synthetic data",
        "",
        f"Real: `{settings['real']}`; generated: `{settings['generated']}`. Classifier trained by "
        f"{' + '.join(Path(f).name for f in settings['config_files'])}, tested on the real test split "
        f"({settings['num_test']} images); mean ± std over seeds {settings['seeds']}. Accuracy: per-class accuracy "
        "at probability 0.5, averaged over classes. Δ: against training on real data only.",
        "",
        "| training data | real | synthetic | macro AUROC | Δ AUROC | accuracy | Δ accuracy | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["summary"]:
        delta_auc = "n/a" if row["delta_macro_auroc"] is None else f"{row['delta_macro_auroc']:+.3f}"
        delta_acc = "n/a" if row["delta_accuracy"] is None else f"{row['delta_accuracy']:+.3f}"
        lines.append(
            f"| {row['name']} | {row['num_real']} | {row['num_synthetic']} | {_cell(row['macro_auroc'])} | "
            f"{delta_auc} | {_cell(row['accuracy'])} | {delta_acc} | {row['macro_auroc']['n']} |"
        )
    short = [row for row in result["summary"] if row["num_synthetic"] < row["requested_synthetic"]]
    lines += [""] + [
        f"- {row['name']}: {row['requested_synthetic']} synthetic items asked for, {row['num_synthetic']} available."
        for row in short
    ]
    md_path = out / "augmentation.md"
    md_path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return json_path, md_path


def classifier_configs(config_file: Any = None) -> list[str]:
    """The classifier's config files: ``config_file`` (one file or a list) or the defaults
    (:data:`bundle.workflows.CLASSIFIER_CONFIGS`); a missing file raises FileNotFoundError naming it."""
    return config_files(config_file, CLASSIFIER_CONFIGS, "classifier")


def unknown_overrides(arguments: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """The names in ``overrides`` that are not ids of the classifier configs (``arguments["classifier_config"]``,
    else the defaults): a bundle config takes an unknown id without complaint, so such a name is a typo."""
    return unknown_config_ids(overrides, [classifier_configs(arguments.get("classifier_config"))])


def augmentation_experiment(
    real: str,
    generated: str,
    out: str,
    ks: Any = (0, 1, 2),
    seeds: Any = (0, 1, 2),
    max_epochs: int | None = None,
    classifier_config: str | Sequence[str] | None = None,
    image_size: int | None = None,
    subset_seed: int = 0,
    device: str | None = None,
    batch_size: int = 32,
    keep_checkpoints: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Train the evaluation classifier on real and real + k x synthetic data over seeds; write the tables.

    Args:
        real: real dataset folder (datalist.json with training / validation / test) or its datalist file.
        generated: generated folder (datalist.json from the paired writer) or its datalist file.
        out: output folder.
        ks: synthetic-to-real ratios of the training sets, e.g. ``[0, 1, 2]`` (0 = real only).
        seeds: training seeds per k.
        max_epochs: classifier epochs (default the config's).
        classifier_config: the classifier's config files (default configs/train.json + train_classifier.json).
        image_size: training and test image size (default the config's).
        subset_seed: which synthetic items are drawn when there are more than ``k x`` the real training split.
        device: where the test predictions run (training follows the config's ``device``).
        batch_size: test images per forward pass.
        keep_checkpoints: keep every run's ``model.pt`` (removed after testing by default).
        overrides: further classifier config values (``classifier_def``, ``learning_rate``, ``num_workers``...).

    Returns:
        ``{"settings", "runs", "summary"}`` as written to ``augmentation.json``.
    """
    ks = list(dict.fromkeys(_numbers(ks, float, "ks")))  # each setting once, in the given order
    seeds = list(dict.fromkeys(_numbers(seeds, int, "seeds")))
    if any(k < 0 or not math.isfinite(k) for k in ks):
        raise ValueError(f"ks must be finite and >= 0, got {ks}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch_device = torch.device(device if device else ("cuda" if torch.cuda.is_available() else "cpu"))
    real_list = read_datalist(real)
    for split in ("training", "validation", "test"):
        if not real_list.splits[split]:
            raise DataError(real_list.path, f'the "{split}" split is empty (the experiment trains, selects and tests)')
    generated_list = read_datalist(generated)
    pool = synthetic_items(generated_list, real_list.class_names)
    files = classifier_configs(classifier_config)
    if max_epochs is not None:
        overrides["max_epochs"] = int(max_epochs)

    test_settings = classifier_overrides(files, real_list, image_size, **overrides)
    test = load_image_set(
        "test", real_list.splits["test"], classifier_preprocessing(files, test_settings), SkipCounter()
    )
    runs: list[dict[str, Any]] = []
    for k in ks:
        folder, count = write_combined_dataset(
            real_list, pool, k, out_dir / "datasets" / f"k_{k:g}", np.random.default_rng(subset_seed)
        )
        combined = read_datalist(folder)
        for seed in seeds:
            run_dir = out_dir / "runs" / f"k_{k:g}" / f"seed_{seed}"
            logger.info(
                "k=%g seed=%d: training on %d real + %d synthetic items",
                k,
                seed,
                len(real_list.splits["training"]),
                count,
            )
            settings = classifier_overrides(files, combined, image_size, **{**overrides, "seed": seed})
            checkpoint, best_val = train_classifier(files, run_dir, settings)
            network = load_classifier(files, checkpoint, torch_device, **settings)
            probs = classify_images(network, test.images, batch_size, torch_device)["probs"]
            auroc = auroc_per_class(probs, test.labels, real_list.class_names)
            accuracy = label_accuracy(probs, test.labels)
            runs.append(
                {
                    "k": k,
                    "seed": seed,
                    "num_real": len(real_list.splits["training"]),
                    "num_synthetic": count,
                    "requested_synthetic": int(round(k * len(real_list.splits["training"]))),
                    "macro_auroc": auroc["macro_auroc"],
                    "auroc": auroc["auroc"],
                    "accuracy": accuracy["mean"],
                    "accuracy_per_class": dict(zip(real_list.class_names, accuracy["per_class"])),
                    "best_validation_macro_auroc": best_val,
                    "run_dir": str(run_dir),
                }
            )
            logger.info(
                "k=%g seed=%d: test macro AUROC %s, accuracy %s", k, seed, auroc["macro_auroc"], accuracy["mean"]
            )
            if not keep_checkpoints:
                checkpoint.unlink(missing_ok=True)

    summary = []
    for k in ks:
        rows = [r for r in runs if r["k"] == k]
        summary.append(
            {
                "k": k,
                "name": "real" if k == 0 else f"real + {k:g}x synthetic",
                "num_real": rows[0]["num_real"],
                "num_synthetic": rows[0]["num_synthetic"],
                "requested_synthetic": rows[0]["requested_synthetic"],
                "macro_auroc": _mean_std([r["macro_auroc"] for r in rows]),
                "accuracy": _mean_std([r["accuracy"] for r in rows]),
            }
        )
    baseline = next((row for row in summary if row["k"] == 0), None)
    for row in summary:
        for key in ("macro_auroc", "accuracy"):
            base = baseline[key]["mean"] if baseline else None
            value = row[key]["mean"]
            row[f"delta_{key}"] = value - base if value is not None and base is not None else None
    result = {
        "settings": {
            "real": str(real_list.path),
            "generated": str(generated_list.path),
            "ks": ks,
            "seeds": seeds,
            "config_files": files,
            "overrides": {key: value for key, value in overrides.items() if key != "preprocessing_transforms"},
            "image_size": int(test.images.shape[-1]),
            "num_test": len(test),
            "subset_seed": subset_seed,
        },
        "runs": runs,
        "summary": summary,
    }
    json_path, md_path = write_tables(result, out_dir)
    print(md_path.read_text(encoding="utf-8"))
    print(f"tables -> {json_path}, {md_path}")
    return to_jsonable(result)
