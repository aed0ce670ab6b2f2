"""The README's main job (scripts/demo.py, bundle.workflows.run_demo) at a tiny size: prepares, trains, generates,
then reuses and resumes."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from bundle.data.preview import TILE
from bundle.workflows import run_demo as demo
from tests.tiny import TINY


@pytest.mark.slow
def test_demo_prepares_trains_generates_then_reuses(tmp_path, capsys):
    dataset_dir, output_dir = tmp_path / "embedded", tmp_path / "output"
    tiny = {k: v for k, v in TINY.items() if k not in ("num_threads",)}
    summary = demo(num_items=24, dataset_dir=str(dataset_dir), output_dir=str(output_dir), samples_per_class=1, **tiny)
    datalist = json.loads((dataset_dir / "datalist.json").read_text())
    assert sum(len(datalist[s]) for s in ("training", "validation", "test")) == sum(summary["counts"].values()) > 0
    assert (dataset_dir / "tokenizer.json").is_file()
    sheet = Image.open(output_dir / "embedded_preview.png")
    positives = {i for item in datalist["training"] for i, v in enumerate(item["labels"]) if v == 1.0}
    assert sheet.width == TILE * len(positives)  # one tile per class that has a training example

    run_dir = output_dir / "demo"
    final = torch.load(run_dir / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert final["trainer"]["iteration"] == TINY["epoch_length"] * TINY["max_epochs"]
    generated = json.loads((run_dir / "generated" / "datalist.json").read_text())
    k = len(datalist["class_names"])
    assert summary["generated"]["num_samples"] == len(generated["training"]) == k  # one per class
    assert sorted(tuple(item["labels"]) for item in generated["training"]) == sorted(
        tuple(float(i == j) for j in range(k)) for i in range(k)
    )
    assert Image.open(run_dir / "generated_preview.png").width == TILE * k
    assert (run_dir / "generated" / "index.html").is_file()

    before = (dataset_dir / "datalist.json").stat().st_mtime_ns
    capsys.readouterr()
    demo(num_items=24, dataset_dir=str(dataset_dir), output_dir=str(output_dir), train=False)
    assert "using the embedded dataset already in" in capsys.readouterr().out
    assert (dataset_dir / "datalist.json").stat().st_mtime_ns == before  # reused, never overwritten


def test_demo_command_shows_help_and_refuses_unknown_flags_before_any_work(tmp_path) -> None:
    """The README's main command: ``--help`` and a typo print and exit without preparing or training anything."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"
    shown = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert shown.returncode == 0 and "--samples_per_class" in shown.stdout
    refused = subprocess.run(
        [sys.executable, str(script), "--max_epoch", "1"], cwd=tmp_path, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "--max_epoch" in refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_config_overrides_are_known_ids_of_the_demo_configs() -> None:
    from bundle.workflows import unknown_config_ids

    overrides = {"max_epochs": 1, "image_size": 32, "train#trainer#n_critic": 1, "labels": "per_class", "bogus": 3}
    assert unknown_config_ids(overrides) == ["bogus"]
