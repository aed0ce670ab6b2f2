"""EMIXER report discriminator D_report (paper section 3.2.3, appendix 6.2.2): embedding -> LSTM -> MLP.

The report goes through the shared hierarchical :class:`~bundle.networks.layers.ReportEncoder` (word LSTM per
sentence, then a sentence LSTM); its final state goes through a 2-layer MLP to one real/fake logit. Real
reports enter as token ids, generated ones as word distributions ``[B, S, W, V]`` (the same embedding, by
matrix product), so gradients reach the decoder F and through it the generator G.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bundle.networks.layers import ReportEncoder, snlinear


class ReportDiscriminator(nn.Module):
    """Real/fake logits ``[B]`` for reports given as token ids ``[B, S, W]`` or word distributions ``[B, S, W, V]``.

    Args:
        vocab_size: tokenizer vocabulary size.
        embed_dim: word embedding size.
        hidden: word and sentence LSTM hidden size.
        mlp_hidden: hidden width of the output MLP.
        spectral_norm: spectral-normalise the MLP's linear layers (the embedding and LSTMs never are).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 256,
        hidden: int = 512,
        mlp_hidden: int = 256,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = ReportEncoder(vocab_size, embed_dim, hidden)
        self.head = nn.Sequential(
            snlinear(hidden, mlp_hidden, spectral_norm=spectral_norm),
            nn.ReLU(),
            snlinear(mlp_hidden, 1, spectral_norm=spectral_norm),
        )

    def forward(self, report: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(report)).squeeze(1)
