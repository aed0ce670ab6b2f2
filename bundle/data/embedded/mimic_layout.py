"""The MIMIC-CXR-JPG layout the embedded dataset is written in: file names, ids, splits, report text files.

``files/pNN/pSUBJECT/sSTUDY/DICOM_ID.jpg``, reports at ``files/pNN/pSUBJECT/sSTUDY.txt`` (laid out as
MIMIC-CXR's free-text reports), and the CSVs the real MIMIC-CXR-JPG reader loads. :func:`report_text_key` reads
a report back with that reader's own functions, so two reports with the same key are the same text to the
held-out text check of the data preparation.
"""

from __future__ import annotations

import csv
import io
import shutil
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..labels import CHEXPERT_CLASSES, DEFAULT_CLASSES

#: The MIMIC-CXR-JPG tables, then the embedded dataset's own files: what each image was drawn from, and the summary.
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv"
GROUND_TRUTH_CSV = "embedded-ground-truth.csv"
SUMMARY_JSON = "embedded-summary.json"
WRITTEN_FILES = (CHEXPERT_CSV, SPLIT_CSV, METADATA_CSV, GROUND_TRUTH_CSV, SUMMARY_JSON)


def unique_ids(rng: np.random.Generator, count: int, low: int, high: int) -> list[int]:
    """``count`` distinct integers in [low, high), in draw order (subject and study ids)."""
    ids: list[int] = []
    seen: set[int] = set()
    while len(ids) < count:
        for value in rng.integers(low, high, size=2 * (count - len(ids)) + 4).tolist():
            if value not in seen and len(ids) < count:
                seen.add(value)
                ids.append(value)
    return ids


def random_dicom_id(rng: np.random.Generator) -> str:
    """A MIMIC-style image id: five 8-digit hex groups."""
    return "-".join(f"{int(x):08x}" for x in rng.integers(0, 2**32, size=5, dtype=np.uint64))


def split_subjects(rng: np.random.Generator, subjects: int, val_fraction: float, test_fraction: float) -> list[str]:
    """Each subject's split (train / validate / test) in proportion to the fractions; from three subjects on,
    a non-zero fraction gets at least one subject and training keeps at least one."""
    order = rng.permutation(subjects)
    n_test = int(round(test_fraction * subjects))
    n_val = int(round(val_fraction * subjects))
    if subjects >= 3:
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
    n_test = min(n_test, max(subjects - 1, 0))
    n_val = min(n_val, max(subjects - 1 - n_test, 0))
    split = ["train"] * subjects
    for k, s in enumerate(order):
        split[s] = "test" if k < n_test else "validate" if k < n_test + n_val else "train"
    return split


def _wrap_section(text: str) -> str:
    """Section text wrapped at 76 columns, indented one space as in MIMIC-CXR's files."""
    return "\n".join(" " + line for line in textwrap.wrap(text, 76)) if text else " "


def mimic_report_text(examination: str, indication: str, comparison: str, findings: str, impression: str) -> str:
    """A report laid out as MIMIC-CXR's free-text files are."""
    parts = [
        "                                 FINAL REPORT",
        f" EXAMINATION:  {examination}",
        "",
        f" INDICATION:  {indication or '___'}",
        "",
        f" COMPARISON:  {comparison or 'None.'}",
        "",
    ]
    if findings:
        parts += [" FINDINGS:", "", _wrap_section(findings), ""]
    parts += [" IMPRESSION:", "", _wrap_section(impression or "No acute cardiopulmonary process."), ""]
    return "\n".join(parts)


INDICATIONS = (
    "___-year-old man with shortness of breath.",
    "___-year-old woman with chest pain.",
    "Cough and fever.",
    "___-year-old man with dyspnea on exertion.",
    "Preoperative chest radiograph.",
    "Evaluate for acute process.",
    "___-year-old woman with hypoxia.",
    "Follow-up.",
    "Chest pain, rule out acute process.",
)
ICU_INDICATIONS = ("Intubated patient, evaluate tube position.", "Line placement.", "ICU patient, hypoxia.")


def label_cell(value: float | None) -> str:
    """A CheXpert CSV cell: blank for unmentioned, else 1.0 / 0.0 / -1.0."""
    return "" if value is None else f"{value:.1f}"


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite`` and it holds a previous embedded dataset."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise DataError(out_dir, "folder is not empty (pass overwrite=True to replace an embedded dataset there)")
        if not (out_dir / SUMMARY_JSON).is_file():
            raise DataError(
                out_dir,
                f"folder is not empty and holds no {SUMMARY_JSON}: refusing to overwrite data "
                "that make_embedded_dataset did not write",
            )
        if (out_dir / "files").is_dir():
            shutil.rmtree(out_dir / "files")
        for name in WRITTEN_FILES:
            if (out_dir / name).exists():
                (out_dir / name).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A CSV with ``\\n`` line ends (the same bytes on every platform)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def save_jpeg(image: np.ndarray, path: Path, quality: int = 95) -> None:
    """An 8-bit grayscale JPEG, as MIMIC-CXR-JPG stores its images."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="JPEG", quality=quality)
    path.write_bytes(buffer.getvalue())


def report_text(findings: str, impression: str) -> str:
    """FINDINGS and IMPRESSION joined, as the labeler reads a report."""
    return " ".join(t for t in (findings, impression) if t)


def report_text_key(findings: str, impression: str) -> str:
    """The normalised FINDINGS + IMPRESSION text a study's datalist item will hold.

    Read back from the written report layout with the MIMIC reader's own functions (so placeholders, list
    numbers and the default impression are treated as the reader treats them), then normalised by
    :func:`bundle.data.reports.normalise_report_text`: two reports with the same key are the same text to the
    held-out text check of the data preparation. Raises :class:`DataError` for a report the reader
    cannot use (no text left after cleaning).
    """
    from ..reports import DEFAULT_SECTIONS, extract_sections, normalise_report_text, select_sections

    layout = mimic_report_text("CHEST (PA AND LAT)", "", "", findings, impression)
    return normalise_report_text(select_sections(extract_sections(layout), DEFAULT_SECTIONS))


#: Columns of the metadata CSV (MIMIC-CXR-JPG's names) and of the embedded ground-truth CSV.
METADATA_HEADER = [
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
GROUND_TRUTH_HEADER = (
    ["dicom_id", "subject_id", "study_id", "split"]
    + list(DEFAULT_CLASSES)
    + [
        "ctr",
        "effusion_side",
        "effusion_severity",
        "pneumothorax_side",
        "pneumothorax_severity",
        "consolidation_side",
        "consolidation_zone",
        "edema_severity",
        "devices",
        "lung_shape",
        "view",
        "report_source",
        "report_id",
    ]
)


@dataclass
class StudyTables:
    """The CSV rows collected study by study, and the prevalence of each drawn class."""

    chexpert: list = field(default_factory=list)
    split: list = field(default_factory=list)
    metadata: list = field(default_factory=list)
    ground_truth: list = field(default_factory=list)
    prevalence: Counter = field(default_factory=Counter)

    def write(self, out_dir: Path) -> None:
        """The four CSVs of the layout (CheXpert labels, splits, metadata, ground truth)."""
        write_csv(out_dir / CHEXPERT_CSV, ["subject_id", "study_id"] + list(CHEXPERT_CLASSES), self.chexpert)
        write_csv(out_dir / SPLIT_CSV, ["dicom_id", "study_id", "subject_id", "split"], self.split)
        write_csv(out_dir / METADATA_CSV, METADATA_HEADER, self.metadata)
        write_csv(out_dir / GROUND_TRUTH_CSV, GROUND_TRUTH_HEADER, self.ground_truth)
