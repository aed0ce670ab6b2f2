"""Trivial report generators that learn nothing: the floor every generated-report figure is read against.

The dataset's labels are the project labeler's reading of each report, so report label F1 against the
conditioning labels is met by returning any training report carrying the requested label set. These baselines
do exactly that; a generator is worth its training only where it beats them on the measures that they fail
(:mod:`.text_diversity`: novelty, self-BLEU; pair consistency in :mod:`.clinical`), not on label F1.

* :func:`retrieval_by_labels`: a random training report with the requested label vector.
* :func:`most_common_per_label_set`: the most frequent training report with the requested label vector.

When no training report carries the requested vector, both fall back to the training reports whose label
vectors are nearest by Hamming distance and count the fallback (:class:`BaselineReports`). Label vectors are
compared value by value as given: a -1 (unknown, the limited-label setting) is a value of its own.

The third baseline, the report decoder F trained by teacher forcing alone (no adversarial terms), is a trained
model: it belongs to the training configuration (a run with only F's teacher-forcing step), not to this module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .clinical import normalise_report

__all__ = ["BaselineReports", "most_common_per_label_set", "retrieval_by_labels"]


@dataclass(frozen=True)
class BaselineReports:
    """One baseline report per request, and where each came from.

    Attributes:
        reports: the report texts, in request order (training texts, unchanged).
        train_indices: the training row each report was taken from.
        distances: Hamming distance between each request and that row's label vector (0: the same vector).
    """

    reports: list[str]
    train_indices: list[int]
    distances: list[int] = field(repr=False)

    @property
    def num_fallbacks(self) -> int:
        """Requests whose label vector no training report carries (answered from the nearest vectors)."""
        return sum(d > 0 for d in self.distances)

    def info(self) -> dict[str, Any]:
        """``num_requests``, ``num_fallbacks``, ``fallback_rate`` and ``mean_fallback_distance`` (0 without
        fallbacks), for a results table."""
        fallback = [d for d in self.distances if d > 0]
        return {
            "num_requests": len(self.reports),
            "num_fallbacks": len(fallback),
            "fallback_rate": len(fallback) / len(self.reports) if self.reports else 0.0,
            "mean_fallback_distance": float(np.mean(fallback)) if fallback else 0.0,
        }


class _LabelSets:
    """Training rows grouped by label vector, with nearest-vector lookup for vectors no row carries."""

    def __init__(self, train_reports: Sequence[str], train_labels: Any) -> None:
        labels = np.asarray(train_labels, dtype=np.float64) + 0.0  # + 0.0: -0.0 becomes 0.0, one key per vector
        if labels.ndim != 2 or labels.shape[0] == 0:
            raise ValueError(f"train_labels must be a non-empty [N, K] array, got shape {labels.shape}")
        if len(train_reports) != labels.shape[0]:
            raise ValueError(f"{len(train_reports)} training reports but {labels.shape[0]} label rows")
        if not all(isinstance(t, str) for t in train_reports):
            raise ValueError("training reports must be strings")
        if not np.isfinite(labels).all():
            raise ValueError("train_labels must be finite (write unknown labels as -1)")
        self.reports = list(train_reports)
        self.vectors, inverse = np.unique(labels, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        self.rows: list[np.ndarray] = [np.flatnonzero(inverse == k) for k in range(len(self.vectors))]
        self.where = {vector.tobytes(): k for k, vector in enumerate(self.vectors)}

    def requests(self, requested_labels: Any) -> np.ndarray:
        requested = np.asarray(requested_labels, dtype=np.float64) + 0.0
        if requested.ndim == 1 and requested.size == 0:
            requested = requested.reshape(0, self.vectors.shape[1])
        if requested.ndim != 2 or requested.shape[1] != self.vectors.shape[1]:
            raise ValueError(
                f"requested_labels must be [M, {self.vectors.shape[1]}] like train_labels, got shape {requested.shape}"
            )
        if not np.isfinite(requested).all():
            raise ValueError("requested_labels must be finite (write unknown labels as -1)")
        return requested

    def nearest(self, request: np.ndarray) -> tuple[np.ndarray, int]:
        """The training rows of the label vector(s) nearest to ``request`` (all tied vectors pooled), and the
        Hamming distance."""
        exact = self.where.get(request.tobytes())
        if exact is not None:
            return self.rows[exact], 0
        distance = (self.vectors != request).sum(axis=1)
        best = int(distance.min())
        tied = np.flatnonzero(distance == best)
        return np.concatenate([self.rows[k] for k in tied]), best


def retrieval_by_labels(
    train_reports: Sequence[str],
    train_labels: Any,
    requested_labels: Any,
    seed: int = 0,
) -> BaselineReports:
    """For each requested label vector, a training report drawn at random among those carrying that vector.

    With no training report carrying it, the draw is among the reports of the nearest label vectors by Hamming
    distance (every tied vector's reports pooled, so ties are broken at random too) and the request counts as a
    fallback. Each draw is uniform over reports, with replacement across requests.

    Args:
        train_reports: the training split's reports.
        train_labels: their label vectors ``[N, K]`` (the dataset's labels: the labeler's reading of each report).
        requested_labels: the label vectors to write reports for ``[M, K]`` (e.g. the conditioning labels of a
            generated set).
        seed: seed of the draws.
    """
    sets = _LabelSets(train_reports, train_labels)
    requested = sets.requests(requested_labels)
    rng = np.random.default_rng(seed)
    indices, distances = [], []
    for request in requested:
        rows, distance = sets.nearest(request)
        indices.append(int(rows[int(rng.integers(len(rows)))]))
        distances.append(distance)
    return BaselineReports([sets.reports[i] for i in indices], indices, distances)


def most_common_per_label_set(
    train_reports: Sequence[str],
    train_labels: Any,
    requested_labels: Any,
) -> BaselineReports:
    """For each requested label vector, the most frequent training report among those carrying that vector.

    Reports are counted after :func:`.clinical.normalise_report` (case and whitespace do not split a count); the
    text returned is the first training report of the winning form, and ties go to the form seen first in
    training order, so the result is deterministic. Without an exact match, the reports of the nearest label
    vectors by Hamming distance are pooled and counted, and the request counts as a fallback.

    Args:
        train_reports: the training split's reports.
        train_labels: their label vectors ``[N, K]``.
        requested_labels: the label vectors to write reports for ``[M, K]``.
    """
    sets = _LabelSets(train_reports, train_labels)
    requested = sets.requests(requested_labels)
    normalised = [normalise_report(t) for t in sets.reports]
    chosen: dict[bytes, tuple[int, int]] = {}
    indices, distances = [], []
    for request in requested:
        key = request.tobytes()
        if key not in chosen:
            rows, distance = sets.nearest(request)
            rows = np.sort(rows)
            counts = Counter(normalised[i] for i in rows)  # insertion order = training order, so ties keep the first
            form = max(counts, key=counts.__getitem__)
            chosen[key] = (next(int(i) for i in rows if normalised[i] == form), distance)
        index, distance = chosen[key]
        indices.append(index)
        distances.append(distance)
    return BaselineReports([sets.reports[i] for i in indices], indices, distances)
