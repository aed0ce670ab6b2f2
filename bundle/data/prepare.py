"""Turn a dataset source into the bundle's dataset folder: datalist.json, tokenizer.json and summary.json.

Sources: embedded (the generated default dataset, written in the MIMIC-CXR-JPG layout and read back with the
MIMIC reader), mimic, iu_xray, r2gen, csv (also .jsonl), dicom_dir, nifti_dir. Each source has a small options
object (:data:`SOURCE_OPTIONS`) that knows where its files are and calls its reader in :mod:`bundle.data.sources`;
:class:`DatasetOptions` holds what every source shares (classes, sections, split, tokenizer, checks).
:func:`prepare_dataset` takes these objects; :func:`prepare_data` takes the same settings as flat keywords, as the
command line ``scripts/prepare_data.py`` gives them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .datalist import DATALIST_NAME, SPLITS, build_datalist, heldout_text_overlap, write_dataset
from .errors import DataError, SkipCounter
from .labels import DEFAULT_CLASSES, UNCERTAIN_POLICIES, check_class_names
from .reports import DEFAULT_SECTIONS
from .sources.options import (
    SOURCE_OPTIONS,
    DicomDirOptions,
    EmbeddedOptions,
    IUXrayOptions,
    MimicOptions,
    NiftiDirOptions,
    R2GenOptions,
    SourceOptions,
    TableOptions,
)

__all__ = [
    "CHOICES",
    "SOURCE_OPTIONS",
    "DatasetOptions",
    "DicomDirOptions",
    "EmbeddedOptions",
    "IUXrayOptions",
    "MimicOptions",
    "NiftiDirOptions",
    "R2GenOptions",
    "SourceOptions",
    "TableOptions",
    "check_heldout_text",
    "format_summary",
    "option_names",
    "prepare_data",
    "prepare_dataset",
    "split_options",
]

logger = logging.getLogger(__name__)

CHOICES: tuple[str, ...] = tuple(SOURCE_OPTIONS)


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    """Fire passes ``a,b`` as a tuple and ``"A b,C"`` as a string; both become a list of names."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


# ---------------------------------------------------------------------------------------------- shared options
@dataclass
class DatasetOptions:
    """How records become the dataset folder, whatever the source.

    Attributes:
        classes: conditioning classes, CheXpert names (a list or ``"A,B"``; default: the bundle's 7 classes).
        uncertain: policy for uncertain labels: zeros, ones or ignore.
        sections: report sections to keep (a list or ``"findings,impression"``).
        min_count: the tokenizer keeps words seen at least this often in training reports (6 in the paper).
        split: auto (official splits when the source has them), official, or random (patient-level).
        val_fraction: random split: share of patients for validation.
        test_fraction: random split: share of patients for test.
        seed: seed of the random patient-level split (and of the embedded dataset's generation).
        skip_bad: skip and count bad items instead of stopping at the first one.
        verify_images: load every image once to catch corrupt files before training does.
        num_workers: threads used to verify images.
    """

    classes: str | Sequence[str] | None = None
    uncertain: str = "zeros"
    sections: str | Sequence[str] = "findings,impression"
    min_count: int = 6
    split: str = "auto"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    skip_bad: bool = False
    verify_images: bool = True
    num_workers: int = 2

    def __post_init__(self) -> None:
        if self.uncertain not in UNCERTAIN_POLICIES:
            raise ValueError(f"unknown --uncertain {self.uncertain!r}; choose one of: {', '.join(UNCERTAIN_POLICIES)}")
        self.classes = check_class_names(_names(self.classes) or list(DEFAULT_CLASSES), source="--classes")
        self.sections = [s.lower() for s in _names(self.sections) or []]
        if not self.sections:
            raise ValueError("--sections must name at least one report section, e.g. findings,impression")


# ---------------------------------------------------------------------------------------------- source options


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def option_names() -> set[str]:
    """Every keyword :func:`prepare_data` takes besides source, out_dir, data_dir, overwrite and quiet."""
    return _field_names(DatasetOptions).union(*(_field_names(cls) for cls in SOURCE_OPTIONS.values()))


def split_options(source: str, options: dict[str, Any]) -> tuple[SourceOptions, DatasetOptions]:
    """Flat keywords -> (the source's options, the dataset options), checked before any work.

    A name no source knows is a ``ValueError`` listing the valid ones; one that belongs to another source only is
    logged and ignored.
    """
    if source not in SOURCE_OPTIONS:
        raise ValueError(f"unknown --source {source!r}; choose one of: {', '.join(CHOICES)}")
    unknown = sorted(set(options) - option_names())
    if unknown:
        flags = ", ".join(f"--{n}" for n in unknown)
        valid = ", ".join(f"--{n}" for n in sorted(option_names() | {"source", "out_dir", "data_dir"}))
        raise ValueError(f"unknown option(s) {flags}; valid options: {valid}, --overwrite, --quiet")
    cls = SOURCE_OPTIONS[source]
    own, shared = _field_names(cls), _field_names(DatasetOptions)
    ignored = sorted(set(options) - own - shared)
    if ignored:
        logger.warning("--source %s ignores %s", source, ", ".join(f"--{n}" for n in ignored))
    source_options = cls(**{k: v for k, v in options.items() if k in own})
    return source_options, DatasetOptions(**{k: v for k, v in options.items() if k in shared})


def check_heldout_text(datalist: dict, source: str, sections: Sequence[str], data_dir: str) -> dict[str, int]:
    """Count validation / test reports that repeat a training report (normalised text) and act on the count.

    Real data legitimately repeats short normal reports, so there a count above 0 is a warning (logged and kept
    in the summary's warnings). The embedded dataset promises disjoint FINDINGS + IMPRESSION text across its own
    splits, so with those sections and its official split a count above 0 raises :class:`DataError`; with other
    sections or a random re-split the promise does not apply and the count is a warning too.
    """
    overlap = heldout_text_overlap(datalist)
    if not overlap["total"]:
        return overlap
    message = (
        f"{overlap['validation']} validation and {overlap['test']} test reports repeat a training report's "
        "text (case, punctuation and spacing ignored)"
    )
    if source == "embedded":
        if datalist["split"] == "official" and tuple(sections) == DEFAULT_SECTIONS:
            raise DataError(
                data_dir,
                f"{message}, although the embedded dataset keeps held-out report text out of "
                "training: were its files changed? delete the folder to regenerate it",
            )
        message += " (the embedded data keeps FINDINGS + IMPRESSION text disjoint only across its own splits)"
    datalist["warnings"].append(message)
    logger.warning("%s", message)
    return overlap


def format_summary(summary: dict) -> str:
    """A few lines a person reads after the run."""
    lines = [f"source {summary['source']}: split {summary['split']}, sections {', '.join(summary['sections'])}"]
    counts, subjects = summary["counts"], summary["subjects"]
    lines.append("items:    " + ", ".join(f"{n} {counts[n]} ({subjects[n]} subjects)" for n in SPLITS))
    lines.append("label prevalence (training / validation / test):")
    for name in summary["class_names"]:
        values = " / ".join(f"{summary['label_prevalence'][s][name]:.2f}" for s in SPLITS)
        lines.append(f"  {name:<28} {values}")
    excluded = summary["excluded"]
    duplicates = excluded.get("duplicates", {})
    lines.append(f"duplicates removed: {sum(duplicates.values())} {duplicates if duplicates else ''}".rstrip())
    lines.append(f"skipped: {excluded.get('skipped', 0)} {excluded.get('reasons') or ''}".rstrip())
    lines.append(f"vocabulary: {summary['vocab_size']} words (min count {summary['min_count']})")
    overlap = summary.get("heldout_report_overlap")
    if overlap is not None:
        lines.append(
            f"held-out reports repeating a training report: validation {overlap['validation']}, test {overlap['test']}"
        )
    lines += [f"warning: {w}" for w in summary.get("warnings", [])]
    for key, path in summary["files"].items():
        lines.append(f"{key + ':':<10} {path}")
    if "embedded" in summary:
        e = summary["embedded"]
        how = "reused" if e.get("reused") else f"generated in {e.get('seconds')} s"
        lines.append(f"raw data: {summary['data_dir']} ({how})")
    lines.append(f"took {summary['seconds']} s")
    return "\n".join(lines)


def prepare_dataset(
    source: str,
    out_dir: str | Path,
    data_dir: str | None = None,
    options: SourceOptions | None = None,
    dataset: DatasetOptions | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> dict:
    """Prepare a dataset folder for training from option objects and return its summary.

    ``options`` must be the source's options class (:data:`SOURCE_OPTIONS`; default: its defaults). ``overwrite``
    replaces an existing datalist.json (and, for embedded, a raw dataset made with other settings); ``quiet``
    does not print the summary.
    """
    start = time.perf_counter()
    if source not in SOURCE_OPTIONS:
        raise ValueError(f"unknown --source {source!r}; choose one of: {', '.join(CHOICES)}")
    options = options if options is not None else SOURCE_OPTIONS[source]()
    if not isinstance(options, SOURCE_OPTIONS[source]):
        raise TypeError(f"--source {source} takes {SOURCE_OPTIONS[source].__name__}, not {type(options).__name__}")
    dataset = dataset if dataset is not None else DatasetOptions()
    if out_dir is None:
        raise ValueError("--out_dir is required (the dataset folder to write)")
    out_path = Path(out_dir)
    if (out_path / DATALIST_NAME).exists() and not overwrite:
        raise FileExistsError(f"{out_path / DATALIST_NAME} already exists; pass --overwrite to replace it")

    location = options.location(data_dir, out_path)
    extra: dict = {}
    if isinstance(options, EmbeddedOptions):
        extra["embedded"] = options.generate(location, dataset.seed, overwrite=bool(overwrite))
    extra["data_dir"] = str(location.resolve())
    skip = SkipCounter(skip_bad=bool(dataset.skip_bad))
    records = options.read(location, dataset.sections, skip)
    if not records:
        reasons = skip.summary()["reasons"]
        raise DataError(extra["data_dir"], f"no items found for --source {source} (skipped: {reasons or 'none'})")

    datalist = build_datalist(
        records,
        class_names=dataset.classes,
        uncertain=dataset.uncertain,
        val_fraction=dataset.val_fraction,
        test_fraction=dataset.test_fraction,
        seed=dataset.seed,
        verify_images=bool(dataset.verify_images),
        skip=skip,
        source=source,
        sections=dataset.sections,
        split=dataset.split,
        num_workers=dataset.num_workers,
    )
    overlap = check_heldout_text(datalist, source, dataset.sections, extra["data_dir"])
    summary = write_dataset(datalist, out_path, min_count=dataset.min_count, overwrite=overwrite)
    summary.update(extra, heldout_report_overlap={k: overlap[k] for k in SPLITS[1:]})
    summary["seconds"] = round(time.perf_counter() - start, 1)
    (out_path / "summary.json").write_text(json.dumps(summary, indent=1))
    if not quiet:
        print(format_summary(summary))
    return summary


def prepare_data(
    source: str = "embedded",
    out_dir: str | None = None,
    data_dir: str | None = None,
    *,
    overwrite: bool = False,
    quiet: bool = False,
    **options: Any,
) -> dict:
    """Prepare a dataset folder for training from flat settings (the command line's flags) and return its summary.

    Args:
        source: one of embedded, mimic, iu_xray, r2gen, csv (also jsonl), dicom_dir, nifti_dir.
        out_dir: the dataset folder to write (datalist.json, tokenizer.json, summary.json).
        data_dir: the source's folder (csv: the table file; r2gen: annotation.json or its folder). embedded:
            where the raw MIMIC-layout data goes (default out_dir/raw); reused when it already holds the same
            num_items / seed / image_size.
        overwrite: replace an existing datalist.json (and a different embedded raw dataset).
        quiet: do not print the summary.
        options: the fields of :class:`DatasetOptions` (every source: classes, uncertain, sections, min_count,
            split, val_fraction, test_fraction, seed, skip_bad, verify_images, num_workers) and of the source's
            options class: embedded (:class:`EmbeddedOptions`: num_items, image_size, report_source,
            use_real_masks, views), mimic (:class:`MimicOptions`: reports_dir, views, all_images), iu_xray
            (:class:`IUXrayOptions`: reports_dir, images_dir, view_table), r2gen (:class:`R2GenOptions`:
            annotation, images_dir), csv / jsonl (:class:`TableOptions`: table, image_col, report_col,
            subject_col, label_cols, base_dir), dicom_dir (:class:`DicomDirOptions`: reports, dicom_views),
            nifti_dir (:class:`NiftiDirOptions`: reports). An unknown name is a ``ValueError`` before any work;
            a name of another source is logged and ignored.
    """
    source_options, dataset = split_options(source, options)
    return prepare_dataset(source, out_dir, data_dir, source_options, dataset, overwrite=overwrite, quiet=quiet)
