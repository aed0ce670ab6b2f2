"""An exponential moving average of the generator's weights (BigGAN samples from it; so does inference here)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["GeneratorEMA"]


class GeneratorEMA:
    """A frozen copy of ``generator`` (``module``) moved towards it after each generator step.

    Args:
        generator: the network averaged.
        decay: weight of the average's past, in [0, 1).
        start: iterations before which the copy just follows the generator (BigGAN starts averaging late).

    Buffers (BatchNorm statistics) are copied, not averaged.
    """

    def __init__(self, generator: nn.Module, decay: float, start: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay={decay} must be in [0, 1), or null for no EMA")
        self.decay, self.start = float(decay), int(start)
        self.module = copy.deepcopy(generator).eval().requires_grad_(False)
        self._params = list(zip(self.module.parameters(), generator.parameters()))
        self._buffers = list(zip(self.module.buffers(), generator.buffers()))

    @torch.no_grad()
    def update(self, iteration: int) -> None:
        """One step of the average after ``iteration`` (a copy before ``start``)."""
        weight = 1.0 if iteration < self.start else 1.0 - self.decay
        averaged, current = zip(*self._params) if self._params else ((), ())
        torch._foreach_lerp_(list(averaged), list(current), weight)
        for ema_buffer, buffer in self._buffers:
            ema_buffer.copy_(buffer)
