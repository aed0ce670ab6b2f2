"""Turn a dataset source into the bundle's dataset folder: datalist.json, tokenizer.json and summary.json.

Sources: embedded (the generated default dataset, written in the MIMIC-CXR-JPG layout and read back with the
MIMIC reader), mimic, iu_xray, r2gen, csv (also .jsonl), dicom_dir, nifti_dir. ``scripts/prepare_data.py`` is
the command line for :func:`prepare_data`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from .datalist import (
    DATALIST_NAME,
    SPLITS,
    build_datalist,
    heldout_text_overlap,
    write_dataset,
)
from .errors import DataError, SkipCounter
from .labels import DEFAULT_CLASSES, UNCERTAIN_POLICIES, check_class_names
from .reports import DEFAULT_SECTIONS
from .sources import SOURCES, read_mimic_cxr_jpg

CHOICES: tuple[str, ...] = ("embedded", *SOURCES)
logger = logging.getLogger(__name__)


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    """Fire passes ``a,b`` as a tuple and ``"A b,C"`` as a string; both become a list of names."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


def embedded_raw(
    raw_dir: Path,
    num_items: int,
    seed: int,
    image_size: int,
    report_source: str = "auto",
    use_real_masks: bool | str = "auto",
    overwrite: bool = False,
) -> dict:
    """Generate the embedded dataset into ``raw_dir`` unless it already holds one made with the same settings.

    The settings of an existing one are read from the summary that ``make_embedded_dataset`` writes beside it;
    one whose summary has no ``distinct_reports`` (held-out report text not kept out of training) is not reused:
    it is regenerated with ``overwrite``, else refused.
    """
    from .embedded import SUMMARY_JSON, make_embedded_dataset

    wanted = {"num_items": int(num_items), "seed": int(seed), "image_size": int(image_size)}
    previous_path = raw_dir / SUMMARY_JSON
    if previous_path.is_file():
        previous = json.loads(previous_path.read_text())
        masks = {True: "real", False: "procedural"}.get(use_real_masks, "auto")
        same = all(previous.get(k) == v for k, v in wanted.items())
        same = same and report_source in ("auto", previous.get("report_source"))
        disjoint = "distinct_reports" in previous  # written by a generator that keeps held-out text disjoint
        if same and disjoint and masks in ("auto", previous.get("lung_masks")):
            return {"reused": True, **{k: previous.get(k) for k in [*wanted, "report_source", "lung_masks"]}}
        if same and not disjoint and not overwrite:
            raise FileExistsError(
                f"{raw_dir} holds an embedded dataset whose held-out report text may repeat training text (no "
                f"'distinct_reports' in its {SUMMARY_JSON}); pass --overwrite to regenerate it"
            )
        if not overwrite:
            found = {k: previous.get(k) for k in [*wanted, "report_source", "lung_masks"]}
            asked = dict(wanted, report_source=report_source, lung_masks=masks)
            raise FileExistsError(
                f"{raw_dir} holds an embedded dataset made with {found}, not {asked}; "
                "pass --overwrite to regenerate it or choose another --data_dir"
            )
    start = time.perf_counter()
    result = make_embedded_dataset(
        raw_dir,
        num_items=num_items,
        seed=seed,
        image_size=image_size,
        report_source=report_source,
        use_real_masks=use_real_masks,
        overwrite=overwrite,
    )
    seconds = round(time.perf_counter() - start, 1)
    made = {k: result.get(k) for k in ("report_source", "lung_masks")}
    return {"reused": False, "seconds": seconds, **wanted, **made}


def read_source(source: str, data_dir: str | None, sections: list[str], skip: SkipCounter, **options) -> list[dict]:
    """Records of one source; ``options`` are the source-specific settings from the command line."""
    if source in ("csv", "jsonl"):
        table = options.get("table") or data_dir
        if not table:
            raise ValueError("--source csv needs the table: --data_dir path/to/table.csv (or --table)")
        return SOURCES[source](
            table,
            image_col=options["image_col"],
            report_col=options["report_col"],
            subject_col=options["subject_col"],
            label_cols=options.get("label_cols"),
            base_dir=options.get("base_dir"),
            sections=sections,
            skip=skip,
        )
    if source == "r2gen":
        annotation = options.get("annotation") or (Path(data_dir) / "annotation.json" if data_dir else None)
        if annotation is None:
            raise ValueError("--source r2gen needs --annotation path/to/annotation.json (or --data_dir)")
        images_dir = options.get("images_dir") or (Path(data_dir) / "images" if data_dir else None)
        return SOURCES[source](annotation, images_dir, sections=sections, skip=skip)
    if not data_dir:
        raise ValueError(f"--source {source} needs --data_dir")
    if source == "mimic":
        return read_mimic_cxr_jpg(
            data_dir,
            reports_dir=options.get("reports_dir"),
            views=options.get("views"),
            all_images=bool(options.get("all_images")),
            sections=sections,
            skip=skip,
        )
    if source == "iu_xray":
        return SOURCES[source](
            data_dir,
            reports_dir=options.get("reports_dir"),
            images_dir=options.get("images_dir"),
            view_table=options.get("view_table", "auto"),
            sections=sections,
            skip=skip,
        )
    if source == "dicom_dir":
        views = options.get("dicom_views")
        return SOURCES[source](data_dir, reports=options.get("reports"), views=views, sections=sections, skip=skip)
    return SOURCES[source](data_dir, reports=options.get("reports"), sections=sections, skip=skip)


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


def prepare_data(
    source: str = "embedded",
    out_dir: str | None = None,
    data_dir: str | None = None,
    num_items: int = 2000,
    seed: int = 0,
    image_size: int = 256,
    report_source: str = "auto",
    use_real_masks: bool | str = "auto",
    classes: str | Sequence[str] | None = None,
    uncertain: str = "zeros",
    sections: str | Sequence[str] = "findings,impression",
    min_count: int = 6,
    skip_bad: bool = False,
    verify_images: bool = True,
    overwrite: bool = False,
    split: str = "auto",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    reports_dir: str | None = None,
    images_dir: str | None = None,
    annotation: str | None = None,
    views: str | Sequence[str] | None = "PA,AP",
    all_images: bool = False,
    view_table: str | None = "auto",
    table: str | None = None,
    image_col: str = "image",
    report_col: str = "report",
    subject_col: str = "subject",
    label_cols: str | Sequence[str] | None = None,
    base_dir: str | None = None,
    reports: str | None = None,
    dicom_views: str | Sequence[str] | None = None,
    num_workers: int = 2,
    quiet: bool = False,
) -> dict:
    """Prepare a dataset folder for training and return its summary.

    Args:
        source: one of embedded, mimic, iu_xray, r2gen, csv (also .jsonl), dicom_dir, nifti_dir.
        out_dir: the dataset folder to write (datalist.json, tokenizer.json, summary.json).
        data_dir: the source's folder (csv: the table file). embedded: where the raw MIMIC-layout data goes
            (default out_dir/raw); reused when it already holds the same num_items / seed / image_size.
        num_items: embedded: number of generated studies.
        seed: embedded generation seed, and the seed of the random patient-level split.
        image_size: embedded: side of the generated JPEGs.
        report_source: embedded: report text from "iu" (torchxrayvision's IU X-ray reports), "grammar" or "auto".
        use_real_masks: embedded: lung shapes from torchxrayvision's masks (True), procedural (False) or "auto".
        classes: conditioning classes, comma separated CheXpert names (default: the bundle's 7 classes).
        uncertain: policy for uncertain labels: zeros, ones or ignore.
        sections: report sections to keep, comma separated.
        min_count: the tokenizer keeps words seen at least this often in training reports (6 in the paper).
        skip_bad: skip and count bad items instead of stopping at the first one.
        verify_images: load every image once to catch corrupt files before training does.
        overwrite: replace an existing datalist.json (and a different embedded raw dataset).
        split: auto (official splits when the source has them), official, or random (patient-level).
        val_fraction: random split: share of patients for validation.
        test_fraction: random split: share of patients for test.
        reports_dir: mimic: the MIMIC-CXR reports folder (default data_dir); iu_xray: the XML folder or .tgz.
        images_dir: iu_xray: the PNG folder (default data_dir/NLMCXR_png); r2gen: the images folder.
        annotation: r2gen: annotation.json (default data_dir/annotation.json).
        views: mimic / embedded: ViewPosition values to keep, in order of preference.
        all_images: mimic: keep every image of a study with a wanted view instead of one.
        view_table: iu_xray: image id -> view CSV; "auto" uses torchxrayvision's installed table; None: none.
        table: csv: the table (instead of data_dir).
        image_col: csv: column of image paths.
        report_col: csv: column of report text or .txt paths.
        subject_col: csv: column of patient ids.
        label_cols: csv: CheXpert-named label columns (default: every column named like one).
        base_dir: csv: folder that relative paths start from (default: the table's folder).
        reports: dicom_dir / nifti_dir: a CSV / JSONL table of reports keyed by file stem (or DICOM UIDs).
        dicom_views: dicom_dir: ViewPosition values to keep.
        num_workers: threads used to verify images.
        quiet: do not print the summary.
    """
    start = time.perf_counter()
    if source not in CHOICES:
        raise ValueError(f"unknown --source {source!r}; choose one of: {', '.join(CHOICES)}")
    if out_dir is None:
        raise ValueError("--out_dir is required (the dataset folder to write)")
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"unknown --uncertain {uncertain!r}; choose one of: {', '.join(UNCERTAIN_POLICIES)}")
    class_names = check_class_names(_names(classes) or list(DEFAULT_CLASSES), source="--classes")
    section_names = [s.lower() for s in _names(sections) or []]
    if not section_names:
        raise ValueError("--sections must name at least one report section, e.g. findings,impression")
    out_path = Path(out_dir)
    if (out_path / DATALIST_NAME).exists() and not overwrite:
        raise FileExistsError(f"{out_path / DATALIST_NAME} already exists; pass --overwrite to replace it")

    skip = SkipCounter(skip_bad=bool(skip_bad))
    extra: dict = {}
    if source == "embedded":
        raw_dir = Path(data_dir) if data_dir else out_path / "raw"
        extra["embedded"] = embedded_raw(
            raw_dir, num_items, seed, image_size, report_source, use_real_masks, overwrite=bool(overwrite)
        )
        extra["data_dir"] = str(raw_dir.resolve())
        records = read_mimic_cxr_jpg(raw_dir, views=_names(views), sections=section_names, skip=skip)
    else:
        records = read_source(
            source,
            data_dir,
            section_names,
            skip,
            reports_dir=reports_dir,
            images_dir=images_dir,
            annotation=annotation,
            views=_names(views),
            all_images=all_images,
            view_table=view_table,
            table=table,
            image_col=image_col,
            report_col=report_col,
            subject_col=subject_col,
            label_cols=_names(label_cols),
            base_dir=base_dir,
            reports=reports,
            dicom_views=_names(dicom_views),
        )
        extra["data_dir"] = str(Path(table or data_dir or annotation).resolve())
    if not records:
        reasons = skip.summary()["reasons"]
        raise DataError(extra["data_dir"], f"no items found for --source {source} (skipped: {reasons or 'none'})")

    datalist = build_datalist(
        records,
        class_names=class_names,
        uncertain=uncertain,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        verify_images=bool(verify_images),
        skip=skip,
        source=source,
        sections=section_names,
        split=split,
        num_workers=num_workers,
    )
    overlap = check_heldout_text(datalist, source, section_names, extra["data_dir"])
    summary = write_dataset(datalist, out_path, min_count=min_count, overwrite=overwrite)
    summary.update(extra, heldout_report_overlap={k: overlap[k] for k in SPLITS[1:]})
    summary["seconds"] = round(time.perf_counter() - start, 1)
    (out_path / "summary.json").write_text(json.dumps(summary, indent=1))
    if not quiet:
        print(format_summary(summary))
    return summary
