"""EMIXER image discriminator D_image (paper section 3.2.3, appendix Table 8; BigGAN / SS-GAN style).

Residual down blocks, ReLU and global sum pooling give phi(x). The real/fake logit is
``linear(phi) + <embed(y), phi>`` (projection discriminator), and a 4-way head on the same phi predicts the
rotation (0/90/180/270 degrees) for SS-GAN's self-supervised loss. An all-zero label row (unlabelled item)
or ``labels=None`` gives a zero projection term, leaving the unconditional logit. An optional auxiliary
classifier head (``class_head``, AC-GAN style, off in the paper) predicts the findings from the same phi; trained on
real images, it gives the generator a direct label signal early in training, when the projection term is weak.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from bundle.networks.layers import ResNetDownTrunk, snlinear

# BigGAN's discriminator channel multipliers: each block's output (the last block stays at 4x4).
DISCRIMINATOR_CHANNELS = {
    32: (4, 4, 4, 4),
    64: (1, 2, 4, 8, 16),
    128: (1, 2, 4, 8, 16, 16),
    256: (1, 2, 4, 8, 8, 16, 16),
}


class ImageDiscriminator(nn.Module):
    """Projection discriminator with a rotation head.

    Args:
        in_channels: image channels.
        num_classes: length of the multi-hot label vector.
        image_size: input side; a power of two >= 8.
        base_channels: channel width unit (64 at paper defaults).
        channel_multipliers: each block's output channels in units of ``base_channels``; None takes BigGAN's.
        attention_resolution: resolution at which self-attention runs (64 at 128 px), or None.
        spectral_norm: spectral-normalise every conv and linear layer, the projection embedding included.
        rotation_head: build the 4-way rotation classifier.
        class_head: build the auxiliary multi-label classifier of the findings (:meth:`class_logits`).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 7,
        image_size: int = 128,
        base_channels: int = 64,
        channel_multipliers: Sequence[int] | None = None,
        attention_resolution: int | None = 64,
        spectral_norm: bool = True,
        rotation_head: bool = True,
        class_head: bool = False,
    ) -> None:
        super().__init__()
        if channel_multipliers is None:
            if image_size not in DISCRIMINATOR_CHANNELS:
                raise ValueError(f"image_size={image_size} has no default channel_multipliers; set channel_multipliers")
            channel_multipliers = DISCRIMINATOR_CHANNELS[image_size]
        self.num_classes = num_classes
        self.trunk = ResNetDownTrunk(
            in_channels, image_size, base_channels, list(channel_multipliers), attention_resolution, spectral_norm
        )
        features = self.trunk.out_channels
        self.linear = snlinear(features, 1, spectral_norm=spectral_norm)
        self.embed = snlinear(num_classes, features, bias=False, spectral_norm=spectral_norm)
        self.rotation = snlinear(features, 4, spectral_norm=spectral_norm) if rotation_head else None
        # No spectral norm on the class head: a unit-norm head on these features cannot reach confident logits, and
        # the head only serves the (bounded) BCE, not the adversarial logit that the Lipschitz constraint is for.
        self.classifier = nn.Linear(features, num_classes) if class_head else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features phi(x) ``[B, F]``."""
        return self.trunk(x)

    def logits(self, phi: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Real/fake logits ``[B]`` from features: ``linear(phi) + <embed(labels), phi>``."""
        out = self.linear(phi).squeeze(1)
        if labels is not None:
            if labels.shape != (phi.shape[0], self.num_classes):
                raise ValueError(
                    f"labels must be [B={phi.shape[0]}, num_classes={self.num_classes}], got {tuple(labels.shape)}"
                )
            out = out + (self.embed(labels.to(phi.dtype)) * phi).sum(dim=1)
        return out

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_rotation: bool = False,
        return_class: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Real/fake logits ``[B]``; with ``return_rotation`` also the rotation logits ``[B, 4]`` and with
        ``return_class`` the finding logits ``[B, num_classes]``, in that order, from the same forward pass
        (cheaper than calling :meth:`rotation_logits` separately)."""
        phi = self.features(x)
        out = self.logits(phi, labels)
        if not (return_rotation or return_class):
            return out
        extra = ([self._rotation(phi)] if return_rotation else []) + ([self.class_logits(phi)] if return_class else [])
        return (out, *extra)

    def rotation_logits(self, x: torch.Tensor) -> torch.Tensor:
        """4-way rotation logits ``[B, 4]`` (classes 0, 90, 180, 270 degrees)."""
        return self._rotation(self.features(x))

    def class_logits(self, phi: torch.Tensor) -> torch.Tensor:
        """Multi-label finding logits ``[B, num_classes]`` of the auxiliary classifier, from features phi."""
        if self.classifier is None:
            raise RuntimeError("this ImageDiscriminator was built with class_head=False")
        return self.classifier(phi)

    def _rotation(self, phi: torch.Tensor) -> torch.Tensor:
        if self.rotation is None:
            raise RuntimeError("this ImageDiscriminator was built with rotation_head=False")
        return self.rotation(phi)
