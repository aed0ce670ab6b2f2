"""Image metrics of the evaluation suite: fidelity (FID) and diversity (MS-SSIM), on MONAI's metrics.

* :func:`fid` is the Frechet distance between Gaussians fitted to features of real and generated images
  (EMIXER appendix 6.3.3; RoentGen section 5 uses a CXR network's features, as the project does). The
  feature extractor is the caller's: these functions take feature arrays.
* :func:`ms_ssim_diversity` is RoentGen's diversity measure: MS-SSIM between the samples generated for the same
  label set (4 samples -> 6 pairs), averaged; lower means more diverse.
* :func:`fid_with_reference` and :func:`label_set_diversity` are the evaluation run's blocks built on them: FID
  beside a real-vs-real reference at a matched set size, and MS-SSIM over the label sets that have enough images.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import FIDMetric, MultiScaleSSIMMetric

__all__ = [
    "MS_SSIM_WEIGHTS",
    "check_unit_range",
    "fid",
    "fid_with_reference",
    "label_set_diversity",
    "ms_ssim_diversity",
    "ms_ssim_weights",
]

#: Wang et al.'s five MS-SSIM scale weights (MONAI's default), finest scale first.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _features(x: Any, what: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu().double()
    if tensor.ndim != 2:
        raise ValueError(f"{what} must be [num_images, num_features], got shape {tuple(tensor.shape)}")
    if tensor.shape[0] < 2 or tensor.shape[1] < 2:
        raise ValueError(f"{what} needs at least 2 images and 2 features, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{what} holds non-finite values")
    return tensor


def fid(real_features: Any, fake_features: Any) -> float:
    """Frechet distance between the feature distributions of real and generated images (lower is better).

    Features are ``[num_images, num_features]`` (numpy or torch), e.g. the pooled features of a CXR
    classifier; both sets come from the same network. Computed in float64 by ``monai.metrics.FIDMetric``,
    whose call convention is ``(y_pred=generated, y=real)``. The covariance of F-dimensional features needs
    well over F images per set; with fewer the estimate is biased upwards, so compare FIDs only between sets of
    equal size.
    """
    real = _features(real_features, "real_features")
    fake = _features(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in size: {real.shape[1]} vs {fake.shape[1]}")
    with warnings.catch_warnings():  # MONAI passes scipy's deprecated `disp` argument to sqrtm
        warnings.simplefilter("ignore", DeprecationWarning)
        value = FIDMetric()(fake, real)
    return float(value)


def ms_ssim_weights(image_size: int, kernel_size: int = 7) -> tuple[float, ...]:
    """MS-SSIM scale weights valid for square images of ``image_size`` px and a ``kernel_size`` window.

    Each MS-SSIM scale halves the image, and the window must fit the coarsest one. MONAI checks this as
    ``image_size // (levels - 1) ** 2 > kernel_size - 1``. With 5 levels and a 7 px window this holds from
    112 px (128 px images: 8 > 6); MONAI's default 11 px window needs 176 px. Smaller images get fewer levels:
    the finest-first prefix of Wang et al.'s weights, renormalised so the exponents sum to 1 as theirs do (the
    score stays a weighted geometric mean of the scales): 64 px -> 4 levels, 32 px -> 3 with a 7 px window. The
    coarsest level must also be at least ``kernel_size`` px.
    """
    for levels in range(len(MS_SSIM_WEIGHTS), 0, -1):
        fits_monai = image_size // max(1, levels - 1) ** 2 > kernel_size - 1
        fits_window = image_size // 2 ** (levels - 1) >= kernel_size
        if fits_monai and fits_window:
            if levels == len(MS_SSIM_WEIGHTS):
                return MS_SSIM_WEIGHTS
            weights = MS_SSIM_WEIGHTS[:levels]
            total = sum(weights)
            return tuple(w / total for w in weights)
    raise ValueError(f"images of {image_size} px are smaller than the {kernel_size} px MS-SSIM window")


def check_unit_range(images: torch.Tensor, what: str, atol: float = 1e-4) -> None:
    """Raise when ``images`` leave [0, 1] (SSIM's luminance term assumes non-negative intensities)."""
    low, high = float(images.min()), float(images.max())
    if low < -atol or high > 1 + atol:
        raise ValueError(
            f"{what} must be in [0, 1], got [{low:.3g}, {high:.3g}] (map the bundle's [-1, 1] images with (x + 1) / 2)"
        )


def ms_ssim_diversity(
    images_by_label_set: Mapping[Any, torch.Tensor | np.ndarray],
    per_set: int = 4,
    kernel_size: int = 7,
    weights: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Mean and std of MS-SSIM over all pairs of ``per_set`` samples of each label set (lower = more diverse).

    Args:
        images_by_label_set: ``{label set: images [N, C, H, W] in [0, 1]}``; the first ``per_set`` images of each
            set are compared pairwise (4 samples -> 6 pairs, as in RoentGen).
        per_set: samples per label set; every set must have at least this many.
        kernel_size: Gaussian window (sigma 1.5). 7 px, not MONAI's default 11: with 5 scales the coarsest is
            1/16 of the image, 8 px for the 128 px images EMIXER generates, and MONAI rejects an 11 px window
            there (its check needs ``128 // 16 > kernel_size - 1``). RoentGen's 11 px window was for 512 px images.
        weights: scale weights; by default :func:`ms_ssim_weights` for the image size (5 scales at 128 px).

    Returns:
        ``mean`` and ``std`` over all pairs, ``per_set`` (``{str(label set): mean of its pairs}``),
        ``num_sets``, ``num_pairs``, ``weights`` and ``kernel_size``.
    """
    if per_set < 2:
        raise ValueError(f"per_set must be at least 2 (pairs), got {per_set}")
    if not images_by_label_set:
        raise ValueError("no label sets")
    pairs = list(itertools.combinations(range(per_set), 2))
    first, second = [i for i, _ in pairs], [j for _, j in pairs]
    metric = None
    size = None
    per_set_values: dict[str, torch.Tensor] = {}
    for key, images in images_by_label_set.items():  # one set at a time keeps memory at 6 pairs
        images = torch.as_tensor(images).float()
        if images.ndim != 4:
            raise ValueError(f"label set {key!r}: images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if images.shape[0] < per_set:
            raise ValueError(f"label set {key!r} has {images.shape[0]} images, {per_set} are needed")
        if size is None:
            size = tuple(images.shape[1:])
            weights = tuple(weights) if weights is not None else ms_ssim_weights(min(size[1:]), kernel_size)
            metric = MultiScaleSSIMMetric(spatial_dims=2, data_range=1.0, kernel_size=kernel_size, weights=weights)
        elif tuple(images.shape[1:]) != size:
            raise ValueError(f"label set {key!r}: image shape {tuple(images.shape[1:])} differs from {size}")
        check_unit_range(images, f"label set {key!r}")
        if str(key) in per_set_values:
            raise ValueError(f"label sets {key!r} collide once written as text")
        per_set_values[str(key)] = metric(images[first], images[second]).flatten().double()
    values = torch.cat(list(per_set_values.values()))
    per_set_means = {key: float(v.mean()) for key, v in per_set_values.items()}
    return {
        "mean": float(values.mean()),
        "std": float(values.std(unbiased=False)),
        "per_set": per_set_means,
        "num_sets": len(per_set_means),
        "num_pairs": int(values.numel()),
        "weights": [float(w) for w in weights],
        "kernel_size": kernel_size,
    }


# ------------------------------------------------------------------------------------------------ the run's blocks
def _take(features: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A random ``size``-row subset of ``features`` (all rows when there are no more)."""
    if len(features) <= size:
        return features
    return features[torch.as_tensor(np.sort(rng.choice(len(features), size=size, replace=False)))]


def fid_with_reference(features: Mapping[str, torch.Tensor], rng: np.random.Generator) -> dict[str, Any]:
    """FID generated vs test (all generated images), and generated vs test beside validation vs test at one
    matched set size (FID is biased upwards for small sets, so only equal sizes compare).

    Args:
        features: ``generated``, ``test`` and ``validation`` features ``[N, D]`` (validation may have 0 rows).
        rng: draws the matched-size subsets.
    """
    gen, test, val = features["generated"], features["test"], features["validation"]
    out: dict[str, Any] = {
        "generated_vs_test": max(0.0, fid(test, gen)),  # float64 rounding can leave -1e-13 for equal sets
        "num_generated": len(gen),
        "num_test": len(test),
        "num_validation": len(val),
        "feature_dim": int(gen.shape[1]),
    }
    size = min(len(gen), len(val))
    if size < 2:
        out.update(matched_size=size, generated_vs_test_matched=None, validation_vs_test=None, ratio=None)
        out["note"] = "the real validation split has fewer than 2 images: no real-vs-real reference"
        return out
    matched = max(0.0, fid(test, _take(gen, size, rng)))
    reference = max(0.0, fid(test, _take(val, size, rng)))
    out.update(
        matched_size=size,
        generated_vs_test_matched=matched,
        validation_vs_test=reference,
        ratio=matched / reference if reference > 0 else None,
    )
    return out


def _label_set_name(labels: np.ndarray, class_names: Sequence[str]) -> str:
    positives = [name for name, v in zip(class_names, labels) if v == 1]
    unknown = [name for name, v in zip(class_names, labels) if v == -1]
    text = "+".join(positives) or "no positive label"
    return text + (f" (unknown: {'+'.join(unknown)})" if unknown else "")


def label_set_diversity(
    images: torch.Tensor, labels: np.ndarray, class_names: Sequence[str], per_set: int
) -> dict[str, Any]:
    """:func:`ms_ssim_diversity` over the label sets (rows of ``labels`` ``[N, K]``) with at least ``per_set`` of the
    ``images`` ``[N, 1, H, W]``, or ``{"skipped": reason}`` when none qualifies or the images are smaller than the
    MS-SSIM window."""
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(labels):
        groups.setdefault(_label_set_name(row, class_names), []).append(index)
    qualifying = {key: images[idx[:per_set]] for key, idx in groups.items() if len(idx) >= per_set}
    if not qualifying:
        return {"skipped": f"no conditioning label set has {per_set} or more images ({len(groups)} sets)"}
    try:
        return ms_ssim_diversity(qualifying, per_set=per_set)
    except ValueError as err:  # images smaller than the MS-SSIM window
        return {"skipped": str(err)}
