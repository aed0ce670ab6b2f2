"""Folders of DICOM or NIfTI files, each with a sibling ``.txt`` report or a row in a reports table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import DataError, SkipCounter
from ..labels import CHEXPERT_CLASSES
from ..reports import DEFAULT_SECTIONS
from .common import (
    Record,
    as_tuple,
    collect,
    label_record_from_row,
    make_record,
    normalise_split,
    read_rows,
    report_from_cell,
    report_from_file,
    skip_counter,
)

_NOT_DICOM_SUFFIXES = {".txt", ".csv", ".gz", ".json", ".jsonl", ".png", ".jpg", ".jpeg", ".nii", ".xml", ".md"}
_REPORT_KEY_COLUMNS = (
    "id",
    "key",
    "file",
    "filename",
    "stem",
    "image",
    "SOPInstanceUID",
    "sop_instance_uid",
    "StudyInstanceUID",
    "study_instance_uid",
    "study",
)


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
    """A file name without its image or report ending (``.nii.gz`` counts as one)."""
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
        report = report_from_cell(row.get("report"), mapping_path.parent, sections, where)
        label_cols = [c for c in row if c in CHEXPERT_CLASSES]
        return report, label_record_from_row(row, label_cols, mapping_path, row["_row"]), row
    sibling = image.parent / f"{_stem(image)}.txt"
    if not sibling.is_file():
        raise DataError(image, f"missing report: no {sibling.name} beside the image and no reports table")
    return report_from_file(sibling, sections), None, None


def _is_dicom(path: Path) -> bool:
    """A DICOM file by its ending, else by its ``DICM`` preamble (files with other known endings are not)."""
    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return True
    if suffix in _NOT_DICOM_SUFFIXES:
        return False
    from ..images import has_dicom_preamble

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

    skip = skip_counter(skip)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(data_dir, "missing dataset folder")
    mapping, mapping_path = _load_report_mapping(reports)
    wanted_views = [v.upper() for v in as_tuple(views)] if views else None
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

    return collect((file_builder(p) for p in files), skip)


def read_nifti_dir(
    data_dir: str | Path,
    reports: str | Path | None = None,
    sections: Sequence[str] = DEFAULT_SECTIONS,
    skip: SkipCounter | None = None,
) -> list[Record]:
    """Every ``.nii`` / ``.nii.gz`` file under ``data_dir`` with a sibling ``.txt`` report or a ``reports`` table.

    subject / study come from the table's ``subject`` / ``study`` columns when given, else the file stem.
    """
    skip = skip_counter(skip)
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

    return collect((file_builder(p) for p in files), skip)
