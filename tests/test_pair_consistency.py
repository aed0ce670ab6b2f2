"""Image-report pair consistency (:mod:`bundle.evaluation.clinical`): agreement of classifier readings of images
with labeler readings of their reports, its chance level, the generated / real ratio, and validation thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bundle.evaluation.clinical import (
    chance_pair_agreement,
    label_f1,
    pair_agreement,
    pair_consistency_ratio,
    thresholds_from_validation,
)

CLASSES = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax")
PREVALENCE = np.array([0.1, 0.2, 0.3, 0.5])
FOUR = ("No Finding", "Cardiomegaly", "Pleural Effusion", "Edema")


def _real_pairs(n: int, seed: int, flip: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Independent labels of known prevalence; the image reading misses or adds a finding with rate ``flip``."""
    rng = np.random.default_rng(seed)
    report = (rng.random((n, len(PREVALENCE))) < PREVALENCE).astype(float)
    image = np.where(rng.random(report.shape) < flip, 1 - report, report)
    return image, report


def test_pair_agreement_is_macro_f1_over_classes_with_a_positive():
    image = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0]])
    report = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    # Cardiomegaly: TP 1, image-only 1 -> F1 2/3; effusion: F1 1; pneumothorax: no positive, left out
    assert pair_agreement(image, report, CLASSES) == pytest.approx((2 / 3 + 1) / 2)
    assert pair_agreement(report, image, CLASSES) == pytest.approx((2 / 3 + 1) / 2)  # symmetric
    one_sided = np.array([[0, 0, 1], [0, 0, 0], [0, 1, 0]])  # pneumothorax on the report side only: F1 0, kept
    assert pair_agreement(image, one_sided, CLASSES) == pytest.approx((0 + 1 + 0) / 3)


def test_pair_agreement_checks_its_inputs():
    good = np.array([[1, 0, 0]])
    with pytest.raises(ValueError, match="binary"):
        pair_agreement(np.array([[1, 0, -1]]), good, CLASSES)
    with pytest.raises(ValueError, match="binary"):
        pair_agreement(good, np.array([[0.7, 0, 0]]), CLASSES)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        pair_agreement(good[:, :2], good, CLASSES)
    with pytest.raises(ValueError, match="differ in shape"):
        pair_agreement(np.vstack([good, good]), good, CLASSES)
    with pytest.raises(ValueError, match="undefined"):
        pair_agreement(np.zeros((4, 3)), np.zeros((4, 3)), CLASSES)


def test_a_copy_of_the_real_pairs_has_ratio_one():
    image, report = _real_pairs(500, seed=0)
    out = pair_consistency_ratio(image.copy(), report.copy(), image, report, FOUR)
    assert out["ratio"] == 1.0
    assert out["generated"] == out["real"] == pair_agreement(image, report, FOUR)
    assert 0.7 < out["real"] < 0.95  # the 10% flips cost agreement on real pairs too
    assert out["per_class"]["Edema"]["generated"] == out["per_class"]["Edema"]["real"]


def test_shuffled_reports_give_a_ratio_near_chance():
    image, report = _real_pairs(3000, seed=1)
    rng = np.random.default_rng(2)
    shuffled = report[rng.permutation(len(report))]
    out = pair_consistency_ratio(image, shuffled, image, report, FOUR)
    # expected F1 of class k under random pairing: 2 a r / (N (a + r)) with a, r the positives of each side
    a, r = image.sum(axis=0), report.sum(axis=0)
    chance = float(np.mean(2 * a * r / (len(image) * (a + r))))
    assert out["generated_chance"] == pytest.approx(chance)
    expected_ratio = chance / out["real"]
    assert math.isfinite(out["ratio"]) and out["ratio"] < 0.6
    assert out["ratio"] == pytest.approx(expected_ratio, abs=0.03)
    # with perfect real agreement (no flips), the chance F1 of a class is its prevalence
    perfect_image, perfect_report = _real_pairs(3000, seed=3, flip=0.0)
    assert chance_pair_agreement(perfect_image, perfect_report, FOUR) == pytest.approx(PREVALENCE.mean(), abs=0.02)


def test_chance_pair_agreement_is_the_mean_over_random_pairings():
    image, report = _real_pairs(300, seed=4)
    rng = np.random.default_rng(5)
    shuffled = [pair_agreement(image, report[rng.permutation(300)], FOUR) for _ in range(200)]
    assert np.mean(shuffled) == pytest.approx(chance_pair_agreement(image, report, FOUR), abs=0.005)


def test_ratio_needs_real_agreement():
    image = np.array([[1, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="real image-report agreement is 0"):
        pair_consistency_ratio(image, image, image, image[::-1], CLASSES)


def test_thresholds_maximise_validation_f1():
    probabilities = np.array(
        [
            [0.9, 0.8, 0.2],
            [0.8, 0.1, 0.4],
            [0.3, 0.7, 0.6],
            [0.1, 0.6, 0.9],
        ]
    )
    labels = np.array(
        [
            [1, 0, 1],
            [1, 0, 1],
            [0, 0, 0],
            [0, -1, 1],
        ]
    )
    thresholds = thresholds_from_validation(probabilities, labels, default=0.5)
    # class 0: cut below 0.8 (F1 1), midway to 0.3; class 1: no known positive -> default;
    # class 2: positives 0.9, 0.4, 0.2 around a negative 0.6: predicting all gives F1 6/7, the best
    np.testing.assert_allclose(thresholds, [0.55, 0.5, 0.2])
    predicted = (probabilities >= thresholds).astype(float)
    np.testing.assert_array_equal(predicted[:, 0], [1, 1, 0, 0])
    assert label_f1(predicted[:, [0]], labels[:, [0]], CLASSES[:1])["mean_f1"] == 1.0
    # 0.9 (pos), 0.5 (neg), 0.4 (pos), 0.1 (neg): the cut at 0.4 (F1 4/5) beats 0.9 (2/3); midway to 0.1
    assert thresholds_from_validation([[0.9], [0.5], [0.4], [0.1]], [[1], [0], [1], [0]])[0] == pytest.approx(0.25)
    # 0.9 (pos), 0.5 (neg), 0.4 (neg), 0.3 (pos): cuts at 0.9 and 0.3 tie at F1 2/3; the highest cut wins
    assert thresholds_from_validation([[0.9], [0.5], [0.4], [0.3]], [[1], [0], [0], [1]])[0] == pytest.approx(0.7)
    # equal probabilities are one cut: 0.6 (pos), 0.6 (neg), 0.2 (neg) -> cut at 0.6, midway to 0.2
    assert thresholds_from_validation([[0.6], [0.6], [0.2]], [[1], [0], [0]])[0] == pytest.approx(0.4)


def test_thresholds_check_their_inputs():
    with pytest.raises(ValueError, match="differ in shape"):
        thresholds_from_validation(np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        thresholds_from_validation([[np.nan]], [[1]])
    with pytest.raises(ValueError, match="1, 0 or -1"):
        thresholds_from_validation([[0.5]], [[2]])
