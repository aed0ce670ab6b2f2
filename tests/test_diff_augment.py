"""DiffAugment of the image discriminator's inputs: each policy does what it says, per image, differentiably."""

from __future__ import annotations

import pytest
import torch

from bundle.diff_augment import DIFF_AUGMENT_POLICIES, DiffAugment, diff_augment


def images(b: int = 6, size: int = 8) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(b, 1, size, size) + 1.0  # strictly positive: a zero marks a filled / cut pixel


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` [C, H, W] moved down dy / right dx, zeros coming in."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_translation_shifts_each_image_by_whole_pixels_within_the_ratio() -> None:
    x = images(16)
    torch.manual_seed(1)
    out = diff_augment(x, ["translation"], translation_ratio=0.25)  # up to 2 pixels of 8
    shifts = []
    for a, b in zip(x, out):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(shift(a, dy, dx), b)]
        assert len(found) == 1
        shifts.append(found[0])
    assert len(set(shifts)) > 1  # each image draws its own shift


def test_cutout_zeroes_one_square_per_image() -> None:
    x = images()
    out = diff_augment(x, ["cutout"], cutout_ratio=0.5)
    for b in out:
        rows, cols = torch.nonzero(b[0] == 0, as_tuple=True)
        assert len(rows) == 16 and rows.max() - rows.min() == 3 and cols.max() - cols.min() == 3
    assert torch.equal(out[out != 0], x[out != 0])


def test_brightness_and_contrast_are_per_image_and_keep_what_they_should() -> None:
    x = images()
    bright = diff_augment(x, ["brightness"])
    offsets = (bright - x).flatten(1)
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets))  # one offset per image
    assert offsets.abs().max() <= 0.5 and offsets[:, 0].unique().numel() == len(x)
    contrast = diff_augment(x, ["contrast"])
    assert torch.allclose(contrast.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-6)
    ratio = (contrast - contrast.mean(dim=(1, 2, 3), keepdim=True)) / (x - x.mean(dim=(1, 2, 3), keepdim=True))
    assert ratio.flatten(1).min() >= 0.5 - 1e-4 and ratio.flatten(1).max() <= 1.5 + 1e-4


def test_every_policy_passes_the_gradient_to_the_images() -> None:
    x = images().requires_grad_(True)
    out = diff_augment(x, DIFF_AUGMENT_POLICIES)
    assert out.shape == x.shape
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.abs().sum() > 0
    (grad,) = torch.autograd.grad(diff_augment(x, ["translation", "cutout"]).sum(), x)
    assert ((grad == 0) | (grad == 1)).all() and (grad == 1).any() and (grad == 0).any()  # cut pixels get none


def test_unknown_policies_and_ratios_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="'colour'"):
        DiffAugment(["translation", "colour"])
    with pytest.raises(ValueError, match="'colour'"):
        diff_augment(images(), ["colour"])
    with pytest.raises(ValueError, match="translation_ratio"):
        DiffAugment(translation_ratio=0.5)
    assert DiffAugment("cutout").policy == ["cutout"]
