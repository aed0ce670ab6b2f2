"""Peak memory of training and its linear model in the batch size.

:class:`PeakMemory` reads the peak since its last reset (CUDA's allocator, or the CPU resident set); a line
``fixed + per_item x batch`` fitted through peaks at small batches (:func:`fit_memory_line`) extrapolates to large
ones, with the optimiser states allocated first (:func:`prime_optimizer_states`) so that one iteration holds the
steady-state memory, and :func:`model_state_bytes` as a check on the fixed term.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["MIB", "PeakMemory", "fit_memory_line", "model_state_bytes", "prime_optimizer_states"]

MIB = 2**20


def _proc_status_bytes(field_name: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux) in bytes, or None where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _max_rss_bytes() -> int:
    """Peak resident set size from ``getrusage`` (cannot be reset; kB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PeakMemory:
    """Peak memory of training on ``device`` since the last :meth:`reset`.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, the figure that decides whether a batch fits).
    CPU: the resident set's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the resident
    size when this object was made, i.e. before the networks were built. Python-level tracers (tracemalloc) miss
    torch's allocations and psutil has no resettable peak on Linux, hence ``/proc``; elsewhere ``getrusage`` is
    used, which cannot be reset (``resettable`` is then False and the peak covers the whole process).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.resettable = self.cuda
        self.baseline = 0
        self.rebase()

    def rebase(self) -> None:
        """Take the present resident size as the CPU baseline (call it once the libraries are imported: importing
        MONAI's and the bundle's modules adds hundreds of MiB that are no part of training)."""
        if not self.cuda:
            rss = _proc_status_bytes("VmRSS")
            self.baseline = rss if rss is not None else _max_rss_bytes()

    def reset(self) -> None:
        """Start a new peak from the present usage."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")  # resets the VmHWM high-water mark to the present resident size
            self.resettable = True
        except OSError:
            self.resettable = False

    def peak(self) -> int:
        """Peak bytes since the last reset (CPU: over the baseline)."""
        if self.cuda:
            return int(torch.cuda.max_memory_allocated(self.device))
        hwm = _proc_status_bytes("VmHWM")
        return max(0, (hwm if hwm is not None else _max_rss_bytes()) - self.baseline)


def fit_memory_line(batch_sizes: Sequence[int], peak_bytes: Sequence[float]) -> tuple[float, float]:
    """Least-squares line ``peak = fixed + per_item x batch``; returns ``(fixed, per_item)`` in bytes."""
    if len(batch_sizes) != len(peak_bytes) or len(set(batch_sizes)) < 2:
        raise ValueError(f"need peaks at two or more distinct batch sizes, got {list(batch_sizes)}")
    per_item, fixed = np.polyfit(np.asarray(batch_sizes, float), np.asarray(peak_bytes, float), 1)
    return float(fixed), float(per_item)


def prime_optimizer_states(*optimizers: torch.optim.Optimizer) -> None:
    """Allocate each optimiser's state (Adam's two moments) with one step on zero gradients, so that a single
    iteration already holds the steady-state memory. Adam without weight decay leaves the weights unchanged (its
    update is ``m / (sqrt(v) + eps)`` with ``m = 0``)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def model_state_bytes(counts: Mapping[str, int], ema: bool = True) -> int:
    """fp32 weights + gradients + Adam's two moments of every network, + the EMA copy of G: the batch-independent
    memory a data-parallel GPU holds (a check on the fitted fixed term)."""
    total = sum(counts.values()) * 4 * 4
    return int(total + (counts.get("generator", 0) * 4 if ema else 0))
