"""Diversity and novelty of generated reports: the measures that report label F1 cannot stand without.

The dataset's labels are the project labeler's reading of each report, so a generator that returns any
training report with the requested label set scores a perfect report label F1 while learning nothing
(:mod:`.baselines` builds such generators). These measures tell copying and collapse apart from generation:

* :func:`distinct_n` (Li et al., 2016): distinct n-grams over all n-grams of a set of reports; low when the
  generator repeats itself.
* :func:`self_bleu` (Zhu et al., 2018, Texygen): BLEU of each report against the other reports written for the
  same label set; 1 when every report of a label set is the same text.
* :func:`novelty`: each report's highest BLEU against any training report, and the verbatim copy rate; 1 for a
  generator that retrieves training reports.

All three read the same tokens (:func:`tokenize`: :func:`.text_metrics.simple_tokenize`, lower-cased words
and numbers, punctuation dropped), so "No effusion." and "no effusion" are the same two tokens. Punctuation
is dropped rather than kept as tokens because the project's BLEU (:func:`.text_metrics.report_metrics`) scores
punctuation-free text and :class:`.memorisation.NgramIndex` indexes the same tokens. BLEU is pycocoevalcap's
``Bleu`` scorer (the project's BLEU): per-report scores, ``closest`` reference length, and its own epsilon
instead of smoothing, so a report sharing no n-gram of the highest order with its references scores about 0.
Text is always tokenized in Python (never the Java PTB tokenizer), so the numbers do not depend on Java.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from bundle.data.labels import check_class_names

from .clinical import verbatim_copy_rate
from .memorisation import NgramIndex, _ngrams  # _ngrams: the n-grams NgramIndex indexes, so queries match them
from .text_metrics import simple_tokenize

__all__ = ["distinct_n", "label_set_keys", "novelty", "self_bleu", "tokenize"]


def tokenize(text: str) -> list[str]:
    """The tokens every measure of this module reads: :func:`.text_metrics.simple_tokenize`, split on spaces."""
    return simple_tokenize(text).split()


def _check_order(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")


def _check_texts(reports: Iterable[str], what: str) -> list[str]:
    texts = list(reports)
    if not texts:
        raise ValueError(f"no {what}")
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise ValueError(f"{what} must be strings, got {type(bad[0]).__name__}: {bad[0]!r}")
    return texts


def distinct_n(reports: Iterable[str], n: int) -> float:
    """Distinct-n: the number of distinct word n-grams over the number of n-grams in all ``reports``.

    n-grams are counted within each report (none spans two reports) and pooled over the set; a report of fewer
    than ``n`` tokens adds none. 1.0 when no n-gram repeats; ``1 / k`` for ``k`` copies of one report whose
    n-grams are all different. The value falls as the set grows, so compare sets of the same size.

    Raises:
        ValueError: for no reports, ``n < 1``, or no report with ``n`` tokens.
    """
    _check_order(n)
    texts = _check_texts(reports, "reports")
    grams: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        words = tokenize(text)
        grams.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    if total == 0:
        raise ValueError(f"no report has {n} token(s): distinct-{n} is undefined")
    return len(grams) / total


def label_set_keys(labels: Any, class_names: Sequence[str]) -> list[str]:
    """One group key per multi-hot row: the positive class names joined by ``" + "`` (``"none"`` for none).

    A -1 (unknown) entry is written ``"?name"``, so rows with different unknowns fall in different groups.
    These are the ``groups`` of :func:`self_bleu` for reports written for (or labelled with) these rows.
    """
    names = check_class_names(class_names)
    array = np.asarray(labels, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != len(names):
        raise ValueError(f"labels must be [N, {len(names)}] (one column per class), got shape {array.shape}")
    keys = []
    for row in array:
        parts = [name for name, v in zip(names, row) if v == 1] + [f"?{name}" for name, v in zip(names, row) if v == -1]
        keys.append(" + ".join(parts) if parts else "none")
    return keys


def _bleu_n(references: dict[Any, list[str]], hypotheses: dict[Any, list[str]], n: int) -> dict[Any, float]:
    """Per-hypothesis BLEU-n (pycocoevalcap) of already tokenized texts, keyed as the inputs."""
    from pycocoevalcap.bleu.bleu import Bleu

    if not hypotheses:
        return {}
    _, per_report = Bleu(n).compute_score(references, hypotheses, verbose=0)
    return {key: float(score) for key, score in zip(references, per_report[n - 1])}


def self_bleu(
    reports: Sequence[str],
    groups: Sequence[Hashable],
    n: int = 4,
    max_per_group: int = 32,
    seed: int = 0,
) -> float:
    """Mean BLEU-n of each report against the other reports of its group (Self-BLEU within label sets).

    Each report is the hypothesis and the other reports of its group are its references (multi-reference BLEU:
    n-gram counts are clipped by the most any reference holds). Groups are label-set keys, e.g.
    :func:`label_set_keys` of the conditioning labels, so the measure asks whether reports written for the same
    findings differ from each other, not whether normal and abnormal reports differ. 1.0 when every report of
    every group is the same text; about 0 when reports of a group share no n-gram of order ``n``.

    Args:
        reports: report texts.
        groups: one hashable key per report.
        n: BLEU order (4: BLEU-4).
        max_per_group: at most this many references per report, drawn without replacement with ``seed`` from
            the rest of its group: bounds the cost at ``len(reports) * max_per_group`` reference n-gram counts.
        seed: seed of that draw (groups are visited in order of first appearance, so the result is reproducible).

    Returns:
        The mean over the reports of groups holding two or more reports; reports alone in their group are left
        out (they have no references).

    Raises:
        ValueError: for mismatched lengths, ``max_per_group < 1``, or when no group holds two or more reports.
    """
    _check_order(n)
    texts = _check_texts(reports, "reports")
    keys = list(groups)
    if len(keys) != len(texts):
        raise ValueError(f"{len(texts)} reports but {len(keys)} group keys")
    if max_per_group < 1:
        raise ValueError(f"max_per_group must be at least 1, got {max_per_group}")
    members: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        members.setdefault(key, []).append(index)
    tokens = [" ".join(tokenize(t)) for t in texts]
    rng = np.random.default_rng(seed)
    references: dict[int, list[str]] = {}
    hypotheses: dict[int, list[str]] = {}
    for indices in members.values():
        if len(indices) < 2:
            continue
        for i in indices:
            others = [j for j in indices if j != i]
            if len(others) > max_per_group:
                others = [others[k] for k in sorted(rng.choice(len(others), max_per_group, replace=False))]
            references[i] = [tokens[j] for j in others]
            hypotheses[i] = [tokens[i]]
    if not hypotheses:
        raise ValueError("no group holds two or more reports: self-BLEU is undefined")
    scores = _bleu_n(references, hypotheses, n)
    return float(np.mean(list(scores.values())))


def _bleu_estimate(shared: np.ndarray, length: int, ref_lengths: np.ndarray, n: int) -> np.ndarray:
    """A cheap stand-in for BLEU-n to rank shortlist candidates: the share of the hypothesis' n-grams that a
    reference shares (distinct n-grams, the top-order precision without clipping) to the power 1/n, times
    BLEU's brevity penalty for the reference's length."""
    guess = max(length - n + 1, 1)
    precision = np.minimum(shared / guess, 1.0) ** (1.0 / n)
    ratio = length / np.maximum(ref_lengths, 1.0)
    penalty = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, 1e-9)), 1.0)
    return precision * penalty


def novelty(
    reports: Sequence[str],
    training_reports: Sequence[str],
    n: int = 4,
    shortlist: int | None = 32,
) -> dict[str, Any]:
    """How close generated reports come to training reports: highest BLEU-n to any one of them, verbatim copies.

    For each generated report, the training reports sharing at least one word n-gram with it are found through
    an inverted index (:class:`.memorisation.NgramIndex`); the ``shortlist`` of them with the highest cheap
    BLEU estimate (share of the report's n-grams they hold, times BLEU's brevity penalty for their length) are
    kept, and the report is scored by BLEU-n against each of them alone (single reference); its score is the
    highest. Two approximations, both of which can only lower a score (the returned ``approximation`` names the
    one in force):

    * training reports sharing no n-gram are not scored: a report of ``n`` or more tokens scores below 2e-4
      BLEU-n against them (pycocoevalcap's epsilon); a report of fewer than ``n`` tokens is indexed as one
      n-gram (its whole text), so it is scored only against training reports equal to it (and even then BLEU-n
      of a text shorter than ``n`` tokens is small: the verbatim rate is the measure for those).
    * with ``shortlist`` set, a training report ranked below the shortlist may have the higher BLEU (the
      estimate ignores lower-order n-grams and clipping) and is not scored; ``shortlist=None`` scores every
      training report sharing an n-gram. On 256 IU X-ray reports against 1,600 others, ``shortlist=32`` took
      a tenth of the exhaustive time and missed the best match of 5 reports (all with BLEU-4 below 0.3; the
      largest miss 0.06), lowering the mean by 0.0004.

    Args:
        reports: generated report texts.
        training_reports: the training split's report texts.
        n: n-gram order of the index and of BLEU.
        shortlist: training reports scored per generated report (None: all that share an n-gram).

    Returns:
        ``max_bleu_to_train_mean`` (mean of the per-report highest BLEU-n), ``max_bleu_to_train`` (per report),
        ``nearest_train_index`` (the training report that gave it; -1 and score 0 when none shares an n-gram),
        ``verbatim_rate`` (share of reports equal to a training report after :func:`.clinical.normalise_report`,
        by :func:`.clinical.verbatim_copy_rate`), ``n`` and ``approximation``.

    Raises:
        ValueError: for no generated or no training reports, ``n < 1`` or ``shortlist < 1``.
    """
    _check_order(n)
    texts = _check_texts(reports, "generated reports")
    train_texts = _check_texts(training_reports, "training reports")
    if shortlist is not None and shortlist < 1:
        raise ValueError(f"shortlist must be at least 1 or None, got {shortlist}")
    index = NgramIndex(train_texts, n)
    train_tokens = [" ".join(tokenize(t)) for t in train_texts]
    train_lengths = np.array([len(t.split()) for t in train_tokens], dtype=np.float64)
    references: dict[tuple[int, int], list[str]] = {}
    hypotheses: dict[tuple[int, int], list[str]] = {}
    for i, text in enumerate(texts):
        shared: Counter[int] = Counter()
        for gram in _ngrams(text, n):
            shared.update(index.postings.get(gram, ()))
        if not shared:
            continue
        tokens = " ".join(tokenize(text))
        candidates = np.fromiter(shared.keys(), dtype=np.int64, count=len(shared))
        if shortlist is not None and len(candidates) > shortlist:
            counts = np.fromiter(shared.values(), dtype=np.float64, count=len(shared))
            estimate = _bleu_estimate(counts, len(tokens.split()), train_lengths[candidates], n)
            order = np.lexsort((candidates, -counts, -estimate))  # highest estimate, then most shared, then first
            candidates = candidates[order[:shortlist]]
        for j in candidates.tolist():
            references[(i, j)] = [train_tokens[j]]
            hypotheses[(i, j)] = [tokens]
    best = np.zeros(len(texts))
    nearest = np.full(len(texts), -1, dtype=np.int64)
    for (i, j), score in _bleu_n(references, hypotheses, n).items():
        if nearest[i] < 0 or score > best[i] or (score == best[i] and j < nearest[i]):  # ties: first in training
            best[i], nearest[i] = score, j
    return {
        "max_bleu_to_train_mean": float(best.mean()),
        "max_bleu_to_train": best.tolist(),
        "nearest_train_index": nearest.tolist(),
        "verbatim_rate": verbatim_copy_rate(texts, train_texts),
        "n": n,
        "approximation": (
            f"BLEU-{n} against the {shortlist} training reports sharing {n}-grams with the best BLEU estimate"
            if shortlist is not None
            else f"BLEU-{n} against every training report sharing a {n}-gram"
        ),
    }
