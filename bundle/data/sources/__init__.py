"""Dataset sources: readers that turn a dataset folder or table into a list of *records*.

A record is ``{"image": absolute path, "report": cleaned text of the chosen sections, "label_record": CheXpert
label record or None (the datalist builder then labels the report), "subject": str, "study": str, "split":
"training" | "validation" | "test" | None, "view": str | None}`` (:func:`make_record`).
:mod:`bundle.data.datalist` turns records into the MONAI datalist. Every reader raises :class:`DataError` naming
the file and the problem for a bad item, or records it in ``skip`` (a :class:`SkipCounter` with ``skip_bad=True``)
and carries on.

One module per source: ``mimic`` (MIMIC-CXR-JPG), ``iu_xray`` (IU X-ray / Open-i), ``r2gen`` (R2Gen's
annotation.json), ``table`` (CSV / JSON Lines), ``folders`` (DICOM and NIfTI folders); ``common`` holds the record
and the helpers they share; ``options`` holds each source's settings as :mod:`bundle.data.prepare` takes them. A new
source is a reader module, an entry in :data:`SOURCES` and an options class in ``options``
(``SOURCE_OPTIONS``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import DataError, SkipCounter
from ..reports import DEFAULT_SECTIONS
from .common import (
    SPLIT_NAMES,
    Record,
    make_record,
    normalise_split,
    parse_label_row,
    read_rows,
    report_from_file,
    report_from_text,
    report_whole,
)
from .folders import read_dicom_dir, read_nifti_dir
from .iu_xray import read_iu_xray
from .mimic import MIMIC_CHEXPERT, MIMIC_METADATA, MIMIC_SPLIT, mimic_study_dir, read_mimic_cxr_jpg
from .r2gen import read_r2gen_annotation
from .table import read_table

__all__ = [
    "DEFAULT_SECTIONS",
    "MIMIC_CHEXPERT",
    "MIMIC_METADATA",
    "MIMIC_SPLIT",
    "SOURCES",
    "SPLIT_NAMES",
    "DataError",
    "Record",
    "SkipCounter",
    "get_source",
    "make_record",
    "mimic_study_dir",
    "normalise_split",
    "parse_label_row",
    "read_dicom_dir",
    "read_iu_xray",
    "read_mimic_cxr_jpg",
    "read_nifti_dir",
    "read_r2gen_annotation",
    "read_rows",
    "read_table",
    "report_from_file",
    "report_from_text",
    "report_whole",
]

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
