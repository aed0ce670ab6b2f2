"""R2Gen's ``annotation.json`` (IU X-ray and MIMIC-CXR variants) with its official splits."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError, SkipCounter
from ..reports import DEFAULT_SECTIONS
from .common import Record, collect, make_record, normalise_split, report_whole, require_image, skip_counter


def read_r2gen_annotation(
    annotation_json: str | Path,
    images_dir: str | Path | None = None,
    sections: Sequence[str] = DEFAULT_SECTIONS,
    skip: SkipCounter | None = None,
) -> list[Record]:
    """R2Gen's ``annotation.json``: ``{"train": [...], "val": [...], "test": [...]}`` with official splits.

    Items are ``{"id", "report", "image_path": [relative paths], "split"}``; the MIMIC-CXR variant adds
    ``subject_id`` and ``study_id``, the IU X-ray variant has only ``id`` (then subject = study = id). The first
    image of ``image_path`` is used; ``images_dir`` defaults to the ``images`` folder beside the annotation.
    R2Gen's reports are already the chosen text (its findings), so they are only cleaned: ``sections`` is
    accepted for a uniform signature and not used.
    """
    skip = skip_counter(skip)
    annotation_json = Path(annotation_json)
    if not annotation_json.is_file():
        raise DataError(annotation_json, "missing file")
    try:
        data = json.loads(annotation_json.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(annotation_json, f"unreadable annotation: {err}") from err
    if not isinstance(data, dict) or not any(isinstance(v, list) for v in data.values()):
        raise DataError(annotation_json, "bad annotation: expected {'train': [...], 'val': [...], 'test': [...]}")
    images_dir = Path(images_dir) if images_dir is not None else annotation_json.parent / "images"

    def item_builder(key: str, n: int, item: Any) -> Callable[[], Record]:
        def build() -> Record:
            where = f"{annotation_json} ({key}[{n}])"
            if not isinstance(item, Mapping) or not item.get("image_path"):
                raise DataError(where, "missing image: item has no image_path")
            split = normalise_split(item.get("split") or key, where)
            paths = item["image_path"]
            path = require_image(images_dir / (paths[0] if isinstance(paths, list) else str(paths)))
            report = report_whole(item.get("report"), source=where)
            ident = str(item.get("id", ""))
            subject = item.get("subject_id", ident)
            study = item.get("study_id", ident)
            return make_record(path, report, None, subject, study, split, None)

        return build

    builders = (
        item_builder(key, n, item)
        for key, items in data.items()
        if isinstance(items, list)
        for n, item in enumerate(items)
    )
    return collect(builders, skip)
