"""Adversarial and self-supervision losses of EMIXER.

The hinge loss is BigGAN's: ``relu(1 - d_real) + relu(1 + d_fake)`` for the discriminator and ``-d_fake``
for the generator, on raw logits. (MONAI's ``PatchAdversarialLoss(criterion="hinge")`` squashes the logits
with tanh first, which is a different loss, so it is not used here.) The non-saturating loss is the
original GAN loss in its logit form. The rotation loss is SS-GAN's 4-way rotation prediction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ADVERSARIAL_LOSSES = ("hinge", "non_saturating")


def _check(kind: str) -> None:
    if kind not in ADVERSARIAL_LOSSES:
        raise ValueError(f"adversarial loss {kind!r} is not one of {ADVERSARIAL_LOSSES}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Discriminator loss on real and fake logits (any shape; averaged)."""
    _check(kind)
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Generator loss on the discriminator's logits for generated samples."""
    _check(kind)
    if kind == "hinge":
        return -fake_logits.mean()
    return F.softplus(-fake_logits).mean()


def rotate_batch(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations (0, 90, 180, 270 degrees) of a batch ``[B, C, H, W]`` of square images.

    Returns the rotated images ``[4B, C, H, W]`` and their rotation classes ``[4B]`` (0..3), rotation-major.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotation needs square images, got spatial shape {tuple(images.shape[-2:])}")
    rotated = torch.cat([torch.rot90(images, k, dims=(-2, -1)) for k in range(4)], dim=0)
    targets = torch.arange(4, device=images.device).repeat_interleave(images.shape[0])
    return rotated, targets


def rotation_loss(rotation_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the discriminator's 4-way rotation prediction."""
    return F.cross_entropy(rotation_logits, targets)


def classification_loss(
    class_logits: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor | None = None
) -> torch.Tensor:
    """Multi-label BCE of finding logits ``[B, K]`` against multi-hot ``labels``, averaged over the classes and
    over the rows where ``labelled`` ``[B]`` is 1 (all rows when None; 0 when no row is labelled)."""
    per_item = F.binary_cross_entropy_with_logits(class_logits, labels.to(class_logits.dtype), reduction="none")
    per_item = per_item.mean(dim=1)
    if labelled is None:
        return per_item.mean()
    weights = labelled.to(per_item.dtype).reshape(-1)
    return (per_item * weights).sum() / weights.sum().clamp(min=1.0)
