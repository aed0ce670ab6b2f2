"""The training benchmark's report: the machine it ran on and the result as Markdown (ratios first, then absolute
speeds, memory, parameters and the memory extrapolated to the paper's batch)."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Mapping
from typing import Any

import torch

from bundle.benchmarks.memory import MIB

__all__ = ["format_markdown", "machine_info"]


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model, cores, torch threads, library versions and the accelerator."""
    import monai

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f} MiB"


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**30:,.1f} GiB"


def format_markdown(result: Mapping[str, Any]) -> str:
    """The benchmark as Markdown: ratios first, then absolute speeds, memory, parameters and the batch-512 memory."""
    engine, bare, machine = result["engine"], result["bare"], result["machine"]
    lines = [
        "# Training benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}  ",
        f"Machine: {machine['cpu']}, {machine['cores']} cores (torch threads: {machine['torch_threads']}), "
        f"device {machine['device']}{' (' + machine['gpu'] + ')' if 'gpu' in machine else ''}; "
        f"torch {machine['torch']}, MONAI {machine['monai']}, Python {machine['python']}",
    ]
    if result.get("note"):
        lines += ["", f"Note: {result['note']}"]
    s = result["settings"]
    lines += [
        "",
        f"Preset `{result['preset']}`: {s['image_size']} px, batch {s['batch_size']}, {s['num_classes']} classes, "
        f"vocabulary {s['vocab_size']}, reports {s['max_sentences']} x {s['max_words']}, n_critic {s['n_critic']}, "
        f"{'AMP' if result['amp'] else 'fp32'}; {result['warmup']} warm-up + {result['iterations']} timed "
        "iterations; seconds per iteration are medians. One iteration = n_critic discriminator steps + one G/F step "
        "on `batch` real images; the batch is synthetic (no data loading is timed).",
        "",
        "## Ratios",
        "",
        "| ratio | value |",
        "| --- | --- |",
        f"| engine / bare loop, seconds per iteration: median of the paired iterations (engine overhead; 1.00 = "
        f"none) | {result['engine_over_bare']:.3f} |",
        f"| engine / bare loop, ratio of the median seconds per iteration | "
        f"{result['engine_over_bare_of_medians']:.3f} |",
        f"| engine / bare loop, peak memory | {result['memory_engine_over_bare']:.3f} |",
    ]
    if result.get("amp_comparison"):
        a = result["amp_comparison"]
        lines += [
            f"| AMP speed-up (fp32 / AMP seconds per iteration) | {a['speedup']:.2f} |",
            f"| AMP / fp32 peak memory | {a['memory_ratio']:.2f} |",
        ]
    lines += [
        "",
        "## Throughput and memory",
        "",
        "| loop | s / iteration | iterations / s | real images / s | peak memory |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, m in (("EMIXERTrainer (Ignite/MONAI)", engine), ("bare Python loop", bare)):
        lines.append(
            f"| {name} | {m['seconds_per_iteration']:.3f} | {m['iterations_per_second']:.3f} | "
            f"{m['images_per_second']:.2f} | {_mib(m['peak_memory_bytes'])} |"
        )
    memory_kind = (
        "torch.cuda.max_memory_allocated"
        if machine["device"].startswith("cuda")
        else "peak resident set size over the process before the networks were built (VmHWM)"
    )
    lines += [
        "",
        f"The engine and the bare loop ran alternately, one iteration each, on the same networks and "
        f"optimisers (the bare loop with its own EMA copy of G). Peak memory: {memory_kind}, over each loop's "
        "own iterations.",
        "",
        "Seconds of each timed iteration (engine, bare): "
        + ", ".join(f"({e:.2f}, {b:.2f})" for e, b in zip(engine["seconds"], bare["seconds"]))
        + ".",
        "",
        "## Parameters",
        "",
        "| network | parameters |",
        "| --- | --- |",
    ]
    for name, count in result["parameters"].items():
        lines.append(f"| {name} | {count:,} |")
    lines.append(f"| total | {sum(result['parameters'].values()):,} |")

    sweep = result.get("memory_extrapolation")
    if sweep:
        dtype = "AMP" if sweep["amp"] else "fp32"
        lines += [
            "",
            f"## Memory at the paper's batch {sweep['target_batch']} (preset `{sweep['preset']}`)",
            "",
            f"Measured on {sweep['device']} in {dtype} at small batches (vocabulary {sweep['vocab_size']}), each in a "
            f"fresh process: one engine iteration with n_critic {sweep['n_critic']} (the critic steps are alike and "
            "free their activations, so the peak does not depend on their number) after Adam's moments were "
            "allocated; the s / iteration column includes first-call overheads:",
            "",
            "| batch | peak memory | s / iteration |",
            "| --- | --- | --- |",
        ]
        for p in sweep["points"]:
            lines.append(f"| {p['batch_size']} | {_mib(p['peak_memory_bytes'])} | {p['seconds_per_iteration']:.2f} |")
        gpus, per_gpu = sweep["gpus"], sweep["per_gpu_batch"]
        lines += [
            "",
            f"Fitted line: {_mib(sweep['fixed_bytes'])} fixed + {_mib(sweep['per_item_bytes'])} per image (the "
            f"points lie within {_mib(sweep['max_residual_bytes'])} of it). "
            f"Weights, gradients, Adam's moments and G's EMA copy in fp32 come to {_mib(sweep['model_state_bytes'])}; "
            "on a CPU the fixed term also holds the runtime's own buffers (oneDNN, allocator), hence the second "
            "per-GPU row, which takes the model states and the fitted per-image term.",
            "",
            "| setting | memory (extrapolated) |",
            "| --- | --- |",
            f"| one device, batch {sweep['target_batch']}, {dtype} | {_gib(sweep['target_bytes'])} |",
            f"| each of {gpus} GPUs, batch {per_gpu}, {dtype} | {_gib(sweep['per_gpu_bytes'])} |",
            f"| each of {gpus} GPUs, batch {per_gpu}, {dtype}, model states + per-image term | "
            f"{_gib(sweep['model_state_bytes'] + sweep['per_item_bytes'] * per_gpu)} |",
        ]
        if sweep.get("per_gpu_amp_bytes_rough") is not None:
            lines.append(
                f"| each of {gpus} GPUs, batch {per_gpu}, AMP (rough: activations halved) | "
                f"{_gib(sweep['per_gpu_amp_bytes_rough'])} |"
            )
        points = ", ".join(str(p["batch_size"]) for p in sweep["points"])
        lines += [
            "",
            f"These are extrapolations from {sweep['device']} {dtype} measurements at batch {points}, not GPU "
            "measurements: activations dominate and grow linearly with the batch; CUDA adds cuDNN workspaces and "
            "allocator caching, and AMP roughly halves the activation memory. The vocabulary size is assumed "
            "(report tensors of batch x sentences x words x vocabulary floats grow with it).",
        ]
    return "\n".join(lines) + "\n"
