"""The embedded default dataset: synthetic radiographs with real (or grammar) reports, in the MIMIC-CXR-JPG layout.

Users without MIMIC-CXR access, the demo job and the tests all run on this dataset; its ground truth is
known, so it is also a benchmark (a trained model must draw what the labels ask for). Each item is one study
with one frontal image rendered by :mod:`bundle.data.phantom` and a report:

- ``report_source="iu"`` (the default when torchxrayvision's IU X-ray reports are installed): every IU report
  is labelled by the project's labeler; reports whose positive / uncertain findings are all drawable are kept
  (Lung Opacity, Pneumonia and Enlarged Cardiomediastinum are allowed where a drawn finding implies them:
  consolidation / edema, consolidation, cardiomegaly), one per distinct text (FINDINGS + IMPRESSION as the
  MIMIC reader will read them back, normalised by :func:`bundle.data.reports.normalise_report_text`). Each
  distinct text belongs to one split (train / validate / test), drawn with the seed in proportion to the split
  fractions and stratified (normal reports; abnormal ones by their rarest finding), so every held-out split
  has normal and abnormal text and each finding with three reports or more reaches validation and test.
  A study samples only from its own split's reports: a normal one with probability ``normal_fraction``, else
  an abnormal one weighted by ``count(finding) ** -balance`` of its rarest finding within that split (keeps
  real co-occurrence and real language, lifts the rare findings). The image is drawn from that report's
  labels, with laterality / severity / zone / device words parsed near the mention (random where the report
  does not say).
- ``report_source="grammar"``: label sets come from a small co-occurrence model (heart failure: cardiomegaly,
  edema, effusions; intensive care: devices, effusion, consolidation, pneumothorax; infection: consolidation
  and effusion; isolated findings) and the report from :mod:`bundle.data.report_grammar`. A validation / test
  study whose normalised text a training study also has gets new wording for the same label set from its own
  generator (a bounded number of times, then :class:`DataError`).

Either way no validation / test report text (normalised) is a training report text; validation and test never
share text in IU mode, and may in grammar mode.

Uncertain findings (-1) are drawn *mildly* (small effusion, faint small consolidation, borderline CTR
0.50-0.54, mild edema, tiny pneumothorax) and kept as -1 in the ground truth.

On disk (what the real MIMIC-CXR-JPG reader loads): ``files/pNN/pSUBJECT/sSTUDY/DICOM_ID.jpg``, reports at
``files/pNN/pSUBJECT/sSTUDY.txt``, ``mimic-cxr-2.0.0-chexpert.csv`` (labeler output on FINDINGS + IMPRESSION),
``mimic-cxr-2.0.0-split.csv`` (patient-level), ``mimic-cxr-2.0.0-metadata.csv``, plus
``embedded-ground-truth.csv`` (what each image was drawn from, with measured signs such as the CTR) and
``embedded-summary.json`` (with ``distinct_reports``: distinct report texts used per split, and in IU mode
``report_pool``: distinct source reports each split may draw from). The same seed gives byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import textwrap
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .labels import CHEXPERT_CLASSES, DEFAULT_CLASSES, NEGATIVE, POSITIVE, UNCERTAIN
from .phantom import PHANTOM_FINDINGS, Patient, complete_spec, real_masks_usable, render_phantom, sample_patient

__all__ = ["make_embedded_dataset", "finding_attributes", "sample_grammar_spec", "GROUND_TRUTH_CSV", "SUMMARY_JSON"]

CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv"
GROUND_TRUTH_CSV = "embedded-ground-truth.csv"
SUMMARY_JSON = "embedded-summary.json"
_OUR_FILES = (CHEXPERT_CSV, SPLIT_CSV, METADATA_CSV, GROUND_TRUTH_CSV, SUMMARY_JSON)

REPORT_SOURCES = ("auto", "iu", "grammar")
_RENDERED = set(DEFAULT_CLASSES)
#: Observations a report may assert beyond the drawn ones when a drawn finding implies them.
_IMPLIED_BY = {
    "Lung Opacity": ("Consolidation", "Edema"),
    "Pneumonia": ("Consolidation",),
    "Enlarged Cardiomediastinum": ("Cardiomegaly",),
}
_PATHOLOGIES = tuple(n for n in PHANTOM_FINDINGS if n != "Support Devices")


# ------------------------------------------------------------------------------------------------ label sets
def sample_grammar_spec(rng: np.random.Generator, normal_fraction: float = 0.4) -> dict[str, dict]:
    """A label set from a small co-occurrence model (uncompleted spec: attributes are drawn later).

    Normal studies (probability ``normal_fraction``) occasionally carry a device. Abnormal studies come from
    one of four clinical pictures so findings co-occur as they do in practice; each present pathology is
    uncertain with probability 0.1.
    """
    if rng.random() < normal_fraction:
        return {"Support Devices": {}} if rng.random() < 0.06 else {}
    picture = int(rng.integers(4))
    rates = [  # Cardiomegaly, Pleural Effusion, Pneumothorax, Consolidation, Edema, Support Devices
        (0.75, 0.55, 0.02, 0.05, 0.65, 0.2),  # heart failure
        (0.25, 0.4, 0.25, 0.3, 0.25, 0.95),  # intensive care
        (0.1, 0.3, 0.02, 0.9, 0.05, 0.1),  # infection
        (0.4, 0.3, 0.35, 0.2, 0.1, 0.15),  # isolated findings
    ][picture]
    present = [name for name, rate in zip(PHANTOM_FINDINGS, rates) if rng.random() < rate]
    if not any(name in _PATHOLOGIES for name in present):
        present.append(_PATHOLOGIES[int(rng.integers(len(_PATHOLOGIES)))])
    spec: dict[str, dict] = {}
    for name in PHANTOM_FINDINGS:
        if name in present:
            spec[name] = {"uncertain": bool(name != "Support Devices" and rng.random() < 0.1)}
    if picture == 0 and "Pleural Effusion" in spec and rng.random() < 0.6:
        spec["Pleural Effusion"]["side"] = "bilateral"
    return spec


_SIDE_BILATERAL = re.compile(r"\b(?:bilateral\w*|both|bibasilar|bibasal|biapical)\b")
_SEVERITY_WORDS = {
    "Pleural Effusion": (("large", r"\b(?:large|massive|extensive|big|sizable|substantial)\b"),
                         ("moderate", r"\bmoderate\w*\b"),
                         ("small", r"\b(?:small|trace|tiny|minimal|minimum|slight|mild)\b")),
    "Pneumothorax": (("large", r"\b(?:large|moderate|sizable|significant|tension)\b"),
                     ("small", r"\b(?:small|tiny|trace|minimal|apical|slight)\b")),
    "Edema": (("severe", r"\b(?:severe|marked|extensive|florid|alveolar)\b"),
              ("moderate", r"\bmoderate\w*\b"),
              ("mild", r"\b(?:mild|minimal|slight|trace|subtle|early)\b")),
    "Cardiomegaly": (("severe", r"\b(?:marked|markedly|severe|severely|massive\w*|significant\w*)\b"),
                     ("moderate", r"\bmoderate\w*\b"),
                     ("mild", r"\b(?:mild|mildly|slight|slightly|minimal|borderline)\b")),
}
_ZONE_WORDS = (("upper", r"\b(?:upper|apical|apex|apices)\b"),
               ("lower", r"\b(?:lower|bases?|basilar|basal|bibasilar|middle|lingula\w*|retrocardiac|infrahilar)\b"))
_DEVICE_WORDS = (
    ("endotracheal tube", r"endotracheal|\bett?\b|\bet tube|tracheostomy"),
    ("nasogastric tube", r"nasogastric|\bng\b|enteric|feeding tube|orogastric|\bog\b|dobhoff"),
    ("picc", r"\bpicc"),
    ("central line", r"central (?:venous )?(?:line|catheter)|\bij\b|jugular|subclavian|\bport\b|dialysis|swan"),
    ("pacemaker", r"pacemaker|pacer|pacing|\b(?:a)?icd\b|defibrillator|\bleads?\b"),
    ("sternotomy wires", r"sternotomy|sternal|cerclage"),
)


def finding_attributes(
    text: str,
    labels: Mapping[str, float | None],
    mentions: Sequence[Any] | None = None,
) -> dict[str, dict]:
    """Phantom spec for a labelled report: laterality / severity / zone / devices read near the mentions.

    Only attributes the report states are set (:func:`bundle.data.phantom.complete_spec` draws the others).
    ``mentions`` are the labeler's classified mentions of ``text`` (computed when not given).
    """
    if mentions is None:
        from .labeler import mentions as find_mentions

        mentions = find_mentions(text)
    windows: dict[str, list[str]] = defaultdict(list)
    for m in mentions:
        if m.label != NEGATIVE:
            windows[m.observation].append(m.sentence[max(0, m.start - 45) : m.end + 30])
    spec: dict[str, dict] = {}
    for name in PHANTOM_FINDINGS:
        value = labels.get(name)
        if value not in (POSITIVE, UNCERTAIN):
            continue
        attrs: dict[str, Any] = {"uncertain": value == UNCERTAIN}
        context = " ".join(windows.get(name, []))
        if name in ("Pleural Effusion", "Pneumothorax", "Consolidation"):
            left, right = re.search(r"\bleft\b", context), re.search(r"\bright\b", context)
            if _SIDE_BILATERAL.search(context) or (left and right):
                if name == "Pleural Effusion":
                    attrs["side"] = "bilateral"
            elif left:
                attrs["side"] = "left"
            elif right:
                attrs["side"] = "right"
        for severity, pattern in _SEVERITY_WORDS.get(name, ()):
            if re.search(pattern, context):
                attrs["severity"] = severity
                break
        if name == "Consolidation":
            for zone, pattern in _ZONE_WORDS:
                if re.search(pattern, context):
                    attrs["zone"] = zone
                    break
        if name == "Support Devices":
            lower = text.lower()
            devices = [d for d, pattern in _DEVICE_WORDS if re.search(pattern, lower)]
            if devices:
                attrs["devices"] = devices[:2]
        spec[name] = attrs
    return spec


# ------------------------------------------------------------------------------------------------ IU reports
@dataclass(frozen=True)
class _IUReport:
    id: str
    findings: str
    impression: str
    indication: str
    comparison: str
    labels: dict
    spec: dict
    key: str  # the normalised text the datalist will hold (see _text_key)


def _deid(text: str) -> str:
    """IU de-identification ("XXXX") in MIMIC's style ("___"); "x-XXXX" was "x-ray"."""
    text = re.sub(r"\b([xX])-XXXX", r"\1-ray", text or "")
    return re.sub(r"X{2,}", "___", text).strip()


def _report_text(findings: str, impression: str) -> str:
    return " ".join(t for t in (findings, impression) if t)


def _text_key(findings: str, impression: str) -> str:
    """The normalised FINDINGS + IMPRESSION text a study's datalist item will hold.

    Read back from the written report layout with the MIMIC reader's own functions (so placeholders, list
    numbers and the default impression are treated as the reader treats them), then normalised by
    :func:`bundle.data.reports.normalise_report_text`: two reports with the same key are the same text to the
    held-out text check of ``scripts/prepare_data.py``. Raises :class:`DataError` for a report the reader
    cannot use (no text left after cleaning).
    """
    from .reports import DEFAULT_SECTIONS, extract_sections, normalise_report_text, select_sections

    layout = _mimic_report("CHEST (PA AND LAT)", "", "", findings, impression)
    return normalise_report_text(select_sections(extract_sections(layout), DEFAULT_SECTIONS))


def _drawable(labels: Mapping[str, float | None]) -> bool:
    asserted = {n for n, v in labels.items() if v in (POSITIVE, UNCERTAIN)}
    for name in asserted - _RENDERED:
        if not any(labels.get(c) in (POSITIVE, UNCERTAIN) for c in _IMPLIED_BY.get(name, ())):
            return False
    return True


@lru_cache(maxsize=1)
def _iu_pool() -> tuple[_IUReport, ...]:
    """The distinct IU X-ray reports whose asserted findings the phantom can draw (labelled once per process).

    Reports are deduplicated by their normalised text (:func:`_text_key`; the first in archive order is kept), so
    each entry is one distinct text that can be given to one split; reports the reader cannot use are left out.
    """
    from .labeler import label_report, mentions
    from .reports import iter_iu_reports_from_xrv

    pool = []
    seen: set[str] = set()
    for report in iter_iu_reports_from_xrv():
        findings, impression = _deid(report.get("findings") or ""), _deid(report.get("impression") or "")
        text = _report_text(findings, impression)
        if not text:
            continue
        try:
            key = _text_key(findings, impression)
        except DataError:
            continue  # nothing left after cleaning: the reader would reject the study
        if key in seen:
            continue
        labels = label_report(text)
        if not _drawable(labels):
            continue
        seen.add(key)
        spec = finding_attributes(text, labels, mentions(text))
        pool.append(_IUReport(str(report.get("id")), findings, impression, _deid(report.get("indication") or ""),
                              _deid(report.get("comparison") or ""), labels, spec, key))
    if not pool:
        raise DataError("NLMCXR_reports.tgz", "no IU X-ray report with drawable findings")
    return tuple(pool)


def _pathologies(report: _IUReport) -> list[str]:
    return [name for name in report.spec if name in _PATHOLOGIES]


def _rarest(names: Sequence[str], counts: Mapping[str, int]) -> str:
    """The finding of ``names`` with the fewest reports (ties: the first in ``_PATHOLOGIES`` order)."""
    return min(names, key=lambda n: (counts[n], _PATHOLOGIES.index(n)))


def _assign_report_splits(
    pool: Sequence[_IUReport], seed: int, val_fraction: float, test_fraction: float
) -> list[str]:
    """Each distinct report's split (train / validate / test), drawn with ``seed`` in proportion to the fractions.

    The draw is stratified: normal reports form one stratum and abnormal ones are grouped by their rarest
    finding, so every held-out split gets normal and abnormal text, and each finding with three reports or
    more has at least one in validation and one in test (the rule :func:`_split_subjects` applies to subjects).
    """
    counts = Counter(name for r in pool for name in _pathologies(r))
    strata: dict[str, list[int]] = defaultdict(list)
    for i, report in enumerate(pool):
        names = _pathologies(report)
        strata[_rarest(names, counts) if names else "normal"].append(i)
    rng = np.random.default_rng([seed, 3])
    assignment = ["train"] * len(pool)
    for stratum in ("normal", *_PATHOLOGIES):
        members = strata.get(stratum, [])
        for i, split in zip(members, _split_subjects(rng, len(members), val_fraction, test_fraction)):
            assignment[i] = split
    return assignment


@dataclass(frozen=True)
class _IUSampler:
    """One split's share of the IU pool: normal reports, abnormal ones and the abnormal sampling weights."""

    normal: list[int]
    abnormal: list[int]
    abnormal_p: np.ndarray

    def pick(self, rng: np.random.Generator, normal_fraction: float) -> int:
        """A pool index: normal with probability ``normal_fraction`` (when the split has both kinds)."""
        want_normal = rng.random() < normal_fraction
        if self.normal and (want_normal or not self.abnormal):
            return self.normal[int(rng.integers(len(self.normal)))]
        return self.abnormal[int(rng.choice(len(self.abnormal), p=self.abnormal_p))]


def _iu_sampler(pool: Sequence[_IUReport], indices: Sequence[int], balance: float) -> _IUSampler:
    """The sampler over the pool entries ``indices``: "No Finding" reports (devices allowed) are drawn uniformly,
    abnormal ones with weight ``count(rarest finding) ** -balance`` (counts within ``indices``)."""
    normal = [i for i in indices if not _pathologies(pool[i])]
    abnormal = [i for i in indices if _pathologies(pool[i])]
    counts = Counter(name for i in abnormal for name in _pathologies(pool[i]))
    weights = np.array([counts[_rarest(_pathologies(pool[i]), counts)] ** -balance for i in abnormal],
                       dtype=np.float64)
    return _IUSampler(normal, abnormal, weights / weights.sum() if len(weights) else weights)


def iu_reports_available() -> bool:
    """Whether torchxrayvision's IU X-ray reports are installed."""
    from .reports import xrv_iu_reports_path

    return xrv_iu_reports_path() is not None


# ------------------------------------------------------------------------------------------------ layout
def _subject_ids(rng: np.random.Generator, count: int, low: int, high: int) -> list[int]:
    ids: list[int] = []
    seen: set[int] = set()
    while len(ids) < count:
        for value in rng.integers(low, high, size=2 * (count - len(ids)) + 4).tolist():
            if value not in seen and len(ids) < count:
                seen.add(value)
                ids.append(value)
    return ids


def _dicom_id(rng: np.random.Generator) -> str:
    return "-".join(f"{int(x):08x}" for x in rng.integers(0, 2**32, size=5, dtype=np.uint64))


def _split_subjects(rng: np.random.Generator, subjects: int, val_fraction: float, test_fraction: float) -> list[str]:
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


def _wrap(text: str) -> str:
    return "\n".join(" " + line for line in textwrap.wrap(text, 76)) if text else " "


def _mimic_report(examination: str, indication: str, comparison: str, findings: str, impression: str) -> str:
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
        parts += [" FINDINGS:", "", _wrap(findings), ""]
    parts += [" IMPRESSION:", "", _wrap(impression or "No acute cardiopulmonary process."), ""]
    return "\n".join(parts)


_INDICATIONS = (
    "___-year-old man with shortness of breath.", "___-year-old woman with chest pain.", "Cough and fever.",
    "___-year-old man with dyspnea on exertion.", "Preoperative chest radiograph.", "Evaluate for acute process.",
    "___-year-old woman with hypoxia.", "Follow-up.", "Chest pain, rule out acute process.",
)
_ICU_INDICATIONS = ("Intubated patient, evaluate tube position.", "Line placement.", "ICU patient, hypoxia.")


def _label_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite`` and it holds a previous embedded dataset."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise DataError(out_dir, "folder is not empty (pass overwrite=True to replace an embedded dataset there)")
        if not (out_dir / SUMMARY_JSON).is_file():
            raise DataError(out_dir, f"folder is not empty and holds no {SUMMARY_JSON}: refusing to overwrite data "
                                     "that make_embedded_dataset did not write")
        if (out_dir / "files").is_dir():
            shutil.rmtree(out_dir / "files")
        for name in _OUR_FILES:
            if (out_dir / name).exists():
                (out_dir / name).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _save_jpeg(image: np.ndarray, path: Path, quality: int = 95) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="JPEG", quality=quality)
    path.write_bytes(buffer.getvalue())


# ------------------------------------------------------------------------------------------------ reports
_SPLIT_ORDER = ("train", "validate", "test")
#: Redraws of a grammar report whose text a held-out study shares with training, before giving up.
_MAX_REDRAWS = 50


@dataclass
class _Draft:
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
) -> tuple[list[_Draft], dict[str, int]]:
    """Each study's IU report, sampled from the distinct reports of its own split; also the pool size per split."""
    pool = _iu_pool()
    report_splits = _assign_report_splits(pool, seed, val_fraction, test_fraction)
    samplers = {
        split: _iu_sampler(pool, [i for i, s in enumerate(report_splits) if s == split], balance)
        for split in _SPLIT_ORDER
    }
    for split in sorted(set(study_splits)):
        if not (samplers[split].normal or samplers[split].abnormal):
            raise DataError(out_dir, f"no IU X-ray report left for the {split} split ({len(pool)} distinct reports "
                                     f"in all): lower its fraction or use report_source='grammar'")
    drafts = []
    for item, split in enumerate(study_splits):
        rng = np.random.default_rng([seed, 2, item])
        dicom_id = _dicom_id(rng)
        report = pool[samplers[split].pick(rng, normal_fraction)]
        drafts.append(_Draft(rng, split, dicom_id, complete_spec(report.spec, rng), report.findings,
                             report.impression, report.id, report.indication, report.comparison, report.key))
    return drafts, {split: len(samplers[split].normal) + len(samplers[split].abnormal) for split in _SPLIT_ORDER}


def _draw_grammar_reports(
    seed: int, study_splits: Sequence[str], normal_fraction: float, out_dir: Path
) -> list[_Draft]:
    """Each study's grammar report; a held-out study whose text a training study has is rewritten.

    The rewrite keeps the study's label set and draws new wording from the study's own generator (at most
    ``_MAX_REDRAWS`` times), so the result stays a function of the seed. Raises :class:`DataError` when the
    grammar has no other wording left for it.
    """
    from .report_grammar import compose_report

    drafts = []
    for item, split in enumerate(study_splits):
        rng = np.random.default_rng([seed, 2, item])
        dicom_id = _dicom_id(rng)
        spec = complete_spec(sample_grammar_spec(rng, normal_fraction), rng)
        text = compose_report(spec, rng)
        icu = "Support Devices" in spec
        indication = (_ICU_INDICATIONS if icu else _INDICATIONS)[int(rng.integers(3 if icu else 9))]
        drafts.append(_Draft(rng, split, dicom_id, spec, text["findings"], text["impression"], "grammar",
                             indication, "", _text_key(text["findings"], text["impression"])))
    training = {d.key for d in drafts if d.split == "train"}
    for item, draft in enumerate(drafts):
        tries = 0
        while draft.split != "train" and draft.key in training:
            if tries == _MAX_REDRAWS:
                raise DataError(out_dir, f"study {item} ({draft.split}): the report grammar wrote only training "
                                         f"text in {_MAX_REDRAWS} tries (\"{draft.findings} {draft.impression}\"); "
                                         "use more varied label sets or another seed")
            text = compose_report(draft.spec, draft.rng)
            draft.findings, draft.impression = text["findings"], text["impression"]
            draft.key = _text_key(draft.findings, draft.impression)
            tries += 1
    return drafts


def _check_heldout_text(drafts: Sequence[_Draft], out_dir: Path) -> None:
    """Raise :class:`DataError` if a validation / test study's report text is also a training study's text."""
    training = {d.key for d in drafts if d.split == "train"}
    shared = sum(d.split != "train" and d.key in training for d in drafts)
    if shared:
        raise DataError(out_dir, f"{shared} held-out studies have a training report's text")


def _distinct_reports(drafts: Sequence[_Draft]) -> dict[str, int]:
    """Number of distinct normalised report texts the studies of each split use."""
    return {split: len({d.key for d in drafts if d.split == split}) for split in _SPLIT_ORDER}


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
    each; see the module docstring). The same arguments give byte-identical files. Raises :class:`DataError` for a
    non-empty ``out_dir`` unless ``overwrite`` and the folder holds an embedded dataset written before.
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
    _prepare_out_dir(out_dir, overwrite)

    from .labeler import label_report

    # the plan: subjects, studies, ids and splits, all from one generator
    plan_rng = np.random.default_rng([seed, 0])
    studies_per_subject: list[int] = []
    remaining = num_items
    while remaining > 0:
        k = 2 if remaining >= 2 and plan_rng.random() < 0.2 else 1
        studies_per_subject.append(k)
        remaining -= k
    n_subjects = len(studies_per_subject)
    subject_ids = _subject_ids(plan_rng, n_subjects, 10_000_000, 20_000_000)
    study_ids = _subject_ids(plan_rng, num_items, 50_000_000, 60_000_000)
    splits = _split_subjects(plan_rng, n_subjects, val_fraction, test_fraction)
    base_days = plan_rng.integers(0, 80 * 365, size=n_subjects)

    study_splits = [splits[s_index] for s_index, count in enumerate(studies_per_subject) for _ in range(count)]
    report_pool: dict[str, int] | None = None
    if report_source == "iu":
        drafts, report_pool = _draw_iu_reports(
            seed, study_splits, val_fraction, test_fraction, normal_fraction, balance, out_dir)
    else:
        drafts = _draw_grammar_reports(seed, study_splits, normal_fraction, out_dir)
    _check_heldout_text(drafts, out_dir)

    chexpert_rows, split_rows, meta_rows, truth_rows = [], [], [], []
    truth_header = (["dicom_id", "subject_id", "study_id", "split"] + list(DEFAULT_CLASSES) + [
        "ctr", "effusion_side", "effusion_severity", "pneumothorax_side", "pneumothorax_severity",
        "consolidation_side", "consolidation_zone", "edema_severity", "devices", "lung_shape", "view",
        "report_source", "report_id"])
    prevalence: Counter = Counter()
    item = 0
    for s_index, count in enumerate(studies_per_subject):
        subject = subject_ids[s_index]
        patient: Patient = sample_patient(np.random.default_rng([seed, 1, s_index]), real_masks, max_masks)
        day = int(base_days[s_index])
        for k in range(count):
            draft = drafts[item]
            rng, study, dicom_id, spec = draft.rng, study_ids[item], draft.dicom_id, draft.spec
            findings, impression, report_id = draft.findings, draft.impression, draft.report_id
            indication, comparison = draft.indication, draft.comparison
            if k > 0:
                comparison = "___"
            elif comparison.lower().startswith("none") or not comparison:
                comparison = "None."
            labels = label_report(_report_text(findings, impression))
            image, truth = render_phantom(spec, rng, image_size, patient)
            devices = spec.get("Support Devices", {}).get("devices", [])
            portable = any(d in devices for d in ("endotracheal tube", "nasogastric tube", "central line"))
            view = "AP" if (rng.random() < (0.85 if portable else 0.1)) else "PA"
            examination = "CHEST (PORTABLE AP)" if view == "AP" else "CHEST (PA AND LAT)"

            subject_s, study_s = str(subject), str(study)
            folder = out_dir / "files" / f"p{subject_s[:2]}" / f"p{subject_s}"
            (folder / f"s{study_s}").mkdir(parents=True, exist_ok=True)
            _save_jpeg(image, folder / f"s{study_s}" / f"{dicom_id}.jpg")
            (folder / f"s{study_s}.txt").write_text(
                _mimic_report(examination, indication, comparison, findings, impression), encoding="utf-8")

            chexpert_rows.append([subject, study] + [_label_cell(labels[c]) for c in CHEXPERT_CLASSES])
            split_rows.append([dicom_id, study, subject, splits[s_index]])
            date = np.datetime64("2110-01-01") + np.timedelta64(day + 200 * k + int(rng.integers(0, 150)), "D")
            time_of_day = f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
            meta_rows.append([dicom_id, subject, study, examination, view, image_size, image_size,
                              str(date).replace("-", ""), f"{time_of_day}.{int(rng.integers(0, 1000)):03d}",
                              examination, "postero-anterior" if view == "PA" else "antero-posterior",
                              "Erect" if view == "PA" else "Recumbent"])
            rendered = {name: (UNCERTAIN if spec[name]["uncertain"] else POSITIVE) if name in spec else NEGATIVE
                        for name in DEFAULT_CLASSES if name != "No Finding"}
            rendered["No Finding"] = NEGATIVE if any(rendered[n] != NEGATIVE for n in _PATHOLOGIES) else POSITIVE
            for name, value in rendered.items():
                prevalence[name] += value != NEGATIVE
            eff, ptx, cons = (spec.get(n, {}) for n in ("Pleural Effusion", "Pneumothorax", "Consolidation"))
            truth_rows.append(
                [dicom_id, subject, study, splits[s_index]] + [f"{rendered[c]:.1f}" for c in DEFAULT_CLASSES] + [
                    f"{truth['ctr']:.4f}", eff.get("side", ""), eff.get("severity", ""), ptx.get("side", ""),
                    ptx.get("severity", ""), cons.get("side", ""), cons.get("zone", ""),
                    spec.get("Edema", {}).get("severity", ""), ";".join(devices), truth["lung_shape"], view,
                    report_source, report_id])
            item += 1

    _write_csv(out_dir / CHEXPERT_CSV, ["subject_id", "study_id"] + list(CHEXPERT_CLASSES), chexpert_rows)
    _write_csv(out_dir / SPLIT_CSV, ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    _write_csv(out_dir / METADATA_CSV, [
        "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
        "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
        "PatientOrientationCodeSequence_CodeMeaning"], meta_rows)
    _write_csv(out_dir / GROUND_TRUTH_CSV, truth_header, truth_rows)
    summary = {
        "num_items": num_items,
        "num_subjects": n_subjects,
        "seed": seed,
        "image_size": image_size,
        "report_source": report_source,
        "lung_masks": "real" if real_masks else "procedural",
        "splits": dict(sorted(Counter(row[3] for row in split_rows).items())),
        "distinct_reports": _distinct_reports(drafts),
        "report_pool": report_pool,
        "prevalence": {name: round(prevalence[name] / num_items, 4) for name in DEFAULT_CLASSES},
        "class_names": list(DEFAULT_CLASSES),
    }
    (out_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return {**summary, "out_dir": str(out_dir)}
