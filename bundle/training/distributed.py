"""Data-parallel training across processes (torchrun) without ``DistributedDataParallel`` wrappers.

EMIXER's step calls its networks in ways DDP does not follow: F is used through ``loss`` and ``sample`` rather
than ``forward``, the discriminators run several forwards per backward and are frozen during the generator
step. DDP only synchronises gradients of work done inside its own ``forward``, so instead every process starts
from rank 0's weights (:func:`broadcast_modules`) and averages gradients right after each backward
(:func:`all_reduce_gradients`), in flat buckets as DDP does. With the same gradients and optimiser states the
weights stay identical on every rank. BatchNorm running statistics stay per process (as with DDP without
``SyncBatchNorm``); rank 0's are the ones saved.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

__all__ = ["all_reduce_gradients", "all_reduce_mean", "broadcast_modules", "is_distributed", "rank", "world_size"]

#: Bucket size of the gradient all-reduce (DDP's default bucket is 25 MiB).
BUCKET_BYTES = 25 * 1024 * 1024


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _buckets(tensors: Sequence[torch.Tensor], bucket_bytes: int) -> Iterable[list[torch.Tensor]]:
    """Consecutive groups of same-dtype, same-device tensors of about ``bucket_bytes`` each."""
    bucket: list[torch.Tensor] = []
    size = 0
    for tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and (
            size + nbytes > bucket_bytes or tensor.dtype != bucket[0].dtype or tensor.device != bucket[0].device
        ):
            yield bucket
            bucket, size = [], 0
        bucket.append(tensor)
        size += nbytes
    if bucket:
        yield bucket


def _reduce_in_place(tensors: Sequence[torch.Tensor], op: str, bucket_bytes: int = BUCKET_BYTES) -> None:
    """All-reduce (``"mean"``) or broadcast from rank 0 (``"broadcast"``) a list of tensors, bucket by bucket."""
    for bucket in _buckets(tensors, bucket_bytes):
        flat = _flatten_dense_tensors(bucket)
        if op == "mean":
            dist.all_reduce(flat)
            flat.div_(dist.get_world_size())
        else:
            dist.broadcast(flat, src=0)
        for tensor, synced in zip(bucket, _unflatten_dense_tensors(flat, bucket)):
            tensor.copy_(synced)


@torch.no_grad()
def broadcast_modules(modules: Iterable[nn.Module | None]) -> None:
    """Give every process rank 0's parameters and buffers (no-op outside a multi-process group)."""
    if not is_distributed():
        return
    tensors = [t for m in modules if m is not None for t in (*m.parameters(), *m.buffers())]
    _reduce_in_place([t.data for t in tensors], "broadcast")


@torch.no_grad()
def all_reduce_gradients(params: Iterable[torch.Tensor], bucket_bytes: int = BUCKET_BYTES) -> None:
    """Average the gradients of ``params`` over the processes, in place.

    Parameters without a gradient are skipped: which ones those are depends only on the config, so it is the
    same on every rank. A non-finite gradient on any rank makes the average non-finite on all of them, so AMP's
    grad scalers skip the same steps everywhere.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        _reduce_in_place(grads, "mean", bucket_bytes)


@torch.no_grad()
def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over the processes (a copy; the input itself outside a process group)."""
    if not is_distributed():
        return tensor
    out = tensor.clone()
    dist.all_reduce(out)
    return out.div_(dist.get_world_size())
