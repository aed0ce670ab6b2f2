"""Memory of the paper's setting (batch 512 at 128 px) from measurements at a few small batch sizes.

Each batch size runs in a fresh spawned process (:func:`sweep_point`, importable as
``bundle.benchmarks.sweep.sweep_point``, so the child finds it whichever script started the sweep), so that each
starts from the same empty state; a line ``fixed + per_item x batch`` is fitted through the peaks and extrapolated
to one device with the target batch and to each GPU of a data-parallel run with its share.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from bundle.benchmarks.memory import PeakMemory, fit_memory_line, model_state_bytes, prime_optimizer_states
from bundle.benchmarks.presets import PRESETS
from bundle.benchmarks.training import build_training, parameter_counts, set_threads, sync

__all__ = ["memory_sweep", "sweep_point"]


def sweep_point(
    preset: str,
    batch_size: int,
    device: str,
    amp: bool,
    vocab_size: int | None,
    num_threads: int | None,
    seed: int,
    n_critic: int | None,
) -> dict[str, Any]:
    """Peak training memory of ``preset`` at ``batch_size`` over one engine iteration with the optimiser states
    primed (:func:`~bundle.benchmarks.memory.prime_optimizer_states`); meant for a fresh process, so that each batch
    size starts from the same empty state. The peak is over the whole process after the imports: weights, states and
    activations."""
    set_threads(num_threads)
    torch_device = torch.device(device)
    memory = PeakMemory(torch_device)
    overrides = {"n_critic": int(n_critic)} if n_critic else None
    training = build_training(
        preset, batch_size, torch_device, amp, vocab_size, length=1, seed=seed, overrides=overrides, memory=memory
    )
    prime_optimizer_states(*(o for o in (training.g_optimizer, training.f_optimizer, training.d_optimizer) if o))
    start = time.perf_counter()
    training.trainer.run()
    sync(torch_device)
    seconds = time.perf_counter() - start
    return {
        "batch_size": int(batch_size),
        "peak_memory_bytes": memory.peak(),
        "seconds_per_iteration": seconds,
        "parameters": parameter_counts(training.networks),
        "n_critic": training.settings["n_critic"],
    }


def memory_sweep(
    preset: str = "paper",
    batch_sizes: Sequence[int] = (2, 4, 8),
    device: str = "cpu",
    amp: bool = False,
    vocab_size: int | None = None,
    target_batch: int = 512,
    gpus: int = 8,
    num_threads: int | None = None,
    seed: int = 0,
    n_critic: int | None = 1,
) -> dict[str, Any]:
    """Peak memory of ``preset`` at each of ``batch_sizes`` (a fresh spawned process each), the fitted line and its
    value at ``target_batch`` on one device and at ``target_batch / gpus`` per GPU (data parallel: each GPU holds
    the whole model and its share of the batch). ``n_critic`` = 1 by default: the critic steps are alike and each
    frees its activations, so the peak does not depend on their number, and one step saves a third of the time."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    points = []
    context = multiprocessing.get_context("spawn")
    for batch_size in batch_sizes:
        print(f"memory of {preset} at batch {batch_size} ({device}) ...", flush=True)
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            points.append(
                pool.submit(
                    sweep_point, preset, int(batch_size), device, amp, vocab_size, num_threads, seed, n_critic
                ).result()
            )
    sizes, peaks = [p["batch_size"] for p in points], [p["peak_memory_bytes"] for p in points]
    fixed, per_item = fit_memory_line(sizes, peaks)
    residual = max(abs(peak - (fixed + per_item * size)) for size, peak in zip(sizes, peaks))
    per_gpu_batch = target_batch // gpus
    counts = points[-1]["parameters"]
    return {
        "preset": preset,
        "device": device,
        "amp": bool(amp),
        "vocab_size": int(vocab_size or PRESETS[preset]["vocab_size"]),
        "n_critic": points[-1]["n_critic"],
        "points": points,
        "fixed_bytes": fixed,
        "per_item_bytes": per_item,
        "max_residual_bytes": residual,
        "model_state_bytes": model_state_bytes(counts),
        "target_batch": int(target_batch),
        "gpus": int(gpus),
        "per_gpu_batch": per_gpu_batch,
        "target_bytes": fixed + per_item * target_batch,
        "per_gpu_bytes": fixed + per_item * per_gpu_batch,
        # AMP keeps fp32 weights and optimiser states and roughly halves the activations: a rough figure only.
        "per_gpu_amp_bytes_rough": fixed + per_item * per_gpu_batch / 2 if not amp else None,
    }
