"""EMIXER joint discriminator D_joint (paper section 3.2.3, appendix 6.2.2): image CNN features and report
LSTM features, each through a linear layer, concatenated, then an MLP to one real/fake logit.

The image branch is a small spectral-normed residual CNN (the image discriminator's trunk, without
attention); the report branch is the shared :class:`~bundle.networks.layers.ReportEncoder`, which takes
token ids (real) or word distributions (generated) alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from bundle.networks.layers import ReportEncoder, ResNetDownTrunk, num_resolution_steps, snlinear


def joint_channel_multipliers(image_size: int) -> tuple[int, ...]:
    """Channels double per down block up to 8 x base, then one 4x4 block: (1, 2, 4, 8, 8, 8) at 128 px."""
    num_down = num_resolution_steps(image_size)
    return tuple(min(2**i, 8) for i in range(num_down)) + (min(2 ** (num_down - 1), 8),)


class JointDiscriminator(nn.Module):
    """Real/fake logits ``[B]`` for (image, report) pairs.

    Args:
        vocab_size: tokenizer vocabulary size.
        in_channels: image channels.
        image_size: image side; a power of two >= 8.
        base_channels: channel width unit of the image CNN.
        channel_multipliers: the image CNN's block outputs in units of ``base_channels``; None doubles per block.
        embed_dim: word embedding size.
        hidden: report LSTM hidden size.
        joint_hidden: size of each modality's embedding and of the joint MLP's hidden layer.
        spectral_norm: spectral-normalise the CNN and the linear layers (the embedding and LSTMs never are).
    """

    def __init__(
        self,
        vocab_size: int,
        in_channels: int = 3,
        image_size: int = 128,
        base_channels: int = 32,
        channel_multipliers: Sequence[int] | None = None,
        embed_dim: int = 256,
        hidden: int = 512,
        joint_hidden: int = 256,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        multipliers = list(channel_multipliers or joint_channel_multipliers(image_size))
        self.image_features = ResNetDownTrunk(in_channels, image_size, base_channels, multipliers, None, spectral_norm)
        self.report_features = ReportEncoder(vocab_size, embed_dim, hidden)
        self.image_embed = snlinear(self.image_features.out_channels, joint_hidden, spectral_norm=spectral_norm)
        self.report_embed = snlinear(hidden, joint_hidden, spectral_norm=spectral_norm)
        self.head = nn.Sequential(
            snlinear(2 * joint_hidden, joint_hidden, spectral_norm=spectral_norm),
            nn.ReLU(),
            snlinear(joint_hidden, 1, spectral_norm=spectral_norm),
        )

    def forward(self, images: torch.Tensor, report: torch.Tensor) -> torch.Tensor:
        """``images [B, C, H, W]`` and report ids ``[B, S, W]`` or distributions ``[B, S, W, V]`` -> logits ``[B]``."""
        image_emb = self.image_embed(self.image_features(images))
        report_emb = self.report_embed(self.report_features(report))
        return self.head(torch.cat([image_emb, report_emb], dim=1)).squeeze(1)
