"""The record every reader returns and the helpers the readers share: tables, report text, labels, splits."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError, SkipCounter
from ..labels import CHEXPERT_CLASSES, parse_label_value
from ..reports import DEFAULT_SECTIONS, clean_report, extract_sections, read_report_file, select_sections

Record = dict[str, Any]

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


def skip_counter(skip: SkipCounter | None) -> SkipCounter:
    """``skip``, or a counter that raises on the first bad item."""
    return skip if skip is not None else SkipCounter(skip_bad=False)


def as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
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


def require_image(path: Path) -> Path:
    """``path``, or :class:`DataError` when no file is there."""
    if not path.is_file():
        raise DataError(path, "missing image")
    return path


def report_from_file(path: str | Path, sections: Sequence[str] = DEFAULT_SECTIONS) -> str:
    """Chosen sections of a free-text report file; :class:`DataError` when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing report")
    return read_report_file(path, tuple(sections))


def report_from_text(text: object, sections: Sequence[str] = DEFAULT_SECTIONS, source: object = None) -> str:
    """Chosen sections of a report given as text (a table cell); text without headers counts as FINDINGS."""
    text = "" if text is None else str(text)
    if not text.strip() or text.strip().lower() == "nan":
        raise DataError(source, "empty report")
    return select_sections(extract_sections(text), tuple(sections), source=source)


def report_whole(text: object, source: object = None) -> str:
    """A report that is already the chosen text (R2Gen's annotation), cleaned."""
    cleaned = clean_report("" if text is None else str(text))
    if not cleaned:
        raise DataError(source, "empty report")
    return cleaned


def _open_text(path: Path):
    """A text table, gunzipped when its name ends in .gz."""
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


def find_table(data_dir: Path, name: str, required: bool = True) -> Path | None:
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


def check_label_columns(columns: Sequence[str], source: str | Path) -> list[str]:
    """``columns`` as a list; :class:`DataError` for a name that is not a CheXpert observation."""
    unknown = [c for c in columns if c not in CHEXPERT_CLASSES]
    if unknown:
        raise DataError(source, f"unknown label column(s) {unknown} (known: {', '.join(CHEXPERT_CLASSES)})")
    return list(columns)


def collect(items: Iterable[Callable[[], Record | list[Record] | None]], skip: SkipCounter) -> list[Record]:
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


def label_record_from_row(
    row: Mapping[str, Any], label_cols: Sequence[str], source: Path, n: int
) -> dict[str, float | None] | None:
    """A row's label record: its JSON ``labels`` object, else its ``label_cols``; None when it has neither."""
    nested = row.get("labels")
    if isinstance(nested, Mapping):
        check_label_columns(list(nested), source)
        return parse_label_row(nested, list(nested), source, n)
    return parse_label_row(row, label_cols, source, n) if label_cols else None


def report_from_cell(cell: Any, base_dir: Path, sections: Sequence[str], source: str) -> str:
    """A report cell: text, or a path to a .txt report (relative to ``base_dir``)."""
    text = "" if cell is None else str(cell)
    if text.strip().lower().endswith(".txt") and "\n" not in text and len(text) < 1024:
        path = Path(text.strip())
        return report_from_file(path if path.is_absolute() else base_dir / path, sections)
    return report_from_text(text, sections, source=source)
