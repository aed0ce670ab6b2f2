"""The augmentation experiment (bundle.experiments.augmentation, scripts/augmentation_experiment.py) end to end on
tiny data: the bundle's classifier config trained for one epoch on real data and on real + 1x synthetic, two seeds,
scored on the real test split, tables written; and the command line's flag checks and one-line errors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bundle.data.datalist import read_datalist
from bundle.data.errors import DataError
from bundle.data.images import read_cxr
from bundle.experiments.augmentation import (
    augmentation_experiment,
    label_accuracy,
    synthetic_items,
    write_combined_dataset,
)
from bundle.inference.writer import PairedDatasetWriter
from bundle.workflows import CLASSIFIER_CONFIGS
from tests.tiny import REPO_ROOT, TINY_CLASSIFIER_DEF, make_tiny_dataset

TINY_CLASSIFIER = {
    "classifier_def": TINY_CLASSIFIER_DEF,
    "batch_size": 16,
    "num_workers": 0,
    "learning_rate": 0.003,
    "log_interval": 1000,
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """60 embedded studies (64 px) and a "generated" set: the real training images with *inverted* conditioning
    labels, so the experiment's use of conditioning labels (not the labels read from the reports) is visible."""
    root = tmp_path_factory.mktemp("augmentation")
    real = root / "real"
    make_tiny_dataset(real, 60, split="random", val_fraction=0.2, test_fraction=0.3, quiet=True)
    data = json.loads((real / "datalist.json").read_text())
    train = data["training"]
    writer = PairedDatasetWriter(root / "generated", data["class_names"])
    images = np.stack([read_cxr(real / item["image"])[0] for item in train])[:, None]
    index = list(range(len(train)))
    writer.write_batch(images, [i["report"] for i in train], 1 - np.asarray([i["labels"] for i in train]), index, index)
    writer.finalize()
    tiny = root / "tiny_classifier.json"
    tiny.write_text(json.dumps(TINY_CLASSIFIER))
    return {"root": root, "real": real, "generated": root / "generated", "configs": [*CLASSIFIER_CONFIGS, str(tiny)]}


@pytest.mark.slow
def test_experiment_trains_every_setting_and_writes_the_tables(work: dict[str, Path]) -> None:
    out = work["root"] / "experiment"
    augmentation_experiment(
        real=str(work["real"]),
        generated=str(work["generated"]),
        out=str(out),
        ks="[0, 1]",  # as fire passes a list it could not parse
        seeds=[0, 1],
        max_epochs=1,
        image_size=32,
        classifier_config=work["configs"],
    )
    result = json.loads((out / "augmentation.json").read_text())
    real = read_datalist(work["real"])
    num_real, num_test = len(real.splits["training"]), len(real.splits["test"])
    assert [(r["k"], r["seed"]) for r in result["runs"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert result["settings"]["num_test"] == num_test and result["settings"]["image_size"] == 32

    # The k = 1 training set: the real training split + as many synthetic items, with their conditioning labels.
    combined = json.loads((out / "datasets" / "k_1" / "datalist.json").read_text())
    synthetic = [item for item in combined["training"] if item["subject"].startswith("synthetic-")]
    assert len(combined["training"]) == 2 * num_real and len(synthetic) == num_real
    generated = {Path(i["image"]).name: i for i in read_datalist(work["generated"]).splits["training"]}
    for item in synthetic:
        source = generated[Path(item["image"]).name]
        assert item["labels"] == source["labels"] != source["report_labels"]
        assert Path(item["image"]).is_file()
    assert combined["test"] == json.loads(json.dumps(real.splits["test"]))  # tested on the real test split only
    assert (out / "datasets" / "k_1" / "tokenizer.json").is_file()
    assert len(json.loads((out / "datasets" / "k_0" / "datalist.json").read_text())["training"]) == num_real

    # Each run trained with its own seed and was tested; checkpoints are removed, logs kept.
    for run in result["runs"]:
        assert 0.0 <= run["macro_auroc"] <= 1.0 and 0.0 <= run["accuracy"] <= 1.0
        run_dir = Path(run["run_dir"])
        assert not (run_dir / "classifier" / "model.pt").exists()
        assert list((run_dir / "classifier" / "tensorboard").glob("events.out.tfevents.*"))
    seed_runs = [r for r in result["runs"] if r["k"] == 0]
    assert seed_runs[0]["auroc"] != seed_runs[1]["auroc"]  # different seeds, different networks

    for row in result["summary"]:
        runs = [r for r in result["runs"] if r["k"] == row["k"]]
        assert row["num_synthetic"] == (0 if row["k"] == 0 else num_real) and row["num_real"] == num_real
        assert row["macro_auroc"]["mean"] == pytest.approx(np.mean([r["macro_auroc"] for r in runs]))
        assert row["accuracy"]["std"] == pytest.approx(np.std([r["accuracy"] for r in runs], ddof=1))
    baseline, augmented = result["summary"]
    assert augmented["delta_macro_auroc"] == pytest.approx(
        augmented["macro_auroc"]["mean"] - baseline["macro_auroc"]["mean"]
    )
    table = (out / "augmentation.md").read_text()
    assert "| real | " in table and "| real + 1x synthetic | " in table
    assert f"{baseline['macro_auroc']['mean']:.3f} ± {baseline['macro_auroc']['std']:.3f}" in table


def test_combined_dataset_uses_all_synthetic_items_when_too_few(
    work: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    real = read_datalist(work["real"])
    pool = synthetic_items(read_datalist(work["generated"]), real.class_names)
    with caplog.at_level(logging.WARNING):
        folder, count = write_combined_dataset(real, pool[:5], 2.0, tmp_path / "k_2", np.random.default_rng(0))
    assert count == 5 and "only 5 exist" in caplog.text
    assert len(json.loads((folder / "datalist.json").read_text())["training"]) == len(real.splits["training"]) + 5
    folder, count = write_combined_dataset(real, pool, 0.5, tmp_path / "k_half", np.random.default_rng(0))
    assert count == round(0.5 * len(real.splits["training"]))


def test_label_accuracy_counts_known_labels_only() -> None:
    probs = np.array([[0.9, 0.2], [0.1, 0.8], [0.6, 0.4]])
    labels = np.array([[1, 0], [1, -1], [0, 0]])
    result = label_accuracy(probs, labels)
    assert result["per_class"] == pytest.approx([1 / 3, 1.0])
    assert result["mean"] == pytest.approx((1 / 3 + 1) / 2)


@pytest.mark.slow
def test_bad_settings_are_refused(work: dict[str, Path], tmp_path: Path) -> None:
    data = json.loads((work["generated"] / "datalist.json").read_text())
    keep = [n for n, name in enumerate(data["class_names"]) if name != "Edema"]
    data["class_names"] = [data["class_names"][n] for n in keep]
    for item in data["training"]:
        item["labels"] = [item["labels"][n] for n in keep]
    (tmp_path / "datalist.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"lacks the real classes \['Edema'\]"):
        synthetic_items(read_datalist(tmp_path), read_datalist(work["real"]).class_names)
    result = run_script("--real", str(work["real"]), "--generated", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "lacks the real classes ['Edema']" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(ValueError, match="ks must be finite and >= 0"):
        augmentation_experiment(
            real=str(work["real"]), generated=str(work["generated"]), out=str(tmp_path / "o"), ks=[0, -1]
        )


def run_script(*args: str) -> subprocess.CompletedProcess:
    script = REPO_ROOT / "scripts" / "augmentation_experiment.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
def test_command_line_refuses_bad_flags_and_input_before_any_work(work: dict[str, Path], tmp_path: Path) -> None:
    """``--help`` prints the flags; an unknown flag (neither a parameter nor a classifier config id) stops the command
    with exit status 2 before the output folder is made; bad input ends with one line naming the problem."""
    result = run_script("--help")
    assert result.returncode == 0 and "--keep_checkpoints" in result.stdout, result.stderr
    data = ["--real", str(work["real"]), "--generated", str(work["generated"])]
    result = run_script(*data, "--out", str(tmp_path / "typo"), "--learning_rat", "0.1")
    assert result.returncode == 2 and "unknown flag(s) --learning_rat" in result.stderr
    assert not (tmp_path / "typo").exists()
    result = run_script(*data, "--out", str(tmp_path / "missing"), "--classifier_config", str(tmp_path / "no.json"))
    assert result.returncode == 2 and "classifier config files not found" in result.stderr
    assert "Traceback" not in result.stderr
