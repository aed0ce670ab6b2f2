"""The README's main job (scripts/demo.py) at a tiny size: prepares, summarises, then reuses the dataset."""

from __future__ import annotations

import json

from PIL import Image

from scripts.demo import TILE, demo


def test_demo_prepares_then_reuses(tmp_path, capsys):
    dataset_dir, output_dir = tmp_path / "embedded", tmp_path / "output"
    summary = demo(num_items=24, dataset_dir=str(dataset_dir), output_dir=str(output_dir))
    datalist = json.loads((dataset_dir / "datalist.json").read_text())
    assert sum(len(datalist[s]) for s in ("training", "validation", "test")) == sum(summary["counts"].values()) > 0
    assert (dataset_dir / "tokenizer.json").is_file()
    sheet = Image.open(output_dir / "embedded_preview.png")
    positives = {i for item in datalist["training"] for i, v in enumerate(item["labels"]) if v == 1.0}
    assert sheet.width == TILE * len(positives)  # one tile per class that has a training example

    before = (dataset_dir / "datalist.json").stat().st_mtime_ns
    capsys.readouterr()
    demo(num_items=24, dataset_dir=str(dataset_dir), output_dir=str(output_dir))
    assert "using the embedded dataset already in" in capsys.readouterr().out
    assert (dataset_dir / "datalist.json").stat().st_mtime_ns == before  # reused, never overwritten
