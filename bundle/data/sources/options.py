"""Each source's settings as ``prepare_data`` takes them: where its files are and how its reader is called.

One dataclass per ``--source`` (:data:`SOURCE_OPTIONS`); its fields are that source's command-line flags.
``location`` resolves ``--data_dir`` (and the source's own path flags) to the file or folder the summary names,
``read`` returns the records. A new source adds its reader module beside this one and its options class below,
registered in :data:`SOURCE_OPTIONS`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..errors import SkipCounter
from .common import Record
from .folders import read_dicom_dir, read_nifti_dir
from .iu_xray import read_iu_xray
from .mimic import read_mimic_cxr_jpg
from .r2gen import read_r2gen_annotation
from .table import read_table


def _required(data_dir: str | None, source: str) -> Path:
    """``data_dir`` as a path; a source that reads a folder cannot go without one."""
    if not data_dir:
        raise ValueError(f"--source {source} needs --data_dir")
    return Path(data_dir)


@dataclass
class SourceOptions:
    """A source's own settings (a subclass's fields are its flags).

    ``location`` resolves ``data_dir`` (default for a source that reads a folder: required) to the file or folder
    the summary names; ``read`` returns the records found there.
    """

    source: ClassVar[str] = ""

    def location(self, data_dir: str | None, out_dir: Path) -> Path:
        return _required(data_dir, self.source)

    def read(self, location: Path, sections: Sequence[str], skip: SkipCounter) -> list[Record]:
        raise NotImplementedError


@dataclass
class EmbeddedOptions(SourceOptions):
    """The generated default dataset: written to ``data_dir`` (default ``out_dir/raw``) in the MIMIC-CXR-JPG layout
    and read back with the MIMIC reader.

    Attributes:
        num_items: number of generated studies.
        image_size: side of the generated JPEGs.
        report_source: report text from "iu" (torchxrayvision's IU X-ray reports), "grammar" or "auto".
        use_real_masks: lung shapes from torchxrayvision's masks (True), procedural (False) or "auto".
        views: ViewPosition values to keep, in order of preference.
    """

    source: ClassVar[str] = "embedded"
    num_items: int = 2000
    image_size: int = 256
    report_source: str = "auto"
    use_real_masks: bool | str = "auto"
    views: str | Sequence[str] | None = ("PA", "AP")

    def location(self, data_dir: str | None, out_dir: Path) -> Path:
        return Path(data_dir) if data_dir else out_dir / "raw"

    def read(self, location: Path, sections: Sequence[str], skip: SkipCounter) -> list[Record]:
        return read_mimic_cxr_jpg(location, views=self.views, sections=sections, skip=skip)

    def generate(self, raw_dir: Path, seed: int, overwrite: bool = False) -> dict:
        """Generate the dataset into ``raw_dir`` unless it already holds one made with the same settings.

        The settings of an existing one are read from the summary that ``make_embedded_dataset`` writes beside
        it; one whose summary has no ``distinct_reports`` (held-out report text not kept out of training) is not
        reused: it is regenerated with ``overwrite``, else refused.
        """
        from ..embedded import SUMMARY_JSON, make_embedded_dataset

        wanted = {"num_items": int(self.num_items), "seed": int(seed), "image_size": int(self.image_size)}
        kept = [*wanted, "report_source", "lung_masks"]
        previous_path = raw_dir / SUMMARY_JSON
        if previous_path.is_file():
            previous = json.loads(previous_path.read_text())
            masks = {True: "real", False: "procedural"}.get(self.use_real_masks, "auto")
            same = all(previous.get(k) == v for k, v in wanted.items())
            same = same and self.report_source in ("auto", previous.get("report_source"))
            disjoint = "distinct_reports" in previous  # written by a generator that keeps held-out text disjoint
            if same and disjoint and masks in ("auto", previous.get("lung_masks")):
                return {"reused": True, **{k: previous.get(k) for k in kept}}
            if same and not disjoint and not overwrite:
                raise FileExistsError(
                    f"{raw_dir} holds an embedded dataset whose held-out report text may repeat training text (no "
                    f"'distinct_reports' in its {SUMMARY_JSON}); pass --overwrite to regenerate it"
                )
            if not overwrite:
                found = {k: previous.get(k) for k in kept}
                asked = dict(wanted, report_source=self.report_source, lung_masks=masks)
                raise FileExistsError(
                    f"{raw_dir} holds an embedded dataset made with {found}, not {asked}; "
                    "pass --overwrite to regenerate it or choose another --data_dir"
                )
        start = time.perf_counter()
        result = make_embedded_dataset(
            raw_dir,
            num_items=self.num_items,
            seed=seed,
            image_size=self.image_size,
            report_source=self.report_source,
            use_real_masks=self.use_real_masks,
            overwrite=overwrite,
        )
        seconds = round(time.perf_counter() - start, 1)
        made = {k: result.get(k) for k in ("report_source", "lung_masks")}
        return {"reused": False, "seconds": seconds, **wanted, **made}


@dataclass
class MimicOptions(SourceOptions):
    """MIMIC-CXR-JPG in ``data_dir``.

    Attributes:
        reports_dir: the MIMIC-CXR reports folder (default data_dir).
        views: ViewPosition values to keep, in order of preference (None: every view).
        all_images: keep every image of a study with a wanted view instead of one.
    """

    source: ClassVar[str] = "mimic"
    reports_dir: str | None = None
    views: str | Sequence[str] | None = ("PA", "AP")
    all_images: bool = False

    def read(self, location: Path, sections: Sequence[str], skip: SkipCounter) -> list[Record]:
        return read_mimic_cxr_jpg(
            location,
            reports_dir=self.reports_dir,
            views=self.views,
            all_images=bool(self.all_images),
            sections=sections,
            skip=skip,
        )


@dataclass
class IUXrayOptions(SourceOptions):
    """IU X-ray / Open-i in ``data_dir``.

    Attributes:
        reports_dir: the XML folder or NLMCXR_reports.tgz (default: found in data_dir).
        images_dir: the PNG folder (default data_dir/NLMCXR_png).
        view_table: image id -> view CSV; "auto" uses torchxrayvision's installed table; None: none.
    """

    source: ClassVar[str] = "iu_xray"
    reports_dir: str | None = None
    images_dir: str | None = None
    view_table: str | None = "auto"

    def read(self, location: Path, sections: Sequence[str], skip: SkipCounter) -> list[Record]:
        return read_iu_xray(
            location,
            reports_dir=self.reports_dir,
            images_dir=self.images_dir,
            view_table=self.view_table,
            sections=sections,
            skip=skip,
        )


@dataclass
class R2GenOptions(SourceOptions):
    """R2Gen's annotation.json: ``data_dir`` is the file or the folder that holds it.

    Attributes:
        annotation: the annotation.json (instead of data_dir).
        images_dir: the images folder (default: ``images`` beside the annotation).
    """

    source: ClassVar[str] = "r2gen"
    annotation: str | None = None
    images_dir: str | None = None

    def location(self, data_dir: str | None, out_dir: Path) -> Path:
        if not (data_dir or self.annotation):
            raise ValueError("--source r2gen needs --annotation path/to/annotation.json (or --data_dir)")
        return Path(data_dir or self.annotation)

    def read(self, location: Path, sections: Sequence[str], skip: SkipCounter) -> list[Record]:
        annotation = Path(self.annotation) if self.annotation else location
        if annotation.is_dir():
            annotation = annotation / "annotation.json"
        images_dir = self.images_dir or (location / "images" if location.is_dir() else None)
        return read_r2gen_annotation(annotation, images_dir, sections=sections, skip=skip)


@dataclass
class TableOptions(SourceOptions):
    """A CSV / TSV / JSON Lines table with one row per image: ``data_dir`` (or ``table``) is the file.

    Attributes:
        table: the table (instead of data_dir).
        image_col: column of image paths.
        report_col: column of report text or .txt paths.
        subject_col: column of patient ids.
        label_cols: CheXpert-named label columns (default: every column named like one).
        base_dir: folder that relative paths start from (default: the table's folder).
    """

    source: ClassVar[str] = "csv"
    table: str | None = None
    image_col: str = "image"
    report_col: str = "report"
    subject_col: str = "subject"
    label_cols: str | Sequence[str] | None = None
    base_dir: str | None = None

    def location(self, data_dir: str | None, out_dir: Path) -> Path:
        if not (self.table or data_dir):
            raise ValueError("--source csv needs the table: --data_dir path/to/table.csv (or --table)")
        return Path(self.table or data_dir)

    def read(self, location: Path, sections: Sequence[str], skip: SkipCounter) -> list[Record]:
        return read_table(
            location,
            image_col=self.image_col,
            report_col=self.report_col,
            subject_col=self.subject_col,
            label_cols=self.label_cols,
            base_dir=self.base_dir,
            sections=sections,
            skip=skip,
        )


@dataclass
class DicomDirOptions(SourceOptions):
    """A folder of DICOM files with sibling .txt reports or a reports table.

    Attributes:
        reports: a CSV / JSONL table of reports keyed by file stem or DICOM UIDs.
        dicom_views: ViewPosition values to keep.
    """

    source: ClassVar[str] = "dicom_dir"
    reports: str | None = None
    dicom_views: str | Sequence[str] | None = None

    def read(self, location: Path, sections: Sequence[str], skip: SkipCounter) -> list[Record]:
        views = self.dicom_views
        return read_dicom_dir(location, reports=self.reports, views=views, sections=sections, skip=skip)


@dataclass
class NiftiDirOptions(SourceOptions):
    """A folder of NIfTI files with sibling .txt reports or a reports table.

    Attributes:
        reports: a CSV / JSONL table of reports keyed by file stem.
    """

    source: ClassVar[str] = "nifti_dir"
    reports: str | None = None

    def read(self, location: Path, sections: Sequence[str], skip: SkipCounter) -> list[Record]:
        return read_nifti_dir(location, reports=self.reports, sections=sections, skip=skip)


#: ``--source`` name -> its options class. ``jsonl`` reads like ``csv``; ``nifti`` is an alias of ``nifti_dir``.
SOURCE_OPTIONS: dict[str, type[SourceOptions]] = {
    "embedded": EmbeddedOptions,
    "mimic": MimicOptions,
    "iu_xray": IUXrayOptions,
    "r2gen": R2GenOptions,
    "csv": TableOptions,
    "jsonl": TableOptions,
    "dicom_dir": DicomDirOptions,
    "nifti_dir": NiftiDirOptions,
    "nifti": NiftiDirOptions,
}
