"""Building blocks shared by the EMIXER networks.

Spectral norm uses torch's parametrization API (``torch.nn.utils.parametrizations.spectral_norm``): the
normalised weight is computed on access, and :func:`remove_spectral_norm` folds it into a plain weight for
export (TorchScript / ONNX cannot trace parametrized modules, folded ones trace like any layer). The blocks
follow the paper's appendix (Tables 7 and 8) and BigGAN / SS-GAN: conditional BatchNorm with ``1 + gain``,
SAGAN self-attention with a learned ``gamma`` starting at 0, pre-activation residual blocks. The
:class:`ReportEncoder` is the text half of both the report and the joint discriminators.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

# The special token ids of the report tensors are the tokenizer's (docs/architecture.md, "Report tensors").
# END_ID / START_ID / UNK_ID are re-exported for the networks.
from bundle.data.constants import END as END_ID  # noqa: F401
from bundle.data.constants import PAD as PAD_ID
from bundle.data.constants import START as START_ID  # noqa: F401
from bundle.data.constants import UNK as UNK_ID  # noqa: F401


def maybe_spectral_norm(module: nn.Module, enabled: bool = True, eps: float = 1e-6) -> nn.Module:
    """Orthogonally initialise ``module.weight`` (BigGAN's init), then wrap it in spectral norm if ``enabled``."""
    nn.init.orthogonal_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return _spectral_norm(module, eps=eps) if enabled else module


def snconv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    padding: int | None = None,
    bias: bool = True,
    spectral_norm: bool = True,
) -> nn.Module:
    """A stride-1 ``Conv2d`` with "same" padding, optionally spectral-normed."""
    padding = kernel_size // 2 if padding is None else padding
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
    return maybe_spectral_norm(conv, spectral_norm)


def snlinear(in_features: int, out_features: int, bias: bool = True, spectral_norm: bool = True) -> nn.Module:
    """A ``Linear`` layer, optionally spectral-normed."""
    return maybe_spectral_norm(nn.Linear(in_features, out_features, bias=bias), spectral_norm)


def has_spectral_norm(module: nn.Module) -> bool:
    """Whether ``module.weight`` is computed by a spectral-norm parametrization."""
    if not parametrize.is_parametrized(module, "weight"):
        return False
    return any(type(p).__name__ == "_SpectralNorm" for p in module.parametrizations["weight"])


def _own_class(module: nn.Module) -> None:
    """Give a parametrized module a ``Parametrized<Layer>`` class of its own.

    torch builds one such class per parametrized module, and ``copy.deepcopy`` shares it between the original and
    the copy; ``remove_parametrizations`` deletes the weight property from that class, which would strip the other
    network of its weight. A fresh class keeps the removal on this module.
    """
    cls = type(module)
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, namespace)


def remove_spectral_norm(network: nn.Module) -> nn.Module:
    """Fold every spectral-norm parametrization of ``network`` into a plain weight (in place), for export.

    Call it on a copy in eval mode (``copy.deepcopy`` is safe: the original keeps its spectral norm): the folded
    weight is the current ``W / sigma`` and stops updating.
    """
    for module in network.modules():
        if has_spectral_norm(module):
            _own_class(module)
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return network


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine; the gain and bias come from a linear map of a conditioning vector.

    BigGAN style: ``out = bn(x) * (1 + gain(c)) + bias(c)``, so a zero map starts as plain BatchNorm.
    """

    def __init__(
        self, num_features: int, cond_dim: int, spectral_norm: bool = True, eps: float = 1e-5, momentum: float = 0.1
    ) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        self.gain = snlinear(cond_dim, num_features, bias=False, spectral_norm=spectral_norm)
        self.bias = snlinear(cond_dim, num_features, bias=False, spectral_norm=spectral_norm)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(cond)[:, :, None, None]
        bias = self.bias(cond)[:, :, None, None]
        return self.bn(x) * gain + bias


class SelfAttention2d(nn.Module):
    """SAGAN / BigGAN self-attention: 1x1 query/key/value convs, softmax over positions, ``x + gamma * o``.

    Keys and values are max-pooled by 2 (BigGAN) to cut the attention matrix by 4; ``gamma`` starts at 0 so
    the block starts as the identity.
    """

    def __init__(self, channels: int, spectral_norm: bool = True, pool: bool = True) -> None:
        super().__init__()
        self.qk_channels = max(1, channels // 8)
        self.v_channels = max(1, channels // 2)
        self.pool = pool
        self.query = snconv2d(channels, self.qk_channels, 1, bias=False, spectral_norm=spectral_norm)
        self.key = snconv2d(channels, self.qk_channels, 1, bias=False, spectral_norm=spectral_norm)
        self.value = snconv2d(channels, self.v_channels, 1, bias=False, spectral_norm=spectral_norm)
        self.out = snconv2d(self.v_channels, channels, 1, bias=False, spectral_norm=spectral_norm)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        query = self.query(x).flatten(2)  # [B, C/8, HW]
        key, value = self.key(x), self.value(x)
        if self.pool and h % 2 == 0 and w % 2 == 0:
            key, value = F.max_pool2d(key, 2), F.max_pool2d(value, 2)
        key, value = key.flatten(2), value.flatten(2)  # [B, C/8, N], [B, C/2, N]
        attention = torch.softmax(torch.bmm(query.transpose(1, 2), key), dim=-1)  # [B, HW, N]
        o = torch.bmm(value, attention.transpose(1, 2)).view(b, self.v_channels, h, w)
        return x + self.gamma * self.out(o)


class ResBlockUp(nn.Module):
    """Generator residual block (paper Table 7): condBN, ReLU, upsample x2, conv3x3, condBN, ReLU, conv3x3,
    plus an upsampled 1x1-conv shortcut. Both conditional BNs read the same vector ``[z chunk, y_emb]``."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, spectral_norm: bool = True) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(in_channels, cond_dim, spectral_norm)
        self.conv1 = snconv2d(in_channels, out_channels, 3, spectral_norm=spectral_norm)
        self.bn2 = ConditionalBatchNorm2d(out_channels, cond_dim, spectral_norm)
        self.conv2 = snconv2d(out_channels, out_channels, 3, spectral_norm=spectral_norm)
        self.shortcut = snconv2d(in_channels, out_channels, 1, spectral_norm=spectral_norm)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x, cond))
        h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.conv2(F.relu(self.bn2(h, cond)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResBlockDown(nn.Module):
    """Discriminator residual block (paper Table 8): ReLU, conv3x3, ReLU, conv3x3, avg-pool x2, plus a 1x1-conv
    shortcut. ``preactivation=False`` drops the first ReLU (BigGAN's first block, whose input is the image)
    and pools the shortcut before its conv, as BigGAN does."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        downsample: bool = True,
        preactivation: bool = True,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.preactivation = preactivation
        self.conv1 = snconv2d(in_channels, out_channels, 3, spectral_norm=spectral_norm)
        self.conv2 = snconv2d(out_channels, out_channels, 3, spectral_norm=spectral_norm)
        learnable = in_channels != out_channels or downsample
        self.shortcut = snconv2d(in_channels, out_channels, 1, spectral_norm=spectral_norm) if learnable else None

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.preactivation:
            x = self.shortcut(x) if self.shortcut is not None else x
            return F.avg_pool2d(x, 2) if self.downsample else x
        x = F.avg_pool2d(x, 2) if self.downsample else x
        return self.shortcut(x) if self.shortcut is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self._shortcut(x)


def num_resolution_steps(image_size: int, key: str = "image_size") -> int:
    """Number of x2 steps between a 4x4 grid and ``image_size`` (a power of two >= 8)."""
    steps = image_size.bit_length() - 3
    if image_size < 8 or image_size != 4 << steps:
        raise ValueError(f"{key}={image_size} must be a power of two >= 8 (e.g. 32, 64, 128, 256)")
    return steps


class ResNetDownTrunk(nn.Module):
    """Stack of :class:`ResBlockDown` from ``image_size`` to 4x4 plus one block at 4x4, optional self-attention
    at ``attention_resolution``, ReLU and global sum pooling (BigGAN / SS-GAN discriminator trunk).

    ``channel_multipliers`` gives each block's output channels as multiples of ``base_channels``; the first
    ``log2(image_size / 4)`` blocks halve the resolution, the last keeps it.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        base_channels: int,
        channel_multipliers: list[int] | tuple[int, ...],
        attention_resolution: int | None = None,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        num_down = num_resolution_steps(image_size)
        if len(channel_multipliers) != num_down + 1:
            raise ValueError(
                f"channel_multipliers={list(channel_multipliers)} needs {num_down + 1} entries for "
                f"image_size={image_size} ({num_down} down blocks and one 4x4 block)"
            )
        resolutions = [image_size >> (i + 1) for i in range(num_down)] + [4]
        if attention_resolution is not None and attention_resolution not in resolutions[:-1]:
            raise ValueError(
                f"attention_resolution={attention_resolution} is not one of this discriminator's block "
                f"resolutions {sorted(set(resolutions[:-1]))} for image_size={image_size}; pick one or set it to null"
            )
        blocks: list[nn.Module] = []
        channels = in_channels
        for i, mult in enumerate(channel_multipliers):
            out = base_channels * mult
            blocks.append(ResBlockDown(channels, out, i < num_down, preactivation=i > 0, spectral_norm=spectral_norm))
            if attention_resolution is not None and i < num_down and resolutions[i] == attention_resolution:
                blocks.append(SelfAttention2d(out, spectral_norm))
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``[B, C, H, W]`` -> pooled features phi(x) ``[B, out_channels]``."""
        return F.relu(self.blocks(x)).sum(dim=(2, 3))


def _last_index_gather(sequence: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``sequence[b, lengths[b] - 1]`` for ``sequence [N, T, H]``; lengths below 1 take index 0."""
    index = (lengths.clamp(min=1) - 1).view(-1, 1, 1).expand(-1, 1, sequence.shape[-1])
    return sequence.gather(1, index).squeeze(1)


class ReportEncoder(nn.Module):
    """Hierarchical LSTM encoder of a report: embedding -> word LSTM over each sentence -> sentence LSTM over the
    sentence vectors -> the sentence LSTM's state after the last real sentence ``[B, hidden]``.

    Accepts token ids ``[B, S, W]`` (real reports; an embedding lookup, which equals the one-hot product) or
    word distributions ``[B, S, W, V]`` (generated reports; ``dist @ embedding.weight``, differentiable).
    Pads are masked by reading each LSTM at the last non-pad position, which for a unidirectional LSTM
    equals running it on the unpadded sequence. Lengths of distributions come from their argmax.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 256, hidden: int = 512) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.word_lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.sentence_lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.out_features = hidden

    def embed(self, report: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids or word distributions -> (embeddings ``[B, S, W, E]``, ids ``[B, S, W]``)."""
        if report.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
            if report.dim() != 3:
                raise ValueError(f"report token ids must be [B, S, W], got shape {tuple(report.shape)}")
            ids = report.long()
            return self.embedding(ids), ids
        if report.dim() != 4 or report.shape[-1] != self.vocab_size:
            raise ValueError(
                f"report word distributions must be [B, S, W, vocab_size={self.vocab_size}], got {tuple(report.shape)}"
            )
        return report @ self.embedding.weight, report.argmax(dim=-1)

    def forward(self, report: torch.Tensor) -> torch.Tensor:
        embedded, ids = self.embed(report)
        b, s, w, e = embedded.shape
        positions = torch.arange(1, w + 1, device=ids.device)
        word_lengths = ((ids != PAD_ID) * positions).amax(dim=-1)  # [B, S]: last non-pad position
        words, _ = self.word_lstm(embedded.reshape(b * s, w, e))
        sentences = _last_index_gather(words, word_lengths.reshape(-1)).view(b, s, -1)
        sentence_positions = torch.arange(1, s + 1, device=ids.device)
        num_sentences = ((word_lengths > 0) * sentence_positions).amax(dim=-1)  # [B]
        states, _ = self.sentence_lstm(sentences)
        return _last_index_gather(states, num_sentences)
