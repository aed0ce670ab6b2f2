"""A preview sheet of a dataset: one training image per class with its report, to see at a glance what a dataset
(real or generated, in the datalist layout) holds."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from .datalist import DATALIST_NAME

__all__ = ["CAPTION_LINES", "TILE", "preview_sheet"]

#: Tile width and height in pixels, one tile per class.
TILE = 256
#: Caption lines under each tile: the class name, then the report wrapped to the tile's width.
CAPTION_LINES = 7


def preview_sheet(dataset_dir: Path, out_path: Path, tile: int = TILE) -> Path:
    """Save a sheet with one training image per class (the first item positive for it) and its report."""
    from PIL import Image, ImageDraw

    dataset_dir, out_path = Path(dataset_dir), Path(out_path)
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
