"""The main job on the embedded default dataset: prepare it, train EMIXER on it, generate paired samples.

    python scripts/demo.py                       # 2,000 studies, the demo training run, 4 samples per finding
    python scripts/demo.py --num_items 200       # a quicker look
    python scripts/demo.py --train False         # prepare and summarise only
    python scripts/demo.py --max_epochs 4        # train further (resumes from the last checkpoint)

1. Prepares the embedded dataset into ``<dataset_dir>`` (raw MIMIC-CXR-JPG-layout data in ``raw/``, the MONAI
   datalist, tokenizer and summary) unless it is there: an existing dataset folder is reused, never overwritten.
   A preview sheet (one real example per finding, with its report) goes to ``<output_dir>/embedded_preview.png``.
2. Trains with ``configs/train.json`` + ``configs/demo.json`` (a CPU-sized EMIXER) into ``<output_dir>/demo``:
   checkpoints in ``models/``, TensorBoard logs in ``tensorboard/``, sample grids in ``samples/``. A finished or
   interrupted run in that folder is resumed from its newest checkpoint.
3. Generates ``samples_per_class`` paired samples per finding with ``configs/inference.json`` into
   ``<output_dir>/demo/generated`` (images, reports, manifest, datalist, index.html) and a sheet of one sample per
   finding with its report, ``<output_dir>/demo/generated_preview.png``.

Other keyword arguments override ids of the bundle configs of steps 2 and 3 (e.g. ``--image_size 32``).
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.data.datalist import DATALIST_NAME  # noqa: E402

CONFIG_DIR = REPO_ROOT / "configs"

TILE = 256
CAPTION_LINES = 7


def preview_sheet(dataset_dir: Path, out_path: Path, tile: int = TILE) -> Path:
    """Save a sheet with one training image per class (the first item positive for it) and its report."""
    from PIL import Image, ImageDraw

    datalist = json.loads((dataset_dir / DATALIST_NAME).read_text())
    class_names, items = datalist["class_names"], datalist["training"]
    picks = []
    for index, name in enumerate(class_names):
        item = next((it for it in items if it["labels"][index] == 1.0), None)
        if item is not None:
            picks.append((name, item))
    caption_h = 14 * CAPTION_LINES + 8
    sheet = Image.new("L", (tile * len(picks), tile + caption_h), color=255)
    draw = ImageDraw.Draw(sheet)
    for column, (name, item) in enumerate(picks):
        image_path = Path(item["image"])
        image = Image.open(image_path if image_path.is_absolute() else dataset_dir / image_path).convert("L")
        sheet.paste(image.resize((tile, tile)), (column * tile, 0))
        lines = [name.upper()] + textwrap.wrap(item["report"], width=tile // 6)
        draw.multiline_text((column * tile + 4, tile + 4), "\n".join(lines[:CAPTION_LINES]), fill=0, spacing=2)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path)
    return out_path


def run_workflow(config_files: list[str], workflow_type: str, **overrides: Any) -> Any:
    """Run a bundle workflow (``initialize``, ``run``, ``finalize``) as ``python -m monai.bundle run`` does."""
    from monai.bundle import ConfigWorkflow

    flow = ConfigWorkflow(config_file=config_files, workflow_type=workflow_type, **overrides)
    flow.initialize()
    flow.run()
    flow.finalize()
    return flow


def demo(
    num_items: int = 2000,
    dataset_dir: str = "data/embedded",
    output_dir: str = "output",
    seed: int = 0,
    train: bool = True,
    samples_per_class: int = 4,
    **overrides: Any,
) -> dict:
    """Prepare the embedded dataset (unless it is there), then train the demo EMIXER and generate samples."""
    from scripts.prepare_data import format_summary, prepare_data

    dataset = Path(dataset_dir)
    if (dataset / DATALIST_NAME).is_file():
        summary = json.loads((dataset / "summary.json").read_text())
        print(f"using the embedded dataset already in {dataset} (delete it to regenerate)")
        print(format_summary(summary))
    else:
        summary = prepare_data(source="embedded", out_dir=str(dataset), num_items=num_items, seed=seed)
    sheet = preview_sheet(dataset, Path(output_dir) / "embedded_preview.png")
    print(f"preview of one study per finding: {sheet}")
    print(f"datalist for training: {dataset / DATALIST_NAME} (tokenizer: {dataset / 'tokenizer.json'})")
    if not train:
        return summary

    run_dir = Path(output_dir) / "demo"
    common = {"dataset_dir": str(dataset), "output_dir": str(run_dir), "seed": seed, **overrides}
    configs = [str(CONFIG_DIR / "train.json"), str(CONFIG_DIR / "demo.json")]
    print(f"training the demo EMIXER into {run_dir} (TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'})")
    run_workflow(configs, "train", **common)

    generated = run_dir / "generated"
    configs = [str(CONFIG_DIR / "inference.json"), str(CONFIG_DIR / "demo.json")]
    inference = {"labels": "per_class", "num_samples": samples_per_class, "overwrite": True, **common}
    flow = run_workflow(configs, "infer", generated_dir=str(generated), **inference)
    written = flow.parser.get_parsed_content("saver").summary
    sheet = preview_sheet(generated, run_dir / "generated_preview.png")
    print(f"generated {written['num_samples']} paired samples: {generated} (open index.html in a browser)")
    print(f"one generated sample per finding, with its report: {sheet}")
    return {**summary, "generated": written}


if __name__ == "__main__":
    import fire

    fire.Fire(demo, serialize=lambda _: None)
