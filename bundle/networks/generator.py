"""EMIXER image generator G (paper section 3.2.1, appendix 6.2.2, Table 7; BigGAN-style).

``z`` is split into equal chunks (hierarchical latent): the first chunk goes through a linear layer to the
4x4 starting grid, each later chunk is concatenated with the shared label embedding ``y_emb`` and
conditions the conditional BatchNorms of one up block. Self-attention follows the block that reaches
``attention_resolution``; a BN-ReLU-conv3x3-tanh output layer gives the image in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from bundle.networks.layers import ResBlockUp, SelfAttention2d, num_resolution_steps, snconv2d, snlinear

# BigGAN's channel multipliers: the 4x4 grid, then each up block's output.
GENERATOR_CHANNELS = {
    32: (4, 4, 4, 4),
    64: (16, 16, 8, 4, 2),
    128: (16, 16, 8, 4, 2, 1),
    256: (16, 16, 8, 8, 4, 2, 1),
}


class Generator(nn.Module):
    """Label-conditioned image generator ``G(z, y) -> image [B, out_channels, image_size, image_size]``.

    Args:
        latent_dim: size of ``z`` (120 in the paper).
        num_classes: length of the multi-hot label vector.
        label_embed_dim: size of the shared label embedding ``y_emb`` (a linear map without spectral norm).
        image_size: output side; a power of two >= 8 (32, 64, 128, 256); sets the number of up blocks.
        out_channels: image channels (3, or 1 for grey).
        base_channels: channel width unit (``ch`` in BigGAN; 64 at paper defaults).
        channel_multipliers: channels of the 4x4 grid and of each up block in units of ``base_channels``
            (``log2(image_size / 4) + 1`` entries); None takes BigGAN's for ``image_size``.
        chunk_size: size of each ``z`` chunk; ``latent_dim`` must equal ``chunk_size * (up blocks + 1)``.
            None derives it from ``latent_dim`` (20 at the paper's 120 and 128 px).
        attention_resolution: resolution after which self-attention runs (64 at 128 px), or None for none.
        spectral_norm: spectral-normalise the conv and linear layers (not the label embedding).
    """

    def __init__(
        self,
        latent_dim: int = 120,
        num_classes: int = 7,
        label_embed_dim: int = 128,
        image_size: int = 128,
        out_channels: int = 3,
        base_channels: int = 64,
        channel_multipliers: Sequence[int] | None = None,
        chunk_size: int | None = None,
        attention_resolution: int | None = 64,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        num_blocks = num_resolution_steps(image_size)
        if channel_multipliers is None:
            if image_size not in GENERATOR_CHANNELS:
                raise ValueError(f"image_size={image_size} has no default channel_multipliers; set channel_multipliers")
            channel_multipliers = GENERATOR_CHANNELS[image_size]
        channel_multipliers = tuple(int(m) for m in channel_multipliers)
        if len(channel_multipliers) != num_blocks + 1:
            raise ValueError(
                f"channel_multipliers={list(channel_multipliers)} needs {num_blocks + 1} entries for "
                f"image_size={image_size} (the 4x4 grid and {num_blocks} up blocks)"
            )
        num_chunks = num_blocks + 1
        if chunk_size is None:
            if latent_dim % num_chunks:
                raise ValueError(
                    f"latent_dim={latent_dim} cannot be split into {num_chunks} equal chunks (one for the 4x4 grid "
                    f"and one per up block at image_size={image_size}); set latent_dim to a multiple of {num_chunks}"
                )
            chunk_size = latent_dim // num_chunks
        elif chunk_size * num_chunks != latent_dim:
            raise ValueError(
                f"latent_dim={latent_dim} must equal chunk_size={chunk_size} x {num_chunks} chunks (one for the 4x4 "
                f"grid and one per up block at image_size={image_size}); set latent_dim={chunk_size * num_chunks} "
                f"or chunk_size=null to derive it"
            )
        resolutions = [8 << i for i in range(num_blocks)]
        if attention_resolution is not None and attention_resolution not in resolutions:
            raise ValueError(
                f"attention_resolution={attention_resolution} is not one of the generator's block resolutions "
                f"{resolutions} for image_size={image_size}; pick one or set it to null"
            )
        self.latent_dim, self.num_classes, self.image_size = latent_dim, num_classes, image_size
        self.chunk_size = chunk_size
        self.start_channels = base_channels * channel_multipliers[0]

        self.label_embedding = nn.Linear(num_classes, label_embed_dim, bias=False)  # shared, no spectral norm
        nn.init.orthogonal_(self.label_embedding.weight)
        self.linear = snlinear(chunk_size, self.start_channels * 16, spectral_norm=spectral_norm)
        cond_dim = chunk_size + label_embed_dim
        self.blocks = nn.ModuleList()
        self.attention = nn.ModuleDict()
        for i in range(num_blocks):
            in_ch, out_ch = base_channels * channel_multipliers[i], base_channels * channel_multipliers[i + 1]
            self.blocks.append(ResBlockUp(in_ch, out_ch, cond_dim, spectral_norm))
            if resolutions[i] == attention_resolution:
                self.attention[str(i)] = SelfAttention2d(out_ch, spectral_norm)
        final = base_channels * channel_multipliers[-1]
        self.output_bn = nn.BatchNorm2d(final)
        self.output_conv = snconv2d(final, out_channels, 3, spectral_norm=spectral_norm)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``z [B, latent_dim]``, multi-hot ``labels [B, num_classes]`` -> image in [-1, 1]."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be [B, latent_dim={self.latent_dim}], got {tuple(z.shape)}")
        if labels.dim() != 2 or labels.shape[1] != self.num_classes:
            raise ValueError(f"labels must be [B, num_classes={self.num_classes}], got {tuple(labels.shape)}")
        chunks = torch.split(z, self.chunk_size, dim=1)
        y_emb = self.label_embedding(labels.to(z.dtype))
        h = self.linear(chunks[0]).view(z.shape[0], self.start_channels, 4, 4)
        for i, (block, chunk) in enumerate(zip(self.blocks, chunks[1:])):
            h = block(h, torch.cat([chunk, y_emb], dim=1))
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        return torch.tanh(self.output_conv(F.relu(self.output_bn(h))))

    def sample_latent(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Standard-normal ``z [batch_size, latent_dim]``."""
        return torch.randn(batch_size, self.latent_dim, device=device)
