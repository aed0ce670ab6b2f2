"""Memorisation audit: nearest neighbours, SSIM to the nearest candidates, report n-gram overlap, the flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bundle.evaluation.memorisation import (
    NgramIndex,
    closest_pairs_figure,
    memorisation_audit,
    nearest_neighbours,
    ngram_overlap,
    ssim_nearest,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """Smooth random images in [0, 1]: independent draws from one distribution."""
    coarse = torch.rand(n, 1, size // 2, size // 2, generator=_gen(seed))
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def _features(images: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for a CXR network's features: 8 x 8 average pooling, flattened."""
    return F.avg_pool2d(images, 4).flatten(1)


@pytest.fixture(scope="module")
def population() -> dict[str, torch.Tensor]:
    train = _images(60, 0)
    copies = (train[:30] + 0.03 * torch.randn(30, 1, 32, 32, generator=_gen(1))).clamp(0, 1)
    return {"train": train, "heldout": _images(30, 2), "independent": _images(30, 3), "copies": copies}


# ------------------------------------------------------------------------------------------ nearest neighbours
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_nearest_neighbours_match_brute_force(metric):
    g = _gen(4)
    query, train = torch.randn(11, 5, generator=g), torch.randn(17, 5, generator=g)
    if metric == "cosine":
        full = 1 - F.normalize(query, dim=1) @ F.normalize(train, dim=1).T
    else:
        full = ((query[:, None] - train[None]) ** 2).sum(-1).sqrt()
    expected_d, expected_i = full.topk(3, dim=1, largest=False)
    distances, indices = nearest_neighbours(query, train, metric=metric, k=3, chunk_size=4)
    assert distances.shape == indices.shape == (11, 3)
    torch.testing.assert_close(indices, expected_i)
    torch.testing.assert_close(distances, expected_d, atol=1e-4, rtol=1e-4)


def test_nearest_neighbour_of_a_copy_is_its_source():
    train = torch.randn(20, 8, generator=_gen(5))
    distances, indices = nearest_neighbours(train[[3, 7]].numpy() * 2.0, train)  # cosine ignores the scale
    assert indices[:, 0].tolist() == [3, 7]
    assert distances[:, 0].max() < 1e-5
    with pytest.raises(ValueError, match="metric must be one of"):
        nearest_neighbours(train, train, metric="manhattan")
    with pytest.raises(ValueError, match="differ in size"):
        nearest_neighbours(train[:, :4], train)


def test_ssim_nearest_finds_the_source_among_candidates(population):
    train = population["train"]
    query = population["copies"][:5]
    candidates = torch.tensor([[9, 0], [1, 8], [7, 2], [3, 9], [9, 4]])  # the source is one of two candidates
    ssim, index = ssim_nearest(query, train, candidates)
    assert index.tolist() == [0, 1, 2, 3, 4]
    assert ssim.min() > 0.8
    others, _ = ssim_nearest(query, train, torch.tensor([[9], [8], [7], [9], [9]]))
    assert others.max() < 0.5
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ssim_nearest(query * 2 - 1, train, candidates)


# ------------------------------------------------------------------------------------------ report n-grams
TRAIN_REPORTS = [
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "Moderate cardiomegaly with small bilateral pleural effusions and mild pulmonary edema.",
    "The heart size is normal. The lungs are clear.",
]


def test_ngram_overlap_of_a_copied_report_is_one():
    result = ngram_overlap(TRAIN_REPORTS[1].upper(), TRAIN_REPORTS)
    assert result == {"index": 1, "jaccard": pytest.approx(1.0), "overlap": pytest.approx(1.0)}


def test_ngram_overlap_picks_the_nearest_by_jaccard():
    # every 4-gram of this report is in reports 0 and 2; report 2 has no others, so it is the nearest
    result = ngram_overlap("the heart size is normal the lungs are clear", TRAIN_REPORTS)
    assert result["index"] == 2 and result["overlap"] == pytest.approx(1.0)
    partial = ngram_overlap("Moderate cardiomegaly with small bilateral pleural effusions, no edema.", TRAIN_REPORTS)
    assert partial["index"] == 1 and 0.3 < partial["overlap"] < 1.0
    unrelated = ngram_overlap("Left upper lobe mass concerning for malignancy.", NgramIndex(TRAIN_REPORTS))
    assert unrelated == {"index": -1, "jaccard": 0.0, "overlap": 0.0}
    with pytest.raises(ValueError, match="holds 4-grams"):
        ngram_overlap("text", NgramIndex(TRAIN_REPORTS, n=4), n=3)


# ------------------------------------------------------------------------------------------ the audit
def _audit(population, generated: str, **kwargs):
    gen, held, train = population[generated], population["heldout"], population["train"]
    return memorisation_audit(_features(gen), _features(held), _features(train), gen, held, train, **kwargs)


def test_noisy_copies_of_training_images_are_flagged(population):
    audit = _audit(population, "copies", gen_reports=TRAIN_REPORTS[:2], train_reports=TRAIN_REPORTS)
    assert audit["flag"] is True
    assert audit["verdict"].startswith("MEMORISATION SUSPECTED: 100% of generated samples sit closer")
    assert audit["features"]["flag"] and audit["ssim"]["flag"]
    assert audit["features"]["share_closer"] == pytest.approx(1.0)
    assert audit["features"]["p_value"] < 0.01
    # the closest pairs are the copies and their sources
    assert all(p["generated"] == p["training"] for p in audit["closest_pairs"])
    assert len(audit["closest_pairs"]) == 8 and all(p["ssim"] > 0.8 for p in audit["closest_pairs"])
    distances = [p["distance"] for p in audit["closest_pairs"]]
    assert distances == sorted(distances)
    assert audit["features"]["nearest_train"] == list(range(30))
    assert audit["reports"]["verbatim_copy_rate"] == pytest.approx(1.0)
    assert audit["reports"]["mean_overlap"] == pytest.approx(1.0)
    assert json.loads(json.dumps(audit))["verdict"] == audit["verdict"]  # JSON-ready for the evaluation report


def test_independent_samples_are_not_flagged(population):
    audit = _audit(population, "independent")
    assert audit["flag"] is False
    assert audit["verdict"].startswith("no memorisation flag: ")
    assert audit["features"]["share_closer"] < 0.1
    assert audit["features"]["p_value"] > 0.05
    assert not audit["ssim"]["flag"]
    gen_median = audit["features"]["generated_summary"]["median"]
    held_median = audit["features"]["heldout_summary"]["median"]
    assert gen_median == pytest.approx(held_median, rel=0.5)  # same population: similar distance distributions
    assert "reports" not in audit


def test_audit_on_features_alone_and_argument_checks(population):
    train_f = _features(population["train"])
    audit = memorisation_audit(_features(population["copies"]), _features(population["heldout"]), train_f)
    assert audit["flag"] is True and "ssim" not in audit
    assert len(audit["features"]["generated_to_train"]) == 30 and len(audit["features"]["heldout_to_train"]) == 30
    with pytest.raises(ValueError, match="together"):
        memorisation_audit(train_f, train_f, train_f, gen_images=population["train"])
    with pytest.raises(ValueError, match="quantile"):
        memorisation_audit(train_f, train_f, train_f, quantile=0.7)


def test_closest_pairs_figure_writes_a_png(population, tmp_path):
    audit = _audit(population, "copies")
    path = closest_pairs_figure(
        population["copies"],
        population["train"],
        audit["closest_pairs"],
        tmp_path / "p.png",
        max_pairs=4,
        title="closest pairs",
    )
    with Image.open(path) as image:
        width, height = image.size
    assert image.format == "PNG" and width > height > 100
    path2 = closest_pairs_figure(population["copies"], population["train"], [(0, 0), (1, 1)], tmp_path / "q.png")
    assert path2.stat().st_size > 0
    assert np.asarray(Image.open(path2)).std() > 0  # not a blank canvas
