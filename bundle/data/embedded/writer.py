"""Writes the embedded dataset: each study's report and image, in the MIMIC-CXR-JPG layout.

See the package docstring (:mod:`bundle.data.embedded`) for what the dataset holds and how held-out report text
is kept out of training.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..labels import CHEXPERT_CLASSES, DEFAULT_CLASSES, NEGATIVE, POSITIVE, UNCERTAIN
from . import report_grammar
from .iu_reports import assign_report_splits, iu_report_pool, iu_reports_available, iu_sampler
from .lung_shapes import real_masks_usable
from .mimic_layout import (
    ICU_INDICATIONS,
    INDICATIONS,
    SUMMARY_JSON,
    StudyTables,
    label_cell,
    mimic_report_text,
    prepare_out_dir,
    random_dicom_id,
    report_text,
    report_text_key,
    save_jpeg,
    split_subjects,
    unique_ids,
)
from .patient import Patient, sample_patient
from .render import render_phantom
from .spec import PATHOLOGIES, complete_spec, sample_grammar_spec

REPORT_SOURCES = ("auto", "iu", "grammar")

_SPLIT_ORDER = ("train", "validate", "test")
#: Redraws of a grammar report whose text a held-out study shares with training, before giving up.
_MAX_REDRAWS = 50


@dataclass
class _StudyDraft:
    """One study's report, drawn before its image: the image is rendered later from the same ``rng``."""

    rng: np.random.Generator
    split: str
    dicom_id: str
    spec: dict
    findings: str
    impression: str
    report_id: str
    indication: str
    comparison: str
    key: str


def _draw_iu_reports(
    seed: int,
    study_splits: Sequence[str],
    val_fraction: float,
    test_fraction: float,
    normal_fraction: float,
    balance: float,
    out_dir: Path,
) -> tuple[list[_StudyDraft], dict[str, int]]:
    """Each study's IU report, sampled from the distinct reports of its own split; also the pool size per split."""
    pool = iu_report_pool()
    report_splits = assign_report_splits(pool, seed, val_fraction, test_fraction)
    samplers = {
        split: iu_sampler(pool, [i for i, s in enumerate(report_splits) if s == split], balance)
        for split in _SPLIT_ORDER
    }
    for split in sorted(set(study_splits)):
        if not (samplers[split].normal or samplers[split].abnormal):
            raise DataError(
                out_dir,
                f"no IU X-ray report left for the {split} split ({len(pool)} distinct reports "
                f"in all): lower its fraction or use report_source='grammar'",
            )
    drafts = []
    for item, split in enumerate(study_splits):
        rng = np.random.default_rng([seed, 2, item])
        dicom_id = random_dicom_id(rng)
        report = pool[samplers[split].pick(rng, normal_fraction)]
        drafts.append(
            _StudyDraft(
                rng,
                split,
                dicom_id,
                complete_spec(report.spec, rng),
                report.findings,
                report.impression,
                report.id,
                report.indication,
                report.comparison,
                report.key,
            )
        )
    return drafts, {split: len(samplers[split].normal) + len(samplers[split].abnormal) for split in _SPLIT_ORDER}


def _draw_grammar_reports(
    seed: int, study_splits: Sequence[str], normal_fraction: float, out_dir: Path
) -> list[_StudyDraft]:
    """Each study's grammar report; a held-out study whose text a training study has is rewritten.

    The rewrite keeps the study's label set and draws new wording from the study's own generator (at most
    ``_MAX_REDRAWS`` times), so the result stays a function of the seed. Raises :class:`DataError` when the
    grammar has no other wording left for it.
    """
    drafts = []
    for item, split in enumerate(study_splits):
        rng = np.random.default_rng([seed, 2, item])
        dicom_id = random_dicom_id(rng)
        spec = complete_spec(sample_grammar_spec(rng, normal_fraction), rng)
        text = report_grammar.compose_report(spec, rng)
        icu = "Support Devices" in spec
        indication = (ICU_INDICATIONS if icu else INDICATIONS)[int(rng.integers(3 if icu else 9))]
        drafts.append(
            _StudyDraft(
                rng,
                split,
                dicom_id,
                spec,
                text["findings"],
                text["impression"],
                "grammar",
                indication,
                "",
                report_text_key(text["findings"], text["impression"]),
            )
        )
    training = {d.key for d in drafts if d.split == "train"}
    for item, draft in enumerate(drafts):
        tries = 0
        while draft.split != "train" and draft.key in training:
            if tries == _MAX_REDRAWS:
                raise DataError(
                    out_dir,
                    f"study {item} ({draft.split}): the report grammar wrote only training "
                    f'text in {_MAX_REDRAWS} tries ("{draft.findings} {draft.impression}"); '
                    "use more varied label sets or another seed",
                )
            text = report_grammar.compose_report(draft.spec, draft.rng)
            draft.findings, draft.impression = text["findings"], text["impression"]
            draft.key = report_text_key(draft.findings, draft.impression)
            tries += 1
    return drafts


def _check_heldout_text(drafts: Sequence[_StudyDraft], out_dir: Path) -> None:
    """Raise :class:`DataError` if a validation / test study's report text is also a training study's text."""
    training = {d.key for d in drafts if d.split == "train"}
    shared = sum(d.split != "train" and d.key in training for d in drafts)
    if shared:
        raise DataError(out_dir, f"{shared} held-out studies have a training report's text")


def _distinct_reports(drafts: Sequence[_StudyDraft]) -> dict[str, int]:
    """Number of distinct normalised report texts the studies of each split use."""
    return {split: len({d.key for d in drafts if d.split == split}) for split in _SPLIT_ORDER}


# ------------------------------------------------------------------------------------------------ tables
#: Devices of intensive care patients, imaged mostly AP with a portable unit.
_PORTABLE_DEVICES = ("endotracheal tube", "nasogastric tube", "central line")


@dataclass(frozen=True)
class _Plan:
    """Subjects and studies of the dataset: how many studies each subject has, ids, splits, first study day."""

    studies_per_subject: list[int]
    subject_ids: list[int]
    study_ids: list[int]
    subject_splits: list[str]
    base_days: np.ndarray

    @property
    def study_splits(self) -> list[str]:
        return [split for split, count in zip(self.subject_splits, self.studies_per_subject) for _ in range(count)]


def _plan(seed: int, num_items: int, val_fraction: float, test_fraction: float) -> _Plan:
    """The plan, all from one generator: about 20% of subjects have two studies; splits are by subject."""
    rng = np.random.default_rng([seed, 0])
    studies_per_subject: list[int] = []
    remaining = num_items
    while remaining > 0:
        count = 2 if remaining >= 2 and rng.random() < 0.2 else 1
        studies_per_subject.append(count)
        remaining -= count
    subjects = len(studies_per_subject)
    subject_ids = unique_ids(rng, subjects, 10_000_000, 20_000_000)
    study_ids = unique_ids(rng, num_items, 50_000_000, 60_000_000)
    subject_splits = split_subjects(rng, subjects, val_fraction, test_fraction)
    base_days = rng.integers(0, 80 * 365, size=subjects)
    return _Plan(studies_per_subject, subject_ids, study_ids, subject_splits, base_days)


def _drawn_labels(spec: dict[str, dict]) -> dict[str, float]:
    """What the image shows, over the default classes: 1 drawn, -1 drawn mildly (uncertain), 0 absent."""
    drawn = {
        name: (UNCERTAIN if spec[name]["uncertain"] else POSITIVE) if name in spec else NEGATIVE
        for name in DEFAULT_CLASSES
        if name != "No Finding"
    }
    drawn["No Finding"] = NEGATIVE if any(drawn[n] != NEGATIVE for n in PATHOLOGIES) else POSITIVE
    return drawn


def _ground_truth_attributes(spec: dict[str, dict], truth: dict[str, Any]) -> list[str]:
    """The ground-truth CSV's columns from ``ctr`` to ``lung_shape``."""
    effusion, pneumothorax, consolidation = (
        spec.get(n, {}) for n in ("Pleural Effusion", "Pneumothorax", "Consolidation")
    )
    return [
        f"{truth['ctr']:.4f}",
        effusion.get("side", ""),
        effusion.get("severity", ""),
        pneumothorax.get("side", ""),
        pneumothorax.get("severity", ""),
        consolidation.get("side", ""),
        consolidation.get("zone", ""),
        spec.get("Edema", {}).get("severity", ""),
        ";".join(spec.get("Support Devices", {}).get("devices", [])),
        truth["lung_shape"],
    ]


def _write_study(
    out_dir: Path,
    tables: StudyTables,
    draft: _StudyDraft,
    subject: int,
    study: int,
    follow_up: int,
    first_day: int,
    patient: Patient,
    image_size: int,
    report_source: str,
) -> None:
    """Render one study's image from its draft, write the image and report, and add its table rows.

    ``follow_up`` is 0 for a subject's first study; later studies compare with it and come about 200 days on.
    """
    from ..labeler import label_report

    rng, spec = draft.rng, draft.spec
    comparison = draft.comparison
    if follow_up > 0:
        comparison = "___"
    elif comparison.lower().startswith("none") or not comparison:
        comparison = "None."
    labels = label_report(report_text(draft.findings, draft.impression))
    image, truth = render_phantom(spec, rng, image_size, patient)
    devices = spec.get("Support Devices", {}).get("devices", [])
    portable = any(d in devices for d in _PORTABLE_DEVICES)
    view = "AP" if (rng.random() < (0.85 if portable else 0.1)) else "PA"
    examination = "CHEST (PORTABLE AP)" if view == "AP" else "CHEST (PA AND LAT)"

    subject_text, study_text = str(subject), str(study)
    folder = out_dir / "files" / f"p{subject_text[:2]}" / f"p{subject_text}"
    (folder / f"s{study_text}").mkdir(parents=True, exist_ok=True)
    save_jpeg(image, folder / f"s{study_text}" / f"{draft.dicom_id}.jpg")
    (folder / f"s{study_text}.txt").write_text(
        mimic_report_text(examination, draft.indication, comparison, draft.findings, draft.impression),
        encoding="utf-8",
    )

    tables.chexpert.append([subject, study] + [label_cell(labels[c]) for c in CHEXPERT_CLASSES])
    tables.split.append([draft.dicom_id, study, subject, draft.split])
    day = first_day + 200 * follow_up + int(rng.integers(0, 150))
    date = np.datetime64("2110-01-01") + np.timedelta64(day, "D")
    time_of_day = f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
    tables.metadata.append(
        [
            draft.dicom_id,
            subject,
            study,
            examination,
            view,
            image_size,
            image_size,
            str(date).replace("-", ""),
            f"{time_of_day}.{int(rng.integers(0, 1000)):03d}",
            examination,
            "postero-anterior" if view == "PA" else "antero-posterior",
            "Erect" if view == "PA" else "Recumbent",
        ]
    )
    drawn = _drawn_labels(spec)
    for name, value in drawn.items():
        tables.prevalence[name] += value != NEGATIVE
    tables.ground_truth.append(
        [draft.dicom_id, subject, study, draft.split]
        + [f"{drawn[c]:.1f}" for c in DEFAULT_CLASSES]
        + _ground_truth_attributes(spec, truth)
        + [view, report_source, draft.report_id]
    )


# ------------------------------------------------------------------------------------------------ main entry
def make_embedded_dataset(
    out_dir: str | PathLike,
    num_items: int = 200,
    seed: int = 0,
    image_size: int = 256,
    report_source: str = "auto",
    use_real_masks: bool | str = "auto",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    overwrite: bool = False,
    normal_fraction: float = 0.4,
    balance: float = 0.5,
    max_masks: int | None = None,
) -> dict[str, Any]:
    """Write ``num_items`` studies (one frontal JPEG + report each) in the MIMIC-CXR-JPG layout; return a summary.

    ``report_source``: "iu" (torchxrayvision's IU X-ray reports), "grammar", or "auto" (iu when installed).
    ``use_real_masks``: lung outlines from torchxrayvision's lung masks (True), procedural (False) or "auto".
    About 20% of subjects have two studies (same anatomy, new findings); splits are by subject, and no
    validation / test report text (normalised) is a training report's text (IU reports are given to one split
    each; see the package docstring). The same arguments give byte-identical files. Raises :class:`DataError`
    for a non-empty ``out_dir`` unless ``overwrite`` and the folder holds an embedded dataset written before.
    """
    if num_items < 1:
        raise ValueError(f"num_items must be at least 1, not {num_items}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must sum below 1")
    if report_source not in REPORT_SOURCES:
        raise ValueError(f"report_source must be one of {REPORT_SOURCES}, not {report_source!r}")
    if report_source == "auto":
        report_source = "iu" if iu_reports_available() else "grammar"
    elif report_source == "iu" and not iu_reports_available():
        raise DataError("torchxrayvision/data/NLMCXR_reports.tgz", "IU X-ray reports not installed (use 'grammar')")
    real_masks = real_masks_usable(use_real_masks)
    out_dir = Path(out_dir)
    prepare_out_dir(out_dir, overwrite)

    plan = _plan(seed, num_items, val_fraction, test_fraction)
    report_pool: dict[str, int] | None = None
    if report_source == "iu":
        drafts, report_pool = _draw_iu_reports(
            seed, plan.study_splits, val_fraction, test_fraction, normal_fraction, balance, out_dir
        )
    else:
        drafts = _draw_grammar_reports(seed, plan.study_splits, normal_fraction, out_dir)
    _check_heldout_text(drafts, out_dir)

    tables = StudyTables()
    item = 0
    for subject_index, count in enumerate(plan.studies_per_subject):
        # one patient per subject (its own generator): follow-up studies show the same anatomy
        patient = sample_patient(np.random.default_rng([seed, 1, subject_index]), real_masks, max_masks)
        for follow_up in range(count):
            _write_study(
                out_dir,
                tables,
                drafts[item],
                plan.subject_ids[subject_index],
                plan.study_ids[item],
                follow_up,
                int(plan.base_days[subject_index]),
                patient,
                image_size,
                report_source,
            )
            item += 1
    tables.write(out_dir)
    summary = {
        "num_items": num_items,
        "num_subjects": len(plan.studies_per_subject),
        "seed": seed,
        "image_size": image_size,
        "report_source": report_source,
        "lung_masks": "real" if real_masks else "procedural",
        "splits": dict(sorted(Counter(row[3] for row in tables.split).items())),
        "distinct_reports": _distinct_reports(drafts),
        "report_pool": report_pool,
        "prevalence": {name: round(tables.prevalence[name] / num_items, 4) for name in DEFAULT_CLASSES},
        "class_names": list(DEFAULT_CLASSES),
    }
    (out_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return {**summary, "out_dir": str(out_dir)}
