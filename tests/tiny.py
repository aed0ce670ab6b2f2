"""Tiny settings shared by the tests: configs that train in seconds on a CPU, and a small embedded dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundle.benchmarks.presets import TINY_SIZES

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
TRAIN_CONFIGS = [str(CONFIG_DIR / "train.json"), str(CONFIG_DIR / "demo.json")]
# Tiny on top of the demo: the benchmark's tiny network sizes (32 px, few channels, small text layers, batches of 4),
# 2 iterations per epoch.
TINY = {
    **TINY_SIZES,
    "num_workers": 0,
    "max_epochs": 1,
    "epoch_length": 2,
    "save_interval": 1,
    "sample_interval": 2,
    "log_interval": 1,
    "num_threads": 1,
    "report_warmup_iterations": 2,
}


# A MONAI DenseNet small enough to train in seconds on a CPU: the evaluation classifier of the tests.
TINY_CLASSIFIER_DEF = {
    "_target_": "DenseNet",
    "spatial_dims": 2,
    "in_channels": "@image_channels",
    "out_channels": "@num_classes",
    "init_features": 8,
    "growth_rate": 8,
    "block_config": [2, 2, 2],
}


def make_tiny_dataset(out_dir: Path, num_items: int = 24, **options: object) -> Path:
    """Prepare ``num_items`` embedded studies at 64 px into ``out_dir`` (grammar reports and procedural lungs, so no
    torchxrayvision data is needed) and return it; ``options`` go to ``prepare_data`` (e.g. ``split="random"``)."""
    from bundle.data.prepare import prepare_data

    settings = {"report_source": "grammar", "use_real_masks": False, "image_size": 64, **options}
    prepare_data(source="embedded", out_dir=str(out_dir), num_items=num_items, **settings)
    return out_dir


def grammar_reports(count: int, seed: int = 0) -> list[str]:
    """``count`` reports (FINDINGS + IMPRESSION) of the report grammar for label sets of its co-occurrence model."""
    import numpy as np

    from bundle.data.embedded import complete_spec, compose_report, sample_grammar_spec

    rng = np.random.default_rng(seed)
    reports = []
    for _ in range(count):
        text = compose_report(complete_spec(sample_grammar_spec(rng), rng), rng)
        reports.append(f"{text['findings']} {text['impression']}")
    return reports


def check_summary(summary: dict, skipped: dict) -> None:
    """An evaluation ``summary``: every key of ``SUMMARY_KEYS`` in order, each a finite number, a bool or a str, or
    None with its reason in ``skipped`` (and reasons only for None)."""
    import math

    from bundle.evaluation.summary import SUMMARY_KEYS

    assert list(summary) == list(SUMMARY_KEYS)
    for key, value in summary.items():
        if value is None:
            assert isinstance(skipped.get(key), str) and skipped[key], key
        else:
            assert key not in skipped, key
            assert isinstance(value, (bool, str)) or (isinstance(value, float) and math.isfinite(value)), (key, value)


def write_test_split_as_generated(
    dataset_dir: Path, out_dir: Path, report_source: str | None = None
) -> dict[str, Path]:
    """A generated-set copy of ``dataset_dir``'s real test split (images, reports, labels through the paired writer),
    a randomly initialised tiny classifier (seed 0) and the classifier override config that builds it: the
    ``generated`` folder, ``classifier`` checkpoint and ``override`` config paths under ``out_dir``."""
    import json

    import numpy as np
    import torch
    from monai.networks.nets import DenseNet

    from bundle.data.datalist import read_datalist
    from bundle.data.images import read_cxr
    from bundle.inference.writer import PairedDatasetWriter

    data = read_datalist(dataset_dir)
    test = data.splits["test"]
    writer = PairedDatasetWriter(out_dir / "generated", data.class_names, report_source=report_source)
    index = list(range(len(test)))
    images = np.stack([read_cxr(i["image"])[0] for i in test])[:, None]
    writer.write_batch(images, [i["report"] for i in test], np.asarray([i["labels"] for i in test]), index, index)
    writer.finalize()
    settings = {k: v for k, v in TINY_CLASSIFIER_DEF.items() if k not in ("_target_", "in_channels", "out_channels")}
    classifier = out_dir / "classifier.pt"
    torch.manual_seed(0)
    torch.save(DenseNet(in_channels=3, out_channels=len(data.class_names), **settings).state_dict(), classifier)
    override = out_dir / "tiny_classifier.json"
    override.write_text(json.dumps({"classifier_def": TINY_CLASSIFIER_DEF, "num_workers": 0}))
    return {"generated": out_dir / "generated", "classifier": classifier, "override": override}


def train_workflow(dataset_dir: Path, output_dir: Path, **overrides: object) -> Any:
    """An initialised train ``ConfigWorkflow`` of :data:`TRAIN_CONFIGS` at the :data:`TINY` sizes on ``dataset_dir``,
    writing into ``output_dir``; ``overrides`` set further config ids."""
    from monai.bundle import ConfigWorkflow

    settings = {**TINY, "dataset_dir": str(dataset_dir), "output_dir": str(output_dir), **overrides}
    flow = ConfigWorkflow(config_file=TRAIN_CONFIGS, logging_file=False, workflow_type="train", **settings)
    flow.initialize()
    return flow
