"""FID on feature arrays and MS-SSIM diversity (MONAI metrics), at tiny sizes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from monai.metrics import MultiScaleSSIMMetric

from bundle.evaluation.image_metrics import MS_SSIM_WEIGHTS, fid, ms_ssim_diversity, ms_ssim_weights


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _frechet_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """The Frechet distance written out with numpy / scipy, independent of MONAI."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


# ------------------------------------------------------------------------------------------ FID
def test_fid_small_for_same_gaussian_large_for_shifted():
    g = _gen(0)
    real = torch.randn(400, 8, generator=g)
    same = torch.randn(400, 8, generator=g)
    shifted = torch.randn(400, 8, generator=g) + 1.0  # mean moves by 1 in each of 8 dims: FID ~ 8
    close, far = fid(real, same), fid(real, shifted)
    assert 0.0 <= close < 0.5
    assert far == pytest.approx(8.0, rel=0.2)
    assert far > 10 * close


def test_fid_equals_the_formula_and_takes_numpy():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(200, 6))
    fake = rng.normal(size=(150, 6)) * 1.5 + 0.3
    assert fid(real, fake) == pytest.approx(_frechet_numpy(real, fake), rel=1e-6)
    assert fid(real, fake) == pytest.approx(fid(fake, real), rel=1e-6)


@pytest.mark.parametrize(
    "real, fake, problem",
    [
        (np.zeros(10), np.zeros((10, 4)), "num_images, num_features"),
        (np.zeros((1, 4)), np.zeros((10, 4)), "at least 2 images"),
        (np.ones((10, 4)), np.ones((10, 5)), "differ in size"),
        (np.full((10, 4), np.nan), np.ones((10, 4)), "non-finite"),
    ],
)
def test_fid_rejects_bad_features(real, fake, problem):
    with pytest.raises(ValueError, match=problem):
        fid(real, fake)


# ------------------------------------------------------------------------------------------ MS-SSIM weights
def test_ms_ssim_weights_fit_the_image_size():
    assert ms_ssim_weights(128) == MS_SSIM_WEIGHTS  # all 5 scales with a 7 px window
    assert len(ms_ssim_weights(64)) == 4
    assert len(ms_ssim_weights(32)) == 3
    for size in (32, 64):
        weights = ms_ssim_weights(size)
        assert sum(weights) == pytest.approx(1.0)
        assert weights[0] / weights[1] == pytest.approx(MS_SSIM_WEIGHTS[0] / MS_SSIM_WEIGHTS[1])
    with pytest.raises(ValueError, match="smaller than"):
        ms_ssim_weights(6)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_monai_accepts_the_chosen_weights(size):
    x = torch.rand(1, 1, size, size, generator=_gen(size))
    metric = MultiScaleSSIMMetric(spatial_dims=2, kernel_size=7, weights=ms_ssim_weights(size))
    assert metric(x, x).item() == pytest.approx(1.0, abs=1e-5)


def test_monai_default_window_rejects_128_px():
    """Why the diversity metric uses a 7 px window: MONAI's default 11 px fails at EMIXER's 128 px."""
    x = torch.rand(1, 1, 128, 128, generator=_gen(3))
    with pytest.raises(ValueError, match="image height must be larger"):
        MultiScaleSSIMMetric(spatial_dims=2)(x, x)


# ------------------------------------------------------------------------------------------ MS-SSIM diversity
def _smooth(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random images in [0, 1] (coarse noise upsampled), a stand-in for radiographs."""
    coarse = torch.rand(n, 1, size // 8, size // 8, generator=_gen(seed))
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def test_identical_images_score_one_and_noise_near_zero():
    identical = _smooth(1, 128, 0).repeat(4, 1, 1, 1)
    noise = torch.rand(4, 1, 128, 128, generator=_gen(1))
    result = ms_ssim_diversity({"same": identical, "noise": noise})
    assert result["per_set"]["same"] == pytest.approx(1.0, abs=1e-5)
    assert result["per_set"]["noise"] < 0.15
    assert result["num_sets"] == 2 and result["num_pairs"] == 12  # 6 pairs per set of 4
    assert result["kernel_size"] == 7
    assert result["mean"] == pytest.approx((result["per_set"]["same"] + result["per_set"]["noise"]) / 2)
    assert result["std"] > 0.4


def test_near_copies_score_higher_than_a_diverse_set():
    base = _smooth(1, 64, 2)
    near_copies = (base + 0.05 * torch.rand(4, 3, 64, 64, generator=_gen(3))).clamp(0, 1)
    diverse = _smooth(4, 64, 4).repeat(1, 3, 1, 1)
    result = ms_ssim_diversity({(1, 0): near_copies, (0, 1): diverse})  # 64 px, 3 channels: 4 scales
    assert result["per_set"]["(1, 0)"] > result["per_set"]["(0, 1)"] + 0.2
    assert len(result["weights"]) == 4


def test_only_the_first_per_set_images_are_compared():
    images = torch.cat([_smooth(1, 64, 5).repeat(4, 1, 1, 1), torch.rand(4, 1, 64, 64, generator=_gen(6))])
    assert ms_ssim_diversity({"a": images})["mean"] == pytest.approx(1.0, abs=1e-5)
    assert ms_ssim_diversity({"a": images}, per_set=8)["num_pairs"] == 28


@pytest.mark.parametrize(
    "images, problem",
    [
        (torch.rand(3, 1, 64, 64), "has 3 images, 4 are needed"),
        (torch.rand(4, 1, 64, 64) * 2 - 1, r"must be in \[0, 1\]"),
        (torch.rand(4, 64, 64), r"\[N, C, H, W\]"),
    ],
)
def test_ms_ssim_diversity_rejects_bad_sets(images, problem):
    with pytest.raises(ValueError, match=problem):
        ms_ssim_diversity({"set": images})
