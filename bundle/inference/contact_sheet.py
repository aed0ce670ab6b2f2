"""``index.html`` of a generated set: a contact sheet of each sample's image, report, conditioning labels and the
labels the report labeler reads back from its report, with the per-class agreement at the top, so a person can look
a generated set over in a browser."""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bundle.data.errors import DataError
from bundle.inference.formats import SYNTHETIC_NOTE

logger = logging.getLogger(__name__)

__all__ = ["image_source", "write_contact_sheet"]

_AGREE, _DISAGREE = "\u2713", "\u2717"


def image_source(folder: Path, image: str, output_format: str) -> str | None:
    """``<img>`` source of the image at ``folder / image``: the PNG itself, or an inline PNG thumbnail of a NIfTI /
    DICOM file (None when it cannot be read)."""
    if output_format == "png":
        return html.escape(image, quote=True)
    from PIL import Image

    from bundle.data.images import read_cxr

    try:
        picture_data, _ = read_cxr(folder / image)
    except DataError as err:
        logger.warning("no preview for %s: %s", image, err)
        return None
    picture = Image.fromarray(np.rint(picture_data * 255).astype(np.uint8))
    picture.thumbnail((256, 256))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_contact_sheet(
    path: Path,
    records: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    conditioning_of: Callable[[Mapping[str, Any]], list[float]],
    read_back_of: Callable[[Mapping[str, Any]], list[float]],
    agreement: Mapping[str, float],
    output_format: str,
    bit_depth: int,
    max_rows: int,
) -> None:
    """Write the contact sheet of ``records`` (the writer's progress records: ``id``, ``image`` relative to
    ``path``'s folder, ``seed``, ``report``) to ``path``, showing at most ``max_rows`` of them.

    ``conditioning_of`` / ``read_back_of`` give a record's conditioning labels and its report's labels over
    ``class_names``; ``agreement`` is the per-class agreement of the two over all records.
    """
    esc = html.escape
    shown = records[:max_rows]
    rows = []
    for r in shown:
        src = image_source(path.parent, r["image"], output_format)
        link = esc(r["image"], quote=True)
        image_cell = (
            f'<a href="{link}"><img src="{src}" alt="{esc(r["id"])}"></a>'
            if src
            else f'<a href="{link}">{esc(r["image"])}</a>'
        )
        conditioning, read_back = conditioning_of(r), read_back_of(r)
        positives = [name for name, v in zip(class_names, conditioning) if v == 1.0]
        found = [name for name, v in zip(class_names, read_back) if v == 1.0]
        marks = "".join(
            f'<li class="{"ok" if a == b else "bad"}">{_AGREE if a == b else _DISAGREE} {esc(name)}</li>'
            for name, a, b in zip(class_names, conditioning, read_back)
        )
        matches = sum(a == b for a, b in zip(conditioning, read_back))
        rows.append(
            "<tr>"
            f"<td>{esc(r['id'])}<br>seed {int(r['seed'])}</td>"
            f"<td>{image_cell}</td>"
            f'<td class="report">{esc(r["report"])}</td>'
            f"<td>{esc(', '.join(positives) or '(none)')}</td>"
            f"<td>{esc(', '.join(found) or '(none)')}</td>"
            f"<td>{matches}/{len(class_names)}<ul>{marks}</ul></td>"
            "</tr>"
        )
    summary = ", ".join(f"{esc(name)} {value:.0%}" for name, value in agreement.items())
    more = f"<p>Showing {len(shown)} of {len(records)} samples.</p>" if len(shown) < len(records) else ""
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>EMIXER-CXR synthetic samples</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px; vertical-align: top; }}
img {{ width: 192px; image-rendering: auto; }}
td.report {{ max-width: 32em; }}
ul {{ list-style: none; padding: 0; margin: 0; font-size: small; }}
li.ok {{ color: #176617; }} li.bad {{ color: #a11; }}
</style>
</head>
<body>
<h1>EMIXER-CXR synthetic samples</h1>
<p>{esc(SYNTHETIC_NOTE)}. {len(records)} samples, {esc(output_format)} {bit_depth} bit.</p>
<p>Agreement of conditioning labels and labels read from the generated report: {summary}</p>
{more}
<table>
<tr><th>sample</th><th>image</th><th>report</th><th>conditioning labels</th><th>report labeler</th>
<th>agreement</th></tr>
{chr(10).join(rows)}
</table>
</body>
</html>
"""
    path.write_text(page, encoding="utf-8")
