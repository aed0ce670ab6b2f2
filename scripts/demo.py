"""The main job on the embedded default dataset: prepare it (if missing) and summarise it.

    python scripts/demo.py                   # 2,000 studies into data/embedded
    python scripts/demo.py --num_items 200   # a quicker look

Writes the raw MIMIC-CXR-JPG-layout data to ``<dataset_dir>/raw``, the MONAI datalist, tokenizer and summary to
``<dataset_dir>``, and a preview sheet (one example per finding, with its report) to
``<output_dir>/embedded_preview.png``. An existing dataset folder is reused, never overwritten.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.data.datalist import DATALIST_NAME  # noqa: E402

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


def demo(num_items: int = 2000, dataset_dir: str = "data/embedded", output_dir: str = "output", seed: int = 0) -> dict:
    """Prepare the embedded dataset into ``dataset_dir`` unless it is there, then summarise it."""
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
    return summary


if __name__ == "__main__":
    import fire

    fire.Fire(demo, serialize=lambda _: None)
