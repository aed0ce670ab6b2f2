"""IU X-ray / Open-i: XML reports (a folder or the .tgz) and PNG images, one frontal image per report."""

from __future__ import annotations

import importlib.util
import logging
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError, SkipCounter
from ..reports import DEFAULT_SECTIONS, parse_iu_xml, select_sections
from .common import Record, collect, make_record, read_rows, require_image, skip_counter

logger = logging.getLogger(__name__)

_LATERAL_VIEWS = {"L", "LL", "LATERAL", "LAT", "RL", "XTABLE LATERAL", "LAO", "RAO"}


def _xtv_view_hints() -> dict[str, str]:
    """Image id -> view from torchxrayvision's installed Open-i view table (T-SNE derived PA / L), if present."""
    spec = importlib.util.find_spec("torchxrayvision")  # located, not imported: importing it is slow
    if spec is None or not spec.origin:
        return {}
    path = Path(spec.origin).parent / "data" / "nlmcxr_tsne_pa.csv.gz"
    return _view_hints_from_table(path) if path.is_file() else {}


def _view_hints_from_table(path: str | Path) -> dict[str, str]:
    """A view table (columns imageid/filename/id and tsne-view/projection/view) -> image id -> view."""
    hints: dict[str, str] = {}
    for row in read_rows(path):
        key = next((row[c] for c in ("imageid", "filename", "image", "id") if row.get(c)), None)
        view = next((row[c] for c in ("tsne-view", "view", "projection", "View Position") if row.get(c)), None)
        if key and view:
            stem = Path(str(key)).name.split(".")[0]
            hints[stem] = str(view).strip().upper()
    return hints


def _is_frontal(view: str | None) -> bool | None:
    """True / False for a frontal / lateral view, None when the view is unknown."""
    if not view:
        return None
    return view not in _LATERAL_VIEWS


def _report_number(name: str) -> tuple[int, str]:
    """Sort key that puts ``2.xml`` before ``10.xml``."""
    stem = Path(name).stem
    return (int(stem), name) if stem.isdigit() else (1 << 62, name)


def _iu_xml_sources(reports_dir: Path) -> Iterator[tuple[str, Any]]:
    """(name, path or bytes) for every IU report: a folder of XML files or the NLMCXR_reports.tgz archive."""
    if reports_dir.is_file() and tarfile.is_tarfile(reports_dir):
        with tarfile.open(reports_dir) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: _report_number(m.name)):
                if member.isfile() and member.name.endswith(".xml"):
                    yield f"{reports_dir}:{member.name}", tar.extractfile(member).read()
        return
    if not reports_dir.is_dir():
        raise DataError(reports_dir, "missing report folder")
    for path in sorted(reports_dir.glob("*.xml"), key=lambda p: _report_number(p.name)):
        yield str(path), path


def read_iu_xray(
    data_dir: str | Path,
    reports_dir: str | Path | None = None,
    images_dir: str | Path | None = None,
    view_table: str | Path | None = "auto",
    sections: Sequence[str] = DEFAULT_SECTIONS,
    skip: SkipCounter | None = None,
) -> list[Record]:
    """IU X-ray / Open-i: XML reports (``ecgen-radiology/*.xml`` or the .tgz) + PNG images (``NLMCXR_png``).

    Each report names its images by id (``<parentImage id="CXR1_1_IM-0001-3001">`` -> ``CXR1_1_IM-0001-3001.png``).
    One frontal image per report: the first image a view table calls frontal (``view_table="auto"`` reads the
    T-SNE derived PA / lateral table installed with torchxrayvision; a CSV path gives your own; None uses no
    hint), else the first image not called lateral. No labels (the datalist builder labels the report) and no
    official split; the subject is the report id.
    """
    skip = skip_counter(skip)
    data_dir = Path(data_dir)
    if reports_dir is None:
        found = [data_dir / n for n in ("ecgen-radiology", "NLMCXR_reports.tgz") if (data_dir / n).exists()]
        reports_dir = found[0] if found else data_dir
    if images_dir is None:
        images_dir = next((data_dir / n for n in ("NLMCXR_png", "images") if (data_dir / n).is_dir()), data_dir)
    reports_dir, images_dir = Path(reports_dir), Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(images_dir, "missing image folder")
    hints = _xtv_view_hints() if view_table == "auto" else _view_hints_from_table(view_table) if view_table else {}

    def report_builder(name: str, xml: Any) -> Callable[[], Record | None]:
        def build() -> Record | None:
            parsed = parse_iu_xml(xml, source=name)
            image_ids = [img["id"] if isinstance(img, Mapping) else str(img) for img in parsed.get("images") or []]
            if not image_ids:
                raise DataError(name, "missing image: the report names no image")
            ranked = sorted(image_ids, key=lambda i: {True: 0, None: 1, False: 2}[_is_frontal(hints.get(i))])
            if _is_frontal(hints.get(ranked[0])) is False:
                lateral_only.append(name)
                return None
            image_id = ranked[0]
            candidates = [images_dir / f"{image_id}{ext}" for ext in (".png", ".jpg", ".dcm")]
            path = require_image(next((p for p in candidates if p.is_file()), candidates[0]))
            parts = {k: parsed.get(k) for k in ("findings", "impression", "indication", "comparison") if parsed.get(k)}
            report = select_sections(parts, tuple(sections), source=name)
            view = hints.get(image_id)
            subject = parsed.get("id") or Path(name.split(":")[-1]).stem
            return make_record(path, report, None, subject, subject, None, view)

        return build

    lateral_only: list[str] = []
    records = collect((report_builder(n, x) for n, x in _iu_xml_sources(reports_dir)), skip)
    if lateral_only:
        logger.info("%d IU X-ray reports left out: the view table calls all their images lateral", len(lateral_only))
    return records
