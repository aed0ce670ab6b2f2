"""Diversity and novelty of report sets (distinct-n, self-BLEU within label sets, novelty against training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bundle.evaluation.text_diversity import distinct_n, label_set_keys, novelty, self_bleu, tokenize
from tests.tiny import grammar_reports

CLASSES = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax")


# ------------------------------------------------------------------------------------------ tokens, distinct-n
def test_tokenize_lower_cases_and_drops_punctuation():
    assert tokenize("No pleural effusion. Mild CARDIOMEGALY, stable.") == [
        "no",
        "pleural",
        "effusion",
        "mild",
        "cardiomegaly",
        "stable",
    ]


def test_distinct_n_of_copies_is_one_over_the_number_of_copies():
    report = "the heart size is normal and the lungs are clear"  # 10 tokens; "the" repeats, no bigram does
    assert distinct_n([report] * 4, 2) == 9 / 36
    assert distinct_n([report] * 4, 1) == 9 / 40  # 9 distinct words of 40
    assert distinct_n([report], 2) == 1.0


def test_distinct_n_of_all_distinct_tokens_is_one():
    reports = ["alpha beta gamma delta", "epsilon zeta", "eta theta iota"]
    for n in (1, 2, 3):
        assert distinct_n(reports, n) == 1.0


def test_distinct_n_counts_within_reports_and_reads_case_and_punctuation_away():
    # the bigram "b c" would span the two reports if they were joined; it must not be counted
    assert distinct_n(["a b", "c d"], 2) == 1.0
    assert distinct_n(["No effusion.", "no EFFUSION"], 2) == 1 / 2
    # a report shorter than n adds no n-gram: 2 distinct trigrams of 2
    assert distinct_n(["a b c d", "x y"], 3) == 1.0


def test_distinct_n_rejects_empty_and_undefined_input():
    with pytest.raises(ValueError, match="no reports"):
        distinct_n([], 2)
    with pytest.raises(ValueError, match="undefined"):
        distinct_n(["one two", "three"], 3)
    with pytest.raises(ValueError, match="positive integer"):
        distinct_n(["a b"], 0)


# ------------------------------------------------------------------------------------------ self-BLEU
IDENTICAL = {
    "cardiomegaly": "Moderate cardiomegaly. No pleural effusion or pneumothorax. The lungs are clear.",
    "effusion": "Small left pleural effusion with blunting of the costophrenic angle. Normal heart size.",
}


def test_self_bleu_of_identical_reports_within_groups_is_one():
    reports = [IDENTICAL["cardiomegaly"]] * 3 + [IDENTICAL["effusion"]] * 2
    groups = ["cardiomegaly"] * 3 + ["effusion"] * 2
    assert self_bleu(reports, groups) == pytest.approx(1.0, abs=1e-6)
    # a report alone in its group has no references and is left out, so it cannot lower the score
    assert self_bleu(reports + ["Large right pneumothorax."], groups + ["pneumothorax"]) == pytest.approx(1.0, abs=1e-6)


def test_self_bleu_of_disjoint_vocabularies_is_about_zero():
    reports = [
        "alpha beta gamma delta epsilon zeta",
        "eta theta iota kappa lambda mu",
        "nu xi omicron pi rho sigma",
    ]
    score = self_bleu(reports, ["g"] * 3)
    assert math.isfinite(score) and 0.0 <= score < 1e-3


def test_self_bleu_is_within_groups_only():
    # each group holds two copies of one report; across groups the reports share nothing
    a, b = "alpha beta gamma delta epsilon", "zeta eta theta iota kappa"
    assert self_bleu([a, a, b, b], [0, 0, 1, 1]) == pytest.approx(1.0, abs=1e-6)
    assert self_bleu([a, b, a, b], [0, 0, 1, 1]) < 1e-3


def test_self_bleu_samples_references_reproducibly():
    reports = grammar_reports(40, seed=3)
    groups = ["same"] * len(reports)
    full = self_bleu(reports, groups, max_per_group=len(reports))
    sampled = self_bleu(reports, groups, max_per_group=8, seed=1)
    assert sampled == self_bleu(reports, groups, max_per_group=8, seed=1)
    assert math.isfinite(sampled) and 0.0 < sampled < full  # fewer references clip fewer n-grams
    assert full < 1.0


def test_self_bleu_needs_a_group_of_two():
    with pytest.raises(ValueError, match="two or more"):
        self_bleu(["a b c d", "e f g h"], ["x", "y"])
    with pytest.raises(ValueError, match="group keys"):
        self_bleu(["a b c d", "e f g h"], ["x"])


def test_label_set_keys_name_positive_and_unknown_classes():
    labels = [[1, 0, 1], [0, 0, 0], [1, -1, 0]]
    assert label_set_keys(labels, CLASSES) == [
        "Cardiomegaly + Pneumothorax",
        "none",
        "Cardiomegaly + ?Pleural Effusion",
    ]
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        label_set_keys([[1, 0]], CLASSES)


# ------------------------------------------------------------------------------------------ novelty
TRAINING = [
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "Moderate cardiomegaly. Small left pleural effusion. No pneumothorax is seen.",
    "Right lower lobe consolidation, concerning for pneumonia. No pleural effusion.",
]


def test_novelty_of_a_training_report_is_one_and_of_new_text_below_one():
    copied = novelty([TRAINING[1]], TRAINING)
    assert copied["max_bleu_to_train"][0] == pytest.approx(1.0, abs=1e-6)
    assert copied["nearest_train_index"] == [1]
    assert copied["verbatim_rate"] == 1.0
    # case and whitespace do not make a copy new
    assert (
        novelty(["MODERATE cardiomegaly.  small left pleural effusion. no pneumothorax is seen."], TRAINING)[
            "verbatim_rate"
        ]
        == 1.0
    )
    new = novelty(["Moderate cardiomegaly. Small left pleural effusion. Mild pulmonary edema."], TRAINING)
    assert 0.0 < new["max_bleu_to_train"][0] < 0.9
    assert new["nearest_train_index"] == [1]
    assert new["verbatim_rate"] == 0.0


def test_novelty_mean_and_unmatched_reports():
    out = novelty([TRAINING[0], "completely unrelated words about nothing at all"], TRAINING)
    assert out["max_bleu_to_train"][1] == 0.0 and out["nearest_train_index"][1] == -1  # shares no 4-gram
    assert out["max_bleu_to_train_mean"] == pytest.approx(0.5, abs=1e-6)
    assert out["verbatim_rate"] == 0.5
    with pytest.raises(ValueError, match="no generated reports"):
        novelty([], TRAINING)
    with pytest.raises(ValueError, match="no training reports"):
        novelty(["a b c d"], [])


def test_novelty_shortlist_matches_exhaustive_scoring_on_grammar_reports():
    training = grammar_reports(200, seed=0)
    generated = grammar_reports(40, seed=1)
    short = novelty(generated, training, shortlist=8)
    full = novelty(generated, training, shortlist=None)
    best_short, best_full = np.array(short["max_bleu_to_train"]), np.array(full["max_bleu_to_train"])
    assert np.all(best_short <= best_full + 1e-12)  # the shortlist only ever scores a subset
    assert best_full.mean() - best_short.mean() < 0.01
    assert 0.3 < full["max_bleu_to_train_mean"] < 1.0  # formulaic grammar text: close to training, not copies
    assert math.isfinite(short["verbatim_rate"])
