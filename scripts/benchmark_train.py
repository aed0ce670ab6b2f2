"""Training throughput and memory of EMIXER: the MONAI/Ignite engine against a bare loop, and memory at batch 512.

Builds the five networks, their optimisers and :class:`bundle.training.EMIXERTrainer` from the bundle configs
(``configs/train.json``, + ``configs/demo.json`` for the demo and tiny presets) with no dataset: the class count
and vocabulary size are set directly and the batches are synthetic ones of the contract's shapes and dtypes
(images in [-1, 1], multi-hot labels, report tokens as ``TokenizeReportd`` lays them out). It measures, in one run:

* the engine's iterations and real images per second after warm-up (one iteration = ``n_critic`` discriminator
  steps + one G/F step on a batch of ``batch_size`` real images);
* the same work stepped by a plain Python loop over the same networks and optimisers (:func:`bare_iteration`,
  built from the trainer's own term functions, :mod:`bundle.training.objective`), run alternately with the engine's iterations so
  that both see the same load, and the ratio engine / bare of the seconds per iteration: the cost of the
  Ignite/MONAI engine, which should be about 1;
* peak memory of training (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the peak resident set size over the
  process's size before the networks were built) and the parameter count of each network;
* on CUDA, the AMP / fp32 speed and memory ratios;
* the memory of the paper's setting (batch 512 at 128 px): the paper preset is measured at a few small batch
  sizes, each in a fresh process, a line ``fixed + per_item x batch`` is fitted and extrapolated to one device
  with 512 and to each of 8 GPUs with 64.

It prints a Markdown table and, with ``--out``, writes it with the command, machine and date.

    python scripts/benchmark_train.py --preset demo --iterations 5 --out docs/benchmarks.md
    python scripts/benchmark_train.py --preset paper --device cuda --amp --memory_batch_sizes 8,16,32,64
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from bundle.data.labels import DEFAULT_CLASSES  # noqa: E402
from bundle.data.tokenizer import END, PAD  # noqa: E402
from bundle.training import gradients as grads  # noqa: E402
from bundle.training import objective as terms  # noqa: E402
from bundle.training.gradients import GradientControls  # noqa: E402
from bundle.training.objective import EMIXERNetworks, Objective  # noqa: E402

__all__ = [
    "PRESETS",
    "NETWORKS",
    "Training",
    "Measurement",
    "PeakMemory",
    "synthetic_batch",
    "build_training",
    "parameter_counts",
    "time_engine",
    "time_interleaved",
    "bare_iteration",
    "fit_memory_line",
    "prime_optimizer_states",
    "model_state_bytes",
    "RepeatedBatch",
    "machine_info",
    "memory_sweep",
    "format_markdown",
    "run_benchmark",
]

CONFIG_DIR = REPO_ROOT / "configs"
#: The networks of one EMIXER training, by their config ids.
NETWORKS = ("generator", "image_discriminator", "report_decoder", "report_discriminator", "joint_discriminator")
#: Config files, config overrides and the vocabulary size of each preset. The vocabulary is not in the configs (it
#: comes from the tokenizer): about 200 words for the embedded demo data; the paper's is not given, so a MIMIC-CXR
#: sized vocabulary (words seen 6+ times) of 4000 is assumed. "tiny" mirrors the test settings (tests/tiny.py).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "configs": ("train.json", "demo.json"),
        "vocab_size": 64,
        "overrides": {
            "image_size": 32,
            "base_channels": 8,
            "attention_resolution": 16,
            "joint_base_channels": 4,
            "label_embed_dim": 16,
            "latent_dim": 40,
            "encoder_features": 32,
            "word_embed_dim": 16,
            "text_hidden": 24,
            "text_mlp_hidden": 16,
            "max_sentences": 4,
            "max_words": 12,
            "batch_size": 4,
        },
    },
    "demo": {"configs": ("train.json", "demo.json"), "vocab_size": 200, "overrides": {}},
    "paper": {"configs": ("train.json",), "vocab_size": 4000, "overrides": {}},
}
MIB = 2**20


# ---------------------------------------------------------------------------------------------- memory
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


# ---------------------------------------------------------------------------------------------- setup
def synthetic_batch(
    batch_size: int,
    image_channels: int,
    image_size: int,
    num_classes: int,
    vocab_size: int,
    max_sentences: int,
    max_words: int,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A collated batch of the contract's shapes: ``image`` float32 ``[B, C, S, S]`` in [-1, 1], ``labels`` multi-hot
    float32 ``[B, k]``, ``report_tokens`` long ``[B, max_sentences, max_words]`` (each real sentence's word ids, then
    ``<end>``, then ``<pad>``; rows after the last sentence all ``<pad>``) and ``report_num_sentences`` long ``[B]``."""
    if vocab_size <= END + 2:
        raise ValueError(f"vocab_size={vocab_size} leaves no word ids after the special tokens")
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, image_channels, image_size, image_size, generator=g) * 2 - 1
    labels = (torch.rand(batch_size, num_classes, generator=g) < 0.3).float()
    tokens = torch.full((batch_size, max_sentences, max_words), PAD, dtype=torch.long)
    counts = torch.randint(1, max_sentences + 1, (batch_size,), generator=g)
    first_word = END + 2  # after <pad>, <start>, <end>, <unk>
    for i, count in enumerate(counts.tolist()):
        for row in range(count):
            length = int(torch.randint(1, max_words, (1,), generator=g))
            tokens[i, row, :length] = torch.randint(first_word, vocab_size, (length,), generator=g)
            tokens[i, row, length] = END
    return {"image": images, "labels": labels, "report_tokens": tokens, "report_num_sentences": counts}


class RepeatedBatch:
    """The same batch ``length`` times: a data loader with no loading cost, so both loops time the training alone.
    (An object, not a list, so the config parser keeps it as it is.)"""

    def __init__(self, batch: Mapping[str, torch.Tensor], length: int) -> None:
        self.batch, self.length = batch, int(length)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Mapping[str, torch.Tensor]]:
        return (self.batch for _ in range(self.length))


@dataclass
class Training:
    """One EMIXER training built from the bundle configs: the parser, trainer, networks, optimisers, a batch."""

    parser: Any
    trainer: Any
    networks: dict[str, nn.Module]
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    batch: dict[str, torch.Tensor]
    device: torch.device
    amp: bool
    settings: dict[str, Any] = field(default_factory=dict)
    f_optimizer: torch.optim.Optimizer | None = None


def build_training(
    preset: str = "demo",
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    amp: bool = False,
    vocab_size: int | None = None,
    num_classes: int | None = None,
    length: int = 2,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    memory: PeakMemory | None = None,
) -> Training:
    """Parse the preset's configs with no dataset (class count and vocabulary set directly) and build the trainer
    over a :class:`RepeatedBatch` of ``length`` synthetic batches; no handlers are attached. ``memory`` is rebased
    after the configs' imports, just before the networks are built."""
    from monai.bundle import ConfigParser

    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {sorted(PRESETS)}")
    spec = PRESETS[preset]
    device = torch.device(device)
    parser = ConfigParser()
    parser.read_config([str(CONFIG_DIR / name) for name in spec["configs"]])
    settings = {
        **spec["overrides"],
        "num_classes": int(num_classes or len(DEFAULT_CLASSES)),
        "vocab_size": int(vocab_size or spec["vocab_size"]),
        "device": device,
        "amp": bool(amp),
        **(overrides or {}),
    }
    if batch_size is not None:
        settings["batch_size"] = int(batch_size)
    parser.update(settings)
    parser.get_parsed_content("imports")
    keys = (
        "batch_size",
        "image_channels",
        "image_size",
        "max_sentences",
        "max_words",
        "latent_dim",
        "n_critic",
        "alpha",
        "rotation_weight_g",
        "adversarial_loss",
        "teacher_forcing_weight",
        "gumbel_temperature",
        "ema_decay",
    )
    settings.update({key: parser.get_parsed_content(key) for key in keys})
    batch = synthetic_batch(
        settings["batch_size"],
        settings["image_channels"],
        settings["image_size"],
        settings["num_classes"],
        settings["vocab_size"],
        settings["max_sentences"],
        settings["max_words"],
        seed=seed,
    )
    parser.update(
        {
            "train#trainer#train_data_loader": RepeatedBatch(batch, length),
            "train#trainer#train_handlers": None,
            "train#trainer#max_epochs": 1,
            "train#trainer#epoch_length": int(length),
            "train#trainer#report_warmup_iterations": 0,  # a one-off before training, not part of an iteration
        }
    )
    if memory is not None:
        gc.collect()
        memory.rebase()
    torch.manual_seed(seed)
    trainer = parser.get_parsed_content("train#trainer")
    networks = {name: parser.get_parsed_content(name) for name in NETWORKS}
    return Training(
        parser=parser,
        trainer=trainer,
        networks=networks,
        g_optimizer=trainer.g_optimizer,
        d_optimizer=trainer.d_optimizer,
        f_optimizer=trainer.f_optimizer,
        batch=batch,
        device=device,
        amp=bool(amp) and device.type == "cuda",
        settings=settings,
    )


def parameter_counts(networks: Mapping[str, nn.Module]) -> dict[str, int]:
    """Parameters per network (spectral norm's weight counted once; its power-iteration vectors are buffers)."""
    return {name: sum(p.numel() for p in net.parameters()) for name, net in networks.items() if net is not None}


# ---------------------------------------------------------------------------------------------- measurement
@dataclass
class Measurement:
    """Per-iteration seconds of the timed iterations, real images per iteration and the peak memory."""

    seconds: list[float]
    batch_size: int
    peak_memory_bytes: int

    @property
    def seconds_per_iteration(self) -> float:
        """The median (robust to a slow iteration when other jobs share the machine)."""
        return float(statistics.median(self.seconds))

    def as_dict(self) -> dict[str, Any]:
        spi = self.seconds_per_iteration
        return {
            "seconds_per_iteration": spi,
            "iterations_per_second": 1.0 / spi,
            "images_per_second": self.batch_size / spi,
            "peak_memory_bytes": self.peak_memory_bytes,
            "seconds": list(self.seconds),
        }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_counts(iterations: int, warmup: int) -> None:
    if iterations < 1 or warmup < 1:
        raise ValueError(
            f"need iterations >= 1 and warmup >= 1 (the first timed step starts after one), "
            f"got iterations={iterations}, warmup={warmup}"
        )


def time_engine(training: Training, iterations: int, warmup: int, memory: PeakMemory) -> Measurement:
    """Run the trainer for ``warmup + iterations`` iterations; time each of the last ``iterations`` between
    consecutive ``ITERATION_COMPLETED`` events (so batch fetching and event handling are included) and take the peak
    memory over them. The trainer's data loader must hold ``warmup + iterations`` batches."""
    from ignite.engine import Events

    _check_counts(iterations, warmup)
    trainer = training.trainer
    if len(trainer.data_loader) != warmup + iterations:
        raise ValueError(f"the trainer's loader has {len(trainer.data_loader)} batches, need {warmup + iterations}")
    stamps: list[float] = []

    def completed(engine: Any) -> None:
        _sync(training.device)
        if engine.state.iteration == warmup:
            memory.reset()
        stamps.append(time.perf_counter())

    handle = trainer.add_event_handler(Events.ITERATION_COMPLETED, completed)
    try:
        trainer.run()
    finally:
        handle.remove()
    seconds = [float(s) for s in np.diff(stamps[warmup - 1 :])]
    return Measurement(seconds=seconds, batch_size=training.settings["batch_size"], peak_memory_bytes=memory.peak())


def bare_iteration(
    nets: Mapping[str, nn.Module],
    g_optimizer: torch.optim.Optimizer,
    d_optimizer: torch.optim.Optimizer,
    batch: Mapping[str, torch.Tensor],
    settings: Mapping[str, Any],
    device: torch.device,
    objective: Objective,
    gradients: GradientControls | None = None,
    ema: nn.Module | None = None,
    scalers: tuple[torch.amp.GradScaler, torch.amp.GradScaler] | None = None,
    amp: bool = False,
    f_optimizer: torch.optim.Optimizer | None = None,
) -> list[float]:
    """One EMIXER iteration as a plain loop (the reference for the engine's cost), built from the same term functions
    as the trainer (:mod:`bundle.training.objective`), so the two compute the same losses: ``n_critic`` steps of the
    discriminators against fresh fakes, then one step of G and F with the discriminators frozen (F's adversarial
    gradient routed as ``gradients`` say), and the EMA update. Returns ``d_total`` per critic step and ``g_total``
    (one host transfer)."""
    networks = EMIXERNetworks(*(nets[name] for name in EMIXERNetworks._fields))
    gradients = gradients or GradientControls()
    z_dim, tau = settings["latent_dim"], objective.gumbel_temperature
    d_scaler, g_scaler = scalers or (torch.amp.GradScaler("cuda", enabled=False),) * 2
    autocast = (lambda: torch.autocast("cuda")) if amp else contextlib.nullcontext
    real, labels = batch["image"].to(device), batch["labels"].to(device)
    report, num_sentences = batch["report_tokens"].to(device), batch["report_num_sentences"].to(device)
    g, f, b = networks.generator, networks.report_decoder, real.shape[0]
    losses = []
    for _ in range(settings["n_critic"]):
        y_fake = labels[torch.randperm(b, device=device)]
        with autocast():
            with torch.no_grad():
                x_fake = g(torch.randn(b, z_dim, device=device), y_fake)
                s_fake = terms.sample_reports(f, x_fake, y_fake, tau) if objective.uses_text else None
            d_terms = terms.discriminator_terms(networks, (real, labels, report), (x_fake, y_fake, s_fake), objective)
            d_loss = terms.weighted_sum(d_terms, objective, real)
        d_optimizer.zero_grad(set_to_none=True)
        d_scaler.scale(d_loss).backward()
        d_scaler.step(d_optimizer)
        d_scaler.update()
        losses.append(d_loss.detach())

    y_fake = labels[torch.randperm(b, device=device)]
    with grads.frozen(networks[2:]):
        with autocast():
            x_fake = g(torch.randn(b, z_dim, device=device), y_fake)
            _, adversarial = terms.generator_objective(networks, x_fake, y_fake, objective, gradients)
            teacher_terms = terms.teacher_forcing_terms(f, real, report, num_sentences, labels, None, objective)
            teacher = objective.teacher_forcing_weight * teacher_terms["f_teacher_forcing"]
        g_optimizer.zero_grad(set_to_none=True)
        if f_optimizer is not None:
            f_optimizer.zero_grad(set_to_none=True)
        if gradients.splits_backward(True):
            image_params = {id(p) for p in f.image_reader_parameters()}
            grads.backward_split(f, adversarial, teacher, gradients, g_scaler, image_params)
        else:
            g_scaler.scale(adversarial + teacher).backward()
        g_scaler.step(g_optimizer)
        if f_optimizer is not None:
            g_scaler.step(f_optimizer)
        g_scaler.update()
    if ema is not None:
        with torch.no_grad():
            for e, p in zip(ema.parameters(), g.parameters()):
                e.lerp_(p, 1.0 - settings["ema_decay"])
            for e, p in zip(ema.buffers(), g.buffers()):
                e.copy_(p)
    losses.append((adversarial + teacher).detach())
    return torch.stack(losses).tolist()


def time_interleaved(
    training: Training, iterations: int, warmup: int, memory: PeakMemory
) -> tuple[Measurement, Measurement]:
    """Time the engine and :func:`bare_iteration` alternately: a handler on the trainer's ``ITERATION_COMPLETED``
    runs one bare iteration after each engine iteration, so both see the same machine load (other jobs on a shared
    machine change it from minute to minute). An engine iteration is timed from the end of the previous bare
    iteration to its ``ITERATION_COMPLETED`` (batch fetching and Ignite's events included), a bare iteration end to
    end; the peak memory of each is taken over its own iterations. The bare loop keeps its own EMA copy of G."""
    from ignite.engine import Events

    _check_counts(iterations, warmup)
    trainer, settings, device = training.trainer, training.settings, training.device
    if len(trainer.data_loader) != warmup + iterations:
        raise ValueError(f"the trainer's loader has {len(trainer.data_loader)} batches, need {warmup + iterations}")
    ema = None
    if settings["ema_decay"] is not None:
        ema = copy.deepcopy(training.networks["generator"]).eval().requires_grad_(False)
    scalers = (torch.amp.GradScaler("cuda", enabled=training.amp), torch.amp.GradScaler("cuda", enabled=training.amp))
    times: dict[str, list[float]] = {"engine": [], "bare": []}
    peaks = {"engine": 0, "bare": 0}
    last_end = [0.0]

    def started(engine: Any) -> None:
        memory.reset()
        last_end[0] = time.perf_counter()

    def completed(engine: Any) -> None:
        _sync(device)
        engine_end = time.perf_counter()
        timed = engine.state.iteration > warmup
        if timed:
            times["engine"].append(engine_end - last_end[0])
            peaks["engine"] = max(peaks["engine"], memory.peak())
        memory.reset()
        bare_start = time.perf_counter()
        bare_iteration(
            training.networks,
            training.g_optimizer,
            training.d_optimizer,
            training.batch,
            settings,
            device,
            trainer.objective,
            trainer.gradients,
            ema=ema,
            scalers=scalers,
            amp=training.amp,
            f_optimizer=training.f_optimizer,
        )
        _sync(device)
        bare_end = time.perf_counter()
        if timed:
            times["bare"].append(bare_end - bare_start)
            peaks["bare"] = max(peaks["bare"], memory.peak())
        memory.reset()
        last_end[0] = time.perf_counter()

    handles = [
        trainer.add_event_handler(Events.STARTED, started),
        trainer.add_event_handler(Events.ITERATION_COMPLETED, completed),
    ]
    try:
        trainer.run()
    finally:
        for handle in handles:
            handle.remove()
    b = settings["batch_size"]
    return Measurement(times["engine"], b, peaks["engine"]), Measurement(times["bare"], b, peaks["bare"])


def _set_threads(num_threads: int | None) -> None:
    if num_threads:
        torch.set_num_threads(int(num_threads))


def _release(training: Training) -> None:
    """Drop the trainer (its EMA copy and Ignite state) and free memory before the next measurement."""
    training.trainer = None
    gc.collect()
    if training.device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- memory at batch 512
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


def _sweep_point(
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
    primed (:func:`prime_optimizer_states`); run in a fresh process so that each batch size starts from the same
    empty state. The peak is over the whole process after the imports: weights, states and activations."""
    _set_threads(num_threads)
    torch_device = torch.device(device)
    memory = PeakMemory(torch_device)
    overrides = {"n_critic": int(n_critic)} if n_critic else None
    training = build_training(
        preset, batch_size, torch_device, amp, vocab_size, length=1, seed=seed, overrides=overrides, memory=memory
    )
    prime_optimizer_states(*(o for o in (training.g_optimizer, training.f_optimizer, training.d_optimizer) if o))
    start = time.perf_counter()
    training.trainer.run()
    _sync(torch_device)
    seconds = time.perf_counter() - start
    return {
        "batch_size": int(batch_size),
        "peak_memory_bytes": memory.peak(),
        "seconds_per_iteration": seconds,
        "parameters": parameter_counts(training.networks),
        "n_critic": training.settings["n_critic"],
    }


def model_state_bytes(counts: Mapping[str, int], ema: bool = True) -> int:
    """fp32 weights + gradients + Adam's two moments of every network, + the EMA copy of G: the batch-independent
    memory a data-parallel GPU holds (a check on the fitted fixed term)."""
    total = sum(counts.values()) * 4 * 4
    return int(total + (counts.get("generator", 0) * 4 if ema else 0))


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
                    _sweep_point, preset, int(batch_size), device, amp, vocab_size, num_threads, seed, n_critic
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


# ---------------------------------------------------------------------------------------------- report
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


# ---------------------------------------------------------------------------------------------- entry point
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
    _check_counts(iterations, warmup)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for but CUDA is not available")
    _set_threads(num_threads)
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
    _release(training)
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
        _release(other)
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
    script = Path(sys.argv[0]).name if sys.argv else ""
    result["command"] = (
        ("python scripts/benchmark_train.py " + " ".join(sys.argv[1:])).strip()
        if script == Path(__file__).name
        else f"run_benchmark(preset={preset!r}, ...)"
    )
    result["note"] = note
    markdown = format_markdown(result)
    result["markdown"] = markdown
    if verbose:
        print(markdown)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(markdown, encoding="utf-8")
    if out_json:
        import json

        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=1))
    if not all(math.isfinite(v) for v in (result["engine_over_bare"], result["memory_engine_over_bare"])):
        raise RuntimeError(f"non-finite ratio: {result['engine_over_bare']}, {result['memory_engine_over_bare']}")
    return result


if __name__ == "__main__":
    import fire

    fire.Fire(run_benchmark, serialize=lambda _: None)
