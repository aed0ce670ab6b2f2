"""Dataset sources: readers that turn a dataset folder or table into a list of *records*.

A record is ``{"image": absolute path, "report": cleaned text of the chosen sections, "label_record": CheXpert
label record or None (the datalist builder then labels the report), "subject": str, "study": str, "split":
"training" | "validation" | "test" | None, "view": str | None}``. :mod:`bundle.data.datalist` turns records
into the MONAI datalist. Every reader raises :class:`DataError` naming the file and the problem for a bad
item, or records it in ``skip`` (a :class:`SkipCounter` with ``skip_bad=True``) and carries on.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import logging
import tarfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import DataError, SkipCounter
from .labels import CHEXPERT_CLASSES, parse_label_value

logger = logging.getLogger(__name__)

Record = dict[str, Any]
DEFAULT_SECTIONS: tuple[str, ...] = ("findings", "impression")

#: Official split names of the supported datasets -> MONAI datalist keys.
SPLIT_NAMES = {
    "train": "training",
    "training": "training",
    "validate": "validation",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "test": "test",
    "testing": "test",
}

MIMIC_METADATA = "mimic-cxr-2.0.0-metadata.csv"
MIMIC_SPLIT = "mimic-cxr-2.0.0-split.csv"
MIMIC_CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"
_LATERAL_VIEWS = {"L", "LL", "LATERAL", "LAT", "RL", "XTABLE LATERAL", "LAO", "RAO"}
_NOT_DICOM_SUFFIXES = {".txt", ".csv", ".gz", ".json", ".jsonl", ".png", ".jpg", ".jpeg", ".nii", ".xml", ".md"}
_REPORT_KEY_COLUMNS = (
    "id", "key", "file", "filename", "stem", "image", "SOPInstanceUID", "sop_instance_uid",
    "StudyInstanceUID", "study_instance_uid", "study",
)


def _reports():
    """The report-parsing module, imported when first needed."""
    from . import reports

    return reports


def _skip(skip: SkipCounter | None) -> SkipCounter:
    return skip if skip is not None else SkipCounter(skip_bad=False)


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"a,b"`` or ``["a", "b"]`` -> ``("a", "b")``; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(v).strip() for v in value if str(v).strip())


def normalise_split(value: object, source: str | Path | None = None) -> str | None:
    """An official split name (train / validate / val / test ...) -> ``training`` / ``validation`` / ``test``."""
    if value is None or str(value).strip() == "" or str(value).strip().lower() == "nan":
        return None
    name = SPLIT_NAMES.get(str(value).strip().lower())
    if name is None:
        raise DataError(source, f"unknown split: {value!r} (expected one of {sorted(SPLIT_NAMES)})")
    return name


def make_record(
    image: str | Path,
    report: str,
    label_record: Mapping[str, float | None] | None,
    subject: object,
    study: object,
    split: str | None = None,
    view: str | None = None,
) -> Record:
    """One record in the shape every reader returns."""
    return {
        "image": str(Path(image).absolute()),
        "report": report,
        "label_record": dict(label_record) if label_record is not None else None,
        "subject": str(subject),
        "study": str(study),
        "split": split,
        "view": view or None,
    }


def _require_image(path: Path) -> Path:
    if not path.is_file():
        raise DataError(path, "missing image")
    return path


def report_from_file(path: str | Path, sections: Sequence[str] = DEFAULT_SECTIONS) -> str:
    """Chosen sections of a free-text report file; :class:`DataError` when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing report")
    return _reports().read_report_file(path, tuple(sections))


def report_from_text(text: object, sections: Sequence[str] = DEFAULT_SECTIONS, source: object = None) -> str:
    """Chosen sections of a report given as text (a table cell); text without headers counts as FINDINGS."""
    text = "" if text is None else str(text)
    if not text.strip() or text.strip().lower() == "nan":
        raise DataError(source, "empty report")
    reports = _reports()
    return reports.select_sections(reports.extract_sections(text), tuple(sections), source=source)


def report_whole(text: object, source: object = None) -> str:
    """A report that is already the chosen text (R2Gen's annotation), cleaned."""
    cleaned = _reports().clean_report("" if text is None else str(text))
    if not cleaned:
        raise DataError(source, "empty report")
    return cleaned


def _open_text(path: Path):
    return gzip.open(path, "rt", newline="") if path.name.endswith(".gz") else path.open(newline="")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a CSV / TSV (optionally .gz), JSON Lines or JSON list file as dicts (CSV cells are strings)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing file")
    name = path.name.lower()
    try:
        if name.endswith((".jsonl", ".ndjson")):
            rows = []
            with path.open() as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as err:
                            raise DataError(path, f"bad JSON line: line {n}: {err.msg}") from err
        elif name.endswith(".json"):
            data = json.loads(path.read_text())
            rows = data if isinstance(data, list) else data.get("items", data.get("data"))
            if not isinstance(rows, list):
                raise DataError(path, "bad JSON table: expected a list of objects")
        else:
            with _open_text(path) as f:
                rows = list(csv.DictReader(f, delimiter="\t" if ".tsv" in name else ","))
    except (UnicodeDecodeError, csv.Error, OSError, json.JSONDecodeError) as err:
        raise DataError(path, f"unreadable table: {err}") from err
    if any(not isinstance(row, dict) for row in rows):
        raise DataError(path, "bad table: every row must be an object")
    return rows


def _find_table(data_dir: Path, name: str, required: bool = True) -> Path | None:
    """``name`` or ``name.gz`` inside ``data_dir``."""
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    if required:
        raise DataError(data_dir / name, "missing file (also looked for .csv.gz)")
    return None


def parse_label_row(
    row: Mapping[str, Any], columns: Sequence[str], source: str | Path, row_number: int
) -> dict[str, float | None]:
    """A label record from the CheXpert-named ``columns`` of a table row; bad cells name file, row and column."""
    record: dict[str, float | None] = {}
    for column in columns:
        value = row.get(column)
        try:
            record[column] = parse_label_value(value, source=str(source), column=column)
        except DataError as err:
            problem = f"unknown label value: {value!r} in column {column!r} (row {row_number})"
            raise DataError(source, f"{problem}; expected 1, 0, -1 or empty") from err
    return record


def _check_label_columns(columns: Sequence[str], source: str | Path) -> list[str]:
    unknown = [c for c in columns if c not in CHEXPERT_CLASSES]
    if unknown:
        raise DataError(source, f"unknown label column(s) {unknown} (known: {', '.join(CHEXPERT_CLASSES)})")
    return list(columns)


def _collect(items: Iterable[Callable[[], Record | list[Record] | None]], skip: SkipCounter) -> list[Record]:
    """Run each item builder; bad items raise or are counted in ``skip``."""
    records: list[Record] = []
    for build in items:
        try:
            out = build()
        except DataError as err:
            skip.handle(err)
            continue
        if out is None:
            continue
        records.extend(out if isinstance(out, list) else [out])
    return records


# --------------------------------------------------------------------------------------------- MIMIC-CXR-JPG
def _files_root(folder: Path) -> Path:
    """The folder that holds ``pNN/pSUBJECT/...``: ``folder/files`` when it exists, else ``folder`` itself."""
    return folder / "files" if (folder / "files").is_dir() else folder


def mimic_study_dir(root: Path, subject: str, study: str) -> Path:
    """``root/pNN/pSUBJECT/sSTUDY`` as MIMIC-CXR lays studies out (NN = first two digits of the subject)."""
    subject, study = str(subject), str(study)
    return root / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"


def read_mimic_cxr_jpg(
    data_dir: str | Path,
    reports_dir: str | Path | None = None,
    views: str | Sequence[str] | None = ("PA", "AP"),
    all_images: bool = False,
    sections: Sequence[str] = DEFAULT_SECTIONS,
    skip: SkipCounter | None = None,
) -> list[Record]:
    """MIMIC-CXR-JPG 2.0.0 / 2.1.0: ``files/pNN/pSUBJECT/sSTUDY/DICOM_ID.jpg`` and the three CSVs.

    Joins ``mimic-cxr-2.0.0-metadata.csv`` (view position), ``-split.csv`` (official split) and
    ``-chexpert.csv`` (labels; studies without a row are labelled later from the report) on dicom_id /
    study_id; the CSVs may be gzipped. MIMIC-CXR-JPG ships no reports: ``reports_dir`` is the MIMIC-CXR
    reports folder (same ``files/pNN/pSUBJECT/sSTUDY.txt`` layout), ``data_dir`` by default. One frontal image
    per study (the first view in ``views`` order, then the lowest dicom_id) unless ``all_images``.
    ``views=None`` keeps every view.
    """
    skip = _skip(skip)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(data_dir, "missing dataset folder")
    image_root = _files_root(data_dir)
    report_root = _files_root(Path(reports_dir)) if reports_dir is not None else image_root
    views = _as_tuple(views)
    wanted_views = [v.upper() for v in views] if views else None

    metadata_path = _find_table(data_dir, MIMIC_METADATA, required=wanted_views is not None)
    split_path = _find_table(data_dir, MIMIC_SPLIT, required=metadata_path is None)
    chexpert_path = _find_table(data_dir, MIMIC_CHEXPERT, required=False)
    if chexpert_path is None:
        logger.warning("%s not found: studies will be labelled from their reports", data_dir / MIMIC_CHEXPERT)

    # images: dicom_id -> (subject, study, view)
    images: dict[str, tuple[str, str, str | None]] = {}
    for row in read_rows(metadata_path or split_path):
        try:
            dicom_id, subject, study = row["dicom_id"], str(row["subject_id"]), str(row["study_id"])
        except KeyError as err:
            raise DataError(metadata_path or split_path, f"missing column {err.args[0]!r}") from err
        view = str(row.get("ViewPosition") or "").strip().upper() or None
        images[dicom_id] = (subject, study, view)

    splits: dict[str, tuple[int, str | None]] = {}  # dicom_id -> (row, official split name)
    if split_path is not None:
        for n, row in enumerate(read_rows(split_path), 1):
            try:
                splits[row["dicom_id"]] = (n, row.get("split"))
            except KeyError as err:
                raise DataError(split_path, "missing column 'dicom_id'") from err

    label_rows: dict[str, tuple[int, dict]] = {}
    label_columns: list[str] = []
    if chexpert_path is not None:
        rows = read_rows(chexpert_path)
        label_columns = [c for c in (rows[0].keys() if rows else []) if c not in ("subject_id", "study_id")]
        _check_label_columns(label_columns, chexpert_path)
        for n, row in enumerate(rows, 1):
            label_rows[str(row.get("study_id"))] = (n, row)

    studies: dict[tuple[str, str], list[tuple[int, str, str | None]]] = defaultdict(list)
    for dicom_id, (subject, study, view) in images.items():
        if wanted_views is not None:
            if view not in wanted_views:
                continue
            rank = wanted_views.index(view)
        else:
            rank = 0 if view == "PA" else 1 if view == "AP" else 2
        studies[(subject, study)].append((rank, dicom_id, view))

    def study_builder(subject: str, study: str, candidates: list) -> Callable[[], list[Record]]:
        def build() -> list[Record]:
            chosen = sorted(candidates) if all_images else [min(candidates)]
            study_dir = mimic_study_dir(image_root, subject, study)
            paths = [_require_image(study_dir / f"{dicom_id}.jpg") for _, dicom_id, _ in chosen]
            report = report_from_file(mimic_study_dir(report_root, subject, study).with_suffix(".txt"), sections)
            label_record = None
            if study in label_rows:
                n, row = label_rows[study]
                label_record = parse_label_row(row, label_columns, chexpert_path, n)
            records = []
            for path, (_, dicom_id, view) in zip(paths, chosen):
                n, name = splits.get(dicom_id, (0, None))
                split = normalise_split(name, f"{split_path} (row {n})")
                records.append(make_record(path, report, label_record, subject, study, split, view))
            return records

        return build

    dropped = len({(subject, study) for subject, study, _ in images.values()}) - len(studies)
    if dropped:
        logger.info("%d MIMIC-CXR studies left out: no image with a view in %s", dropped, views)
    return _collect((study_builder(s, t, c) for (s, t), c in sorted(studies.items())), skip)


# ------------------------------------------------------------------------------------------- IU X-ray / Open-i
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
    skip = _skip(skip)
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
    reports = _reports()

    def report_builder(name: str, xml: Any) -> Callable[[], Record | None]:
        def build() -> Record | None:
            parsed = reports.parse_iu_xml(xml, source=name)
            image_ids = [img["id"] if isinstance(img, Mapping) else str(img) for img in parsed.get("images") or []]
            if not image_ids:
                raise DataError(name, "missing image: the report names no image")
            ranked = sorted(image_ids, key=lambda i: {True: 0, None: 1, False: 2}[_is_frontal(hints.get(i))])
            if _is_frontal(hints.get(ranked[0])) is False:
                lateral_only.append(name)
                return None
            image_id = ranked[0]
            candidates = [images_dir / f"{image_id}{ext}" for ext in (".png", ".jpg", ".dcm")]
            path = _require_image(next((p for p in candidates if p.is_file()), candidates[0]))
            parts = {k: parsed.get(k) for k in ("findings", "impression", "indication", "comparison") if parsed.get(k)}
            report = reports.select_sections(parts, tuple(sections), source=name)
            view = hints.get(image_id)
            subject = parsed.get("id") or Path(name.split(":")[-1]).stem
            return make_record(path, report, None, subject, subject, None, view)

        return build

    lateral_only: list[str] = []
    records = _collect((report_builder(n, x) for n, x in _iu_xml_sources(reports_dir)), skip)
    if lateral_only:
        logger.info("%d IU X-ray reports left out: the view table calls all their images lateral", len(lateral_only))
    return records


# ---------------------------------------------------------------------------------------- R2Gen annotation.json
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
    skip = _skip(skip)
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
            path = _require_image(images_dir / (paths[0] if isinstance(paths, list) else str(paths)))
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
    return _collect(builders, skip)


# ------------------------------------------------------------------------------------------------ CSV / JSONL
def _label_record_from_row(
    row: Mapping[str, Any], label_cols: Sequence[str], source: Path, n: int
) -> dict[str, float | None] | None:
    nested = row.get("labels")
    if isinstance(nested, Mapping):
        _check_label_columns(list(nested), source)
        return parse_label_row(nested, list(nested), source, n)
    return parse_label_row(row, label_cols, source, n) if label_cols else None


def _report_from_cell(cell: Any, base_dir: Path, sections: Sequence[str], source: str) -> str:
    """A report cell: text, or a path to a .txt report (relative to ``base_dir``)."""
    text = "" if cell is None else str(cell)
    if text.strip().lower().endswith(".txt") and "\n" not in text and len(text) < 1024:
        path = Path(text.strip())
        return report_from_file(path if path.is_absolute() else base_dir / path, sections)
    return report_from_text(text, sections, source=source)


def read_table(
    path: str | Path,
    image_col: str = "image",
    report_col: str = "report",
    subject_col: str = "subject",
    label_cols: str | Sequence[str] | None = None,
    base_dir: str | Path | None = None,
    study_col: str = "study",
    split_col: str = "split",
    view_col: str = "view",
    sections: Sequence[str] = DEFAULT_SECTIONS,
    skip: SkipCounter | None = None,
) -> list[Record]:
    """A generic CSV (.csv, .csv.gz, .tsv) or JSON Lines table with one row per image.

    ``image_col`` holds image paths (relative to ``base_dir``, by default the table's folder); ``report_col``
    the report text or a path to a .txt report. ``label_cols`` (CheXpert names; by default every column
    named like a CheXpert observation, or a JSON ``labels`` object) give the label record; otherwise the
    report is labelled later. Optional ``study_col``, ``split_col`` and ``view_col`` are used when present;
    without ``subject_col`` every image counts as its own subject.
    """
    skip = _skip(skip)
    path = Path(path)
    base = Path(base_dir) if base_dir is not None else path.parent
    rows = read_rows(path)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    for required in (image_col, report_col):
        if rows and required not in columns:
            raise DataError(path, f"missing column {required!r} (columns: {columns})")
    if label_cols is None:
        label_cols = [c for c in columns if c in CHEXPERT_CLASSES]
    else:
        label_cols = _check_label_columns(_as_tuple(label_cols) or (), path)
        missing = [c for c in label_cols if c not in columns]
        if rows and missing:
            raise DataError(path, f"missing label column(s) {missing} (columns: {columns})")
    if rows and subject_col not in columns:
        logger.warning("%s has no %r column: every image is treated as its own subject", path, subject_col)

    def row_builder(n: int, row: Mapping[str, Any]) -> Callable[[], Record]:
        def build() -> Record:
            where = f"{path} (row {n})"
            cell = row.get(image_col)
            if cell is None or str(cell).strip() == "":
                raise DataError(where, f"missing image: empty {image_col!r} cell")
            image = Path(str(cell).strip())
            image = _require_image(image if image.is_absolute() else base / image)
            report = _report_from_cell(row.get(report_col), base, sections, where)
            label_record = _label_record_from_row(row, label_cols, path, n)
            subject = str(row.get(subject_col) or "").strip() or image.stem
            study = str(row.get(study_col) or "").strip() or image.stem
            split = normalise_split(row.get(split_col), where)
            return make_record(image, report, label_record, subject, study, split, row.get(view_col) or None)

        return build

    return _collect((row_builder(n, row) for n, row in enumerate(rows, 1)), skip)


# ------------------------------------------------------------------------------------------- DICOM / NIfTI dirs
def _load_report_mapping(reports: str | Path | None) -> tuple[dict[str, dict], Path | None]:
    """A CSV / JSONL report table -> {key: row}; keys are the values of every id-like column (file stems)."""
    if reports is None:
        return {}, None
    path = Path(reports)
    rows = read_rows(path)
    mapping: dict[str, dict] = {}
    for n, row in enumerate(rows, 1):
        row = dict(row, _row=n)
        for column in _REPORT_KEY_COLUMNS:
            value = str(row.get(column) or "").strip()
            if value:
                mapping[value] = row
                mapping.setdefault(_stem(Path(value)), row)
    if rows and "report" not in rows[0]:
        raise DataError(path, "missing column 'report'")
    return mapping, path


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dcm", ".dicom", ".txt", ".png", ".jpg", ".jpeg"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _report_for_image(
    image: Path, keys: Sequence[str], mapping: Mapping[str, dict], mapping_path: Path | None, sections: Sequence[str]
) -> tuple[str, dict | None, dict | None]:
    """(report, label record or None, mapping row or None) for an image: sibling .txt or the report table."""
    if mapping_path is not None:
        row = next((mapping[k] for k in keys if k and k in mapping), None)
        if row is None:
            raise DataError(image, f"missing report: no row in {mapping_path} for {[k for k in keys if k]}")
        where = f"{mapping_path} (row {row['_row']})"
        report = _report_from_cell(row.get("report"), mapping_path.parent, sections, where)
        label_cols = [c for c in row if c in CHEXPERT_CLASSES]
        return report, _label_record_from_row(row, label_cols, mapping_path, row["_row"]), row
    sibling = image.parent / f"{_stem(image)}.txt"
    if not sibling.is_file():
        raise DataError(image, f"missing report: no {sibling.name} beside the image and no reports table")
    return report_from_file(sibling, sections), None, None


def _is_dicom(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return True
    if suffix in _NOT_DICOM_SUFFIXES:
        return False
    from bundle.data.images import has_dicom_preamble

    return has_dicom_preamble(path)


def read_dicom_dir(
    data_dir: str | Path,
    reports: str | Path | None = None,
    views: str | Sequence[str] | None = None,
    sections: Sequence[str] = DEFAULT_SECTIONS,
    skip: SkipCounter | None = None,
) -> list[Record]:
    """Every DICOM file under ``data_dir`` (``.dcm`` or the ``DICM`` preamble), one record per file.

    subject = PatientID (else the parent folder), study = StudyInstanceUID (else the parent folder). The report
    is a sibling ``.txt`` with the same stem, or the ``report`` column of a CSV / JSONL ``reports`` table whose
    id column holds the file stem, SOPInstanceUID or StudyInstanceUID (CheXpert-named columns there give
    labels). Headers are read without loading pixel values; a file without pixel data is bad input.
    ``views`` (ViewPosition values) filters files that state a view.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    skip = _skip(skip)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(data_dir, "missing dataset folder")
    mapping, mapping_path = _load_report_mapping(reports)
    wanted_views = [v.upper() for v in _as_tuple(views)] if views else None
    files = sorted(p for p in data_dir.rglob("*") if p.is_file() and _is_dicom(p))

    def file_builder(path: Path) -> Callable[[], Record | None]:
        def build() -> Record | None:
            try:
                # defer_size keeps large values (pixel data) on disk while still recording that they exist
                ds = pydicom.dcmread(path, defer_size="4 KB", force=path.suffix.lower() in (".dcm", ".dicom"))
            except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as err:
                raise DataError(path, f"unreadable DICOM: {err}") from err
            if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                raise DataError(path, "DICOM without pixel data")
            view = str(ds.get("ViewPosition", "") or "").strip().upper() or None
            if wanted_views is not None and view is not None and view not in wanted_views:
                return None
            subject = str(ds.get("PatientID", "") or "").strip() or path.parent.name
            study = str(ds.get("StudyInstanceUID", "") or "").strip() or path.parent.name
            keys = [_stem(path), str(ds.get("SOPInstanceUID", "") or ""), study]
            report, label_record, _ = _report_for_image(path, keys, mapping, mapping_path, sections)
            return make_record(path, report, label_record, subject, study, None, view)

        return build

    return _collect((file_builder(p) for p in files), skip)


def read_nifti_dir(
    data_dir: str | Path,
    reports: str | Path | None = None,
    sections: Sequence[str] = DEFAULT_SECTIONS,
    skip: SkipCounter | None = None,
) -> list[Record]:
    """Every ``.nii`` / ``.nii.gz`` file under ``data_dir`` with a sibling ``.txt`` report or a ``reports`` table.

    subject / study come from the table's ``subject`` / ``study`` columns when given, else the file stem.
    """
    skip = _skip(skip)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(data_dir, "missing dataset folder")
    mapping, mapping_path = _load_report_mapping(reports)
    files = sorted(p for p in data_dir.rglob("*") if p.is_file() and p.name.lower().endswith((".nii", ".nii.gz")))

    def file_builder(path: Path) -> Callable[[], Record]:
        def build() -> Record:
            stem = _stem(path)
            report, label_record, row = _report_for_image(path, [stem], mapping, mapping_path, sections)
            subject = str((row or {}).get("subject") or "").strip() or stem
            study = str((row or {}).get("study") or "").strip() or stem
            split = normalise_split((row or {}).get("split"), mapping_path)
            return make_record(path, report, label_record, subject, study, split, None)

        return build

    return _collect((file_builder(p) for p in files), skip)


#: Source name -> reader. ``csv`` reads JSON Lines too; ``nifti`` is an alias of ``nifti_dir``.
SOURCES: dict[str, Callable[..., list[Record]]] = {
    "mimic": read_mimic_cxr_jpg,
    "iu_xray": read_iu_xray,
    "r2gen": read_r2gen_annotation,
    "csv": read_table,
    "jsonl": read_table,
    "dicom_dir": read_dicom_dir,
    "nifti_dir": read_nifti_dir,
    "nifti": read_nifti_dir,
}


def get_source(name: str) -> Callable[..., list[Record]]:
    """The reader for a source name; a clear error lists the valid names."""
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; choose one of: {', '.join(SOURCES)}")
    return SOURCES[name]
