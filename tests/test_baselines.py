"""Trivial report baselines: they meet report label F1 by construction, and the diversity / novelty measures
tell them apart from generation."""

from __future__ import annotations

import numpy as np
import pytest

from bundle.data.labels import DEFAULT_CLASSES
from bundle.evaluation.baselines import BaselineReports, most_common_per_label_set, retrieval_by_labels
from bundle.evaluation.clinical import label_f1, label_reports
from bundle.evaluation.text_diversity import distinct_n, label_set_keys, novelty, self_bleu
from tests.tiny import grammar_reports


@pytest.fixture(scope="module")
def grammar_split() -> dict:
    """600 grammar reports labelled by the project's labeler (the dataset's labels), split 400 / 200."""
    reports = grammar_reports(600)
    labels = label_reports(reports, DEFAULT_CLASSES)
    return {
        "train_reports": reports[:400],
        "train_labels": labels[:400],
        "test_reports": reports[400:],
        "test_labels": labels[400:],
    }


def _exists_in(rows: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    return np.array([(vectors == row).all(axis=1).any() for row in rows])


# ------------------------------------------------------------------------------------------ retrieval
def test_retrieval_returns_training_reports_with_the_requested_labels(grammar_split):
    train_reports, train_labels = grammar_split["train_reports"], grammar_split["train_labels"]
    requests = grammar_split["test_labels"]
    out = retrieval_by_labels(train_reports, train_labels, requests, seed=0)
    assert isinstance(out, BaselineReports) and len(out.reports) == len(requests)
    exact = _exists_in(requests, train_labels)
    assert exact.sum() > 150 and (~exact).sum() >= 1  # most label sets seen in training, a few not
    for k in np.flatnonzero(exact):
        np.testing.assert_array_equal(train_labels[out.train_indices[k]], requests[k])
        assert out.reports[k] == train_reports[out.train_indices[k]]
    assert [d > 0 for d in out.distances] == (~exact).tolist()
    assert out.num_fallbacks == int((~exact).sum())
    assert out.info()["num_fallbacks"] == out.num_fallbacks
    # the circularity: relabelling the retrieved reports gives the requests back, so label F1 is perfect
    scores = label_f1(list(np.asarray(out.reports)[exact]), requests[exact], DEFAULT_CLASSES)
    assert scores["mean_f1"] == 1.0 and scores["micro_f1"] == 1.0


def test_retrieval_copies_and_keeps_the_real_diversity(grammar_split):
    requests = grammar_split["test_labels"]
    out = retrieval_by_labels(grammar_split["train_reports"], grammar_split["train_labels"], requests, seed=0)
    real = distinct_n(grammar_split["test_reports"], 2)
    retrieved = distinct_n(out.reports, 2)
    assert abs(retrieved - real) < 0.05
    assert novelty(out.reports, grammar_split["train_reports"], shortlist=4)["verbatim_rate"] == 1.0
    assert retrieval_by_labels(grammar_split["train_reports"], grammar_split["train_labels"], requests, seed=0) == out
    assert retrieval_by_labels(grammar_split["train_reports"], grammar_split["train_labels"], requests, seed=1) != out


def test_retrieval_falls_back_to_the_nearest_label_vector():
    reports = ["cardio", "effusion", "both", "cardio again"]
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0]])
    # [1, 0, 1]: Hamming 1 from rows 0 and 3 (the same vector), 3 from row 1, 2 from row 2
    out = retrieval_by_labels(reports, labels, [[1, 0, 1]] * 20, seed=0)
    assert set(out.train_indices) == {0, 3}  # both rows of the nearest vector get drawn
    assert out.distances == [1] * 20 and out.num_fallbacks == 20
    assert out.info() == {"num_requests": 20, "num_fallbacks": 20, "fallback_rate": 1.0, "mean_fallback_distance": 1.0}
    # [0, 0, 0]: Hamming 1 from [1, 0, 0] and from [0, 1, 0]: a tie, broken at random
    tied = retrieval_by_labels(reports, labels, [[0, 0, 0]] * 30, seed=0)
    assert {reports[i] for i in tied.train_indices} == {"cardio", "effusion", "cardio again"}
    exact = retrieval_by_labels(reports, labels, [[0, 1, 0]], seed=0)
    assert exact.reports == ["effusion"] and exact.num_fallbacks == 0
    assert retrieval_by_labels(reports, labels, np.zeros((0, 3))).reports == []


def test_baselines_check_their_inputs():
    with pytest.raises(ValueError, match="2 training reports but 3 label rows"):
        retrieval_by_labels(["a", "b"], np.zeros((3, 2)), [[0, 0]])
    with pytest.raises(ValueError, match=r"\[M, 2\]"):
        retrieval_by_labels(["a", "b"], np.zeros((2, 2)), [[0, 0, 1]])
    with pytest.raises(ValueError, match="non-empty"):
        most_common_per_label_set([], np.zeros((0, 2)), [[0, 0]])


# ------------------------------------------------------------------------------------------ most common
def test_most_common_counts_normalised_reports():
    reports = ["Other text.", "No acute process.", "no  ACUTE process.", "Effusion.", "Other text."]
    labels = np.array([[0, 0], [0, 0], [0, 0], [1, 0], [0, 0]])
    # "no acute process" x2 ties "other text" x2: the form seen first in training order wins
    out = most_common_per_label_set(reports, labels, [[0, 0], [1, 0], [1, 1]])
    assert out.reports == ["Other text.", "Effusion.", "Effusion."]
    assert out.train_indices == [0, 3, 3] and out.distances == [0, 0, 1]
    more = most_common_per_label_set(reports + ["NO ACUTE PROCESS."], np.vstack([labels, [[0, 0]]]), [[0, 0]])
    assert more.reports == ["No acute process."] and more.train_indices == [1]  # the first text of the form


def test_most_common_collapses_diversity_below_retrieval(grammar_split):
    train_reports, train_labels = grammar_split["train_reports"], grammar_split["train_labels"]
    requests = grammar_split["test_labels"]
    common = most_common_per_label_set(train_reports, train_labels, requests)
    retrieved = retrieval_by_labels(train_reports, train_labels, requests, seed=0)
    assert common.num_fallbacks == retrieved.num_fallbacks  # same requests, same fallback rule
    assert novelty(common.reports, train_reports, shortlist=4)["verbatim_rate"] == 1.0
    assert distinct_n(common.reports, 2) < 0.8 * distinct_n(retrieved.reports, 2)  # 0.060 vs 0.093 here
    # self-BLEU within label sets: one report per set is 1; retrieval, like the real reports, is below 1
    groups = label_set_keys(requests, DEFAULT_CLASSES)
    assert len(set(common.reports)) <= len(set(groups)) < len(set(retrieved.reports))
    assert self_bleu(common.reports, groups) == pytest.approx(1.0, abs=1e-6)
    retrieved_self = self_bleu(retrieved.reports, groups)
    real_self = self_bleu(grammar_split["test_reports"], groups)
    assert retrieved_self < 0.9 and real_self < 0.9  # 0.78 and 0.67 here: retrieval repeats small training pools
