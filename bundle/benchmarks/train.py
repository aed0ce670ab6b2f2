"""The training benchmark end to end (``scripts/benchmark_train.py``): engine against bare loop, AMP against fp32,
memory at the paper's batch, written as Markdown.

It measures, in one run:

* the engine's iterations and real images per second after warm-up (one iteration = ``n_critic`` discriminator
  steps + one G/F step on a batch of ``batch_size`` real images);
* the same work stepped by a plain Python loop over the same networks and optimisers
  (:func:`~bundle.benchmarks.timing.bare_iteration`, built from the trainer's own term functions), run alternately
  with the engine's iterations so that both see the same load, and the ratio engine / bare of the seconds per
  iteration: the cost of the Ignite/MONAI engine, which should be about 1;
* peak memory of training (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the peak resident set size over the
  process's size before the networks were built) and the parameter count of each network;
* on CUDA, the AMP / fp32 speed and memory ratios;
* the memory of the paper's setting (batch 512 at 128 px) extrapolated from small batches
  (:func:`~bundle.benchmarks.sweep.memory_sweep`).
"""

from __future__ import annotations

import datetime
import gc
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bundle.benchmarks.memory import PeakMemory
from bundle.benchmarks.report import format_markdown, machine_info
from bundle.benchmarks.sweep import memory_sweep
from bundle.benchmarks.timing import check_counts, time_engine, time_interleaved
from bundle.benchmarks.training import build_training, parameter_counts, release, set_threads

__all__ = ["SCRIPT", "run_benchmark"]

#: The command line's script: a run started from it records its command line, any other caller the call.
SCRIPT = "benchmark_train.py"


def _command(preset: str) -> str:
    script = Path(sys.argv[0]).name if sys.argv else ""
    if script == SCRIPT:
        return (f"python scripts/{SCRIPT} " + " ".join(sys.argv[1:])).strip()
    return f"run_benchmark(preset={preset!r}, ...)"


def run_benchmark(
    preset: str = "demo",
    batch_size: int | None = None,
    iterations: int = 5,
    warmup: int = 1,
    device: str = "cpu",
    amp: bool = False,
    out: str | None = None,
    out_json: str | None = None,
    vocab_size: int | None = None,
    num_classes: int | None = None,
    num_threads: int | None = None,
    compare_amp: bool = True,
    memory_sweep_preset: str | None = "paper",
    memory_batch_sizes: Sequence[int] = (2, 4, 8),
    memory_vocab_size: int | None = None,
    memory_n_critic: int | None = 1,
    target_batch: int = 512,
    gpus: int = 8,
    note: str = "",
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Benchmark the engine against the bare loop on ``preset`` (and AMP against fp32 on CUDA), then the memory
    sweep on ``memory_sweep_preset`` (None skips it); print the Markdown and write it to ``out`` if given, and the
    numbers to ``out_json`` (re-rendered with ``format_markdown(json.load(...))``)."""
    check_counts(iterations, warmup)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for but CUDA is not available")
    set_threads(num_threads)
    torch_device = torch.device(device)
    memory = PeakMemory(torch_device)
    length = warmup + iterations
    training = build_training(
        preset, batch_size, torch_device, amp, vocab_size, num_classes, length, seed, memory=memory
    )
    counts = parameter_counts(training.networks)
    if verbose:
        print(f"{preset}: {warmup} + {iterations} iterations of the engine and the bare loop, alternately", flush=True)
    engine, bare = time_interleaved(training, iterations, warmup, memory)
    release(training)
    keys = ("image_size", "batch_size", "num_classes", "vocab_size", "max_sentences", "max_words", "n_critic")
    settings = {key: training.settings[key] for key in keys}
    del training
    gc.collect()

    result: dict[str, Any] = {
        "preset": preset,
        "device": str(torch_device),
        "amp": bool(amp) and torch_device.type == "cuda",
        "iterations": int(iterations),
        "warmup": int(warmup),
        "settings": settings,
        "engine": engine.as_dict(),
        "bare": bare.as_dict(),
        # Each engine iteration against the bare one right after it: robust to a burst of load from other jobs.
        "engine_over_bare": float(statistics.median(e / b for e, b in zip(engine.seconds, bare.seconds))),
        "engine_over_bare_of_medians": engine.seconds_per_iteration / bare.seconds_per_iteration,
        "memory_engine_over_bare": engine.peak_memory_bytes / max(bare.peak_memory_bytes, 1),
        "parameters": counts,
    }
    if compare_amp and torch_device.type == "cuda":
        other = build_training(preset, batch_size, torch_device, not amp, vocab_size, num_classes, length, seed)
        flipped = time_engine(other, iterations, warmup, memory)
        release(other)
        fp32, mixed = (engine, flipped) if not amp else (flipped, engine)
        result["amp_comparison"] = {
            "speedup": fp32.seconds_per_iteration / mixed.seconds_per_iteration,
            "memory_ratio": mixed.peak_memory_bytes / max(fp32.peak_memory_bytes, 1),
            "fp32": fp32.as_dict(),
            "amp": mixed.as_dict(),
        }
    if memory_sweep_preset:
        result["memory_extrapolation"] = memory_sweep(
            memory_sweep_preset,
            memory_batch_sizes,
            device,
            amp,
            memory_vocab_size,
            target_batch,
            gpus,
            num_threads,
            seed,
            memory_n_critic,
        )
    result["machine"] = machine_info(torch_device)
    result["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    result["command"] = _command(preset)
    result["note"] = note
    markdown = format_markdown(result)
    result["markdown"] = markdown
    if verbose:
        print(markdown)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(markdown, encoding="utf-8")
    if out_json:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=1))
    if not all(math.isfinite(v) for v in (result["engine_over_bare"], result["memory_engine_over_bare"])):
        raise RuntimeError(f"non-finite ratio: {result['engine_over_bare']}, {result['memory_engine_over_bare']}")
    return result
