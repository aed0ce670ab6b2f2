"""The IU X-ray report pool: real reports whose findings the phantom can draw, each given to one split.

torchxrayvision ships about 3,955 de-identified Indiana University chest X-ray reports (read at run time from
the installed package, never copied). Every report is labelled by the project's labeler; reports whose positive /
uncertain findings are all drawable are kept (Lung Opacity, Pneumonia and Enlarged Cardiomediastinum are allowed
where a drawn finding implies them), one per distinct normalised text. Each distinct text belongs to one split,
drawn stratified so every held-out split has normal and abnormal text; a study then samples only from its own
split's reports.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import DataError
from ..labels import DEFAULT_CLASSES, POSITIVE, UNCERTAIN
from .mimic_layout import report_text, report_text_key, split_subjects
from .report_attributes import finding_attributes
from .spec import PATHOLOGIES

_DRAWN_CLASSES = set(DEFAULT_CLASSES)
#: Observations a report may assert beyond the drawn ones when a drawn finding implies them.
_IMPLIED_BY = {
    "Lung Opacity": ("Consolidation", "Edema"),
    "Pneumonia": ("Consolidation",),
    "Enlarged Cardiomediastinum": ("Cardiomegaly",),
}


@dataclass(frozen=True)
class IUReport:
    """One distinct IU X-ray report: its sections (de-identified in MIMIC's style), labels and phantom spec."""

    id: str
    findings: str
    impression: str
    indication: str
    comparison: str
    labels: dict
    spec: dict
    key: str  # the normalised text the datalist will hold (see report_text_key)


def _iu_deid_to_mimic(text: str) -> str:
    """IU de-identification ("XXXX") in MIMIC's style ("___"); "x-XXXX" was "x-ray"."""
    text = re.sub(r"\b([xX])-XXXX", r"\1-ray", text or "")
    return re.sub(r"X{2,}", "___", text).strip()


def _drawable(labels: Mapping[str, float | None]) -> bool:
    """Whether every finding the labels assert is drawn, or implied by a drawn finding the labels also assert."""
    asserted = {n for n, v in labels.items() if v in (POSITIVE, UNCERTAIN)}
    for name in asserted - _DRAWN_CLASSES:
        if not any(labels.get(c) in (POSITIVE, UNCERTAIN) for c in _IMPLIED_BY.get(name, ())):
            return False
    return True


@lru_cache(maxsize=1)
def iu_report_pool() -> tuple[IUReport, ...]:
    """The distinct IU X-ray reports whose asserted findings the phantom can draw (labelled once per process).

    Reports are deduplicated by their normalised text (:func:`report_text_key`; the first in archive order is kept), so
    each entry is one distinct text that can be given to one split; reports the reader cannot use are left out.
    """
    from ..labeler import label_report, mentions
    from ..reports import iter_iu_reports_from_xrv

    pool = []
    seen: set[str] = set()
    for report in iter_iu_reports_from_xrv():
        findings, impression = (
            _iu_deid_to_mimic(report.get("findings") or ""),
            _iu_deid_to_mimic(report.get("impression") or ""),
        )
        text = report_text(findings, impression)
        if not text:
            continue
        try:
            key = report_text_key(findings, impression)
        except DataError:
            continue  # nothing left after cleaning: the reader would reject the study
        if key in seen:
            continue
        labels = label_report(text)
        if not _drawable(labels):
            continue
        seen.add(key)
        spec = finding_attributes(text, labels, mentions(text))
        pool.append(
            IUReport(
                str(report.get("id")),
                findings,
                impression,
                _iu_deid_to_mimic(report.get("indication") or ""),
                _iu_deid_to_mimic(report.get("comparison") or ""),
                labels,
                spec,
                key,
            )
        )
    if not pool:
        raise DataError("NLMCXR_reports.tgz", "no IU X-ray report with drawable findings")
    return tuple(pool)


def report_pathologies(report: IUReport) -> list[str]:
    """The drawn pathologies (not support devices) of a pool report."""
    return [name for name in report.spec if name in PATHOLOGIES]


def rarest_finding(names: Sequence[str], counts: Mapping[str, int]) -> str:
    """The finding of ``names`` with the fewest reports (ties: the first in ``PATHOLOGIES`` order)."""
    return min(names, key=lambda n: (counts[n], PATHOLOGIES.index(n)))


def assign_report_splits(pool: Sequence[IUReport], seed: int, val_fraction: float, test_fraction: float) -> list[str]:
    """Each distinct report's split (train / validate / test), drawn with ``seed`` in proportion to the fractions.

    The draw is stratified: normal reports form one stratum and abnormal ones are grouped by their rarest
    finding, so every held-out split gets normal and abnormal text, and each finding with three reports or
    more has at least one in validation and one in test (the rule :func:`split_subjects` applies to subjects).
    """
    counts = Counter(name for r in pool for name in report_pathologies(r))
    strata: dict[str, list[int]] = defaultdict(list)
    for i, report in enumerate(pool):
        names = report_pathologies(report)
        strata[rarest_finding(names, counts) if names else "normal"].append(i)
    rng = np.random.default_rng([seed, 3])
    assignment = ["train"] * len(pool)
    for stratum in ("normal", *PATHOLOGIES):
        members = strata.get(stratum, [])
        for i, split in zip(members, split_subjects(rng, len(members), val_fraction, test_fraction)):
            assignment[i] = split
    return assignment


@dataclass(frozen=True)
class IUSampler:
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


def iu_sampler(pool: Sequence[IUReport], indices: Sequence[int], balance: float) -> IUSampler:
    """The sampler over the pool entries ``indices``: "No Finding" reports (devices allowed) are drawn uniformly,
    abnormal ones with weight ``count(rarest finding) ** -balance`` (counts within ``indices``)."""
    normal = [i for i in indices if not report_pathologies(pool[i])]
    abnormal = [i for i in indices if report_pathologies(pool[i])]
    counts = Counter(name for i in abnormal for name in report_pathologies(pool[i]))
    weights = np.array(
        [counts[rarest_finding(report_pathologies(pool[i]), counts)] ** -balance for i in abnormal], dtype=np.float64
    )
    return IUSampler(normal, abnormal, weights / weights.sum() if len(weights) else weights)


def iu_reports_available() -> bool:
    """Whether torchxrayvision's IU X-ray reports are installed."""
    from ..reports import xrv_iu_reports_path

    return xrv_iu_reports_path() is not None
