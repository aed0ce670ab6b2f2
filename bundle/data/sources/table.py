"""A generic CSV / TSV / JSON Lines table with one row per image (also the generated folders' manifest.csv).

The generated-data writer (:class:`bundle.inference.writer.PairedDatasetWriter`) escapes ``manifest.csv`` text cells
that a spreadsheet would run as a formula (those starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return) by a leading ``'``, and marks each such row with :data:`FORMULA_ESCAPE_COLUMN`; :func:`read_table` undoes the
escape on the marked rows only, so the text read back is the text generated, and other tables are read as written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError, SkipCounter
from ..labels import CHEXPERT_CLASSES
from ..reports import DEFAULT_SECTIONS
from .common import (
    Record,
    as_tuple,
    check_label_columns,
    collect,
    label_record_from_row,
    make_record,
    normalise_split,
    read_rows,
    report_from_cell,
    require_image,
    skip_counter,
)

logger = logging.getLogger(__name__)

#: A manifest column set to ``1`` on rows whose text cells were escaped for spreadsheets (see the module docs).
FORMULA_ESCAPE_COLUMN = "formula_escaped"
#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_START: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def formula_like(text: str) -> bool:
    """Whether ``text``, after any leading ``'``, starts with a :data:`FORMULA_START` character: the cells the writer
    escapes (a ``'`` added in front; ``'=x`` too, so that unescaping is exact)."""
    return text.lstrip("'")[:1] in FORMULA_START and text.lstrip("'") != ""


def unescape_formula_cell(value: Any) -> Any:
    """A cell of a marked row as it was before escaping: one leading ``'`` removed from a formula-like text cell;
    anything else unchanged."""
    if isinstance(value, str) and value.startswith("'") and formula_like(value):
        return value[1:]
    return value


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
    without ``subject_col`` every image counts as its own subject. Rows with ``1`` in :data:`FORMULA_ESCAPE_COLUMN`
    (written by the generated-data writer) have their spreadsheet escape undone first.
    """
    skip = skip_counter(skip)
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
        label_cols = check_label_columns(as_tuple(label_cols) or (), path)
        missing = [c for c in label_cols if c not in columns]
        if rows and missing:
            raise DataError(path, f"missing label column(s) {missing} (columns: {columns})")
    if rows and subject_col not in columns:
        logger.warning("%s has no %r column: every image is treated as its own subject", path, subject_col)

    def row_builder(n: int, row: Mapping[str, Any]) -> Callable[[], Record]:
        if str(row.get(FORMULA_ESCAPE_COLUMN) or "").strip() == "1":
            row = {k: unescape_formula_cell(v) for k, v in row.items()}

        def build() -> Record:
            where = f"{path} (row {n})"
            cell = row.get(image_col)
            if cell is None or str(cell).strip() == "":
                raise DataError(where, f"missing image: empty {image_col!r} cell")
            image = Path(str(cell).strip())
            image = require_image(image if image.is_absolute() else base / image)
            report = report_from_cell(row.get(report_col), base, sections, where)
            label_record = label_record_from_row(row, label_cols, path, n)
            subject = str(row.get(subject_col) or "").strip() or image.stem
            study = str(row.get(study_col) or "").strip() or image.stem
            split = normalise_split(row.get(split_col), where)
            return make_record(image, report, label_record, subject, study, split, row.get(view_col) or None)

        return build

    return collect((row_builder(n, row) for n, row in enumerate(rows, 1)), skip)
