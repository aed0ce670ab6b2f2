"""Differentiable augmentation of the image discriminator's inputs (DiffAugment; Zhao et al., NeurIPS 2020).

A discriminator trained on a few thousand images learns them by heart and stops giving the generator a useful
signal. DiffAugment applies the same family of random, differentiable transforms to real and generated images
every time the image discriminator reads them, in D's step and in G's, so D never sees the raw training images
and G's gradient passes through the transform. Each image of a batch draws its own parameters.

Policies (in the order they are applied):

* ``"brightness"``: add U(-0.5, 0.5);
* ``"contrast"``: scale the deviation from the image mean by U(0.5, 1.5);
* ``"translation"``: shift by up to ``translation_ratio`` of the side (whole pixels), filling with zeros;
* ``"cutout"``: zero one square of ``cutout_ratio`` of the side at a random place.

DiffAugment's ``color`` policy also changes saturation, which a grey radiograph does not have; its brightness and
contrast are the two above.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["DIFF_AUGMENT_POLICIES", "DiffAugment", "diff_augment"]

DIFF_AUGMENT_POLICIES = ("brightness", "contrast", "translation", "cutout")


def _brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def _contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float) -> torch.Tensor:
    """Shift each image by whole pixels, up to ``ratio`` of its height / width, zeros coming in (a gather, so the
    gradient reaches every pixel that stays in view)."""
    b, _, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy  # source row of each output row
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx
    padded = F.pad(x, [1, 1, 1, 1])  # index 0 and the last index are the zero fill
    rows = (rows + 1).clamp(0, h + 1).expand(b, h, w)
    cols = (cols + 1).clamp(0, w + 1).expand(b, h, w)
    batch = torch.arange(b, device=x.device).view(b, 1, 1).expand(b, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def _cutout(x: torch.Tensor, ratio: float) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    top = torch.randint(0, h - ch + 1, (b, 1, 1), device=x.device)
    left = torch.randint(0, w - cw + 1, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def _policy_names(policy: str | Sequence[str]) -> list[str]:
    """``policy`` as a list of names (one name may be given alone); an unknown name is a ``ValueError``."""
    names = [policy] if isinstance(policy, str) else list(policy)
    unknown = [name for name in names if name not in DIFF_AUGMENT_POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policies {unknown}; choose from {list(DIFF_AUGMENT_POLICIES)}")
    return names


def diff_augment(
    x: torch.Tensor,
    policy: str | Sequence[str] = DIFF_AUGMENT_POLICIES,
    translation_ratio: float = 0.125,
    cutout_ratio: float = 0.5,
) -> torch.Tensor:
    """``x`` ``[B, C, H, W]`` with the transforms of ``policy`` applied, each image with its own random draw."""
    for name in _policy_names(policy):
        if name == "brightness":
            x = _brightness(x)
        elif name == "contrast":
            x = _contrast(x)
        elif name == "translation":
            x = _translation(x, translation_ratio)
        else:
            x = _cutout(x, cutout_ratio)
    return x


class DiffAugment:
    """Callable ``DiffAugment(policy)(images)``: :func:`diff_augment` with a policy checked once, at construction
    (a config typo fails when the trainer is built, not at the first iteration)."""

    def __init__(
        self,
        policy: str | Sequence[str] = DIFF_AUGMENT_POLICIES,
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
    ) -> None:
        if not 0.0 <= translation_ratio < 0.5 or not 0.0 < cutout_ratio <= 1.0:
            raise ValueError(
                f"translation_ratio={translation_ratio} must be in [0, 0.5) and cutout_ratio={cutout_ratio} in (0, 1]"
            )
        self.policy = _policy_names(policy)
        self.translation_ratio, self.cutout_ratio = translation_ratio, cutout_ratio

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.policy, self.translation_ratio, self.cutout_ratio)

    def __repr__(self) -> str:
        return f"DiffAugment(policy={self.policy})"
