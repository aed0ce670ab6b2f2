"""MIMIC-CXR-JPG: ``files/pNN/pSUBJECT/sSTUDY/DICOM_ID.jpg``, its metadata / split / CheXpert CSVs, and the
MIMIC-CXR reports in the same layout."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import DataError, SkipCounter
from ..reports import DEFAULT_SECTIONS
from .common import (
    Record,
    as_tuple,
    check_label_columns,
    collect,
    find_table,
    make_record,
    normalise_split,
    parse_label_row,
    read_rows,
    report_from_file,
    require_image,
    skip_counter,
)

logger = logging.getLogger(__name__)

MIMIC_METADATA = "mimic-cxr-2.0.0-metadata.csv"
MIMIC_SPLIT = "mimic-cxr-2.0.0-split.csv"
MIMIC_CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"


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
    skip = skip_counter(skip)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(data_dir, "missing dataset folder")
    image_root = _files_root(data_dir)
    report_root = _files_root(Path(reports_dir)) if reports_dir is not None else image_root
    views = as_tuple(views)
    wanted_views = [v.upper() for v in views] if views else None

    metadata_path = find_table(data_dir, MIMIC_METADATA, required=wanted_views is not None)
    split_path = find_table(data_dir, MIMIC_SPLIT, required=metadata_path is None)
    chexpert_path = find_table(data_dir, MIMIC_CHEXPERT, required=False)
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
        check_label_columns(label_columns, chexpert_path)
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
            paths = [require_image(study_dir / f"{dicom_id}.jpg") for _, dicom_id, _ in chosen]
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
    return collect((study_builder(s, t, c) for (s, t), c in sorted(studies.items())), skip)
