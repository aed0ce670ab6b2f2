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
