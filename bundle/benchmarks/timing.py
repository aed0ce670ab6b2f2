"""Time the MONAI/Ignite engine against a bare Python loop doing the same work on the same networks.

One iteration is ``n_critic`` discriminator steps and one G/F step on a batch of real images. The bare loop
(:func:`bare_iteration`) is built from the trainer's own term functions (:mod:`bundle.training.objective`), so the
two compute the same losses and the ratio of their seconds per iteration is the cost of the engine alone;
:func:`time_interleaved` runs them alternately so that both see the same machine load.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bundle.benchmarks.memory import PeakMemory
from bundle.benchmarks.training import Training, sync
from bundle.training import gradients as grads
from bundle.training import objective as terms
from bundle.training.gradients import GradientControls
from bundle.training.objective import EMIXERNetworks, Objective

__all__ = ["Measurement", "bare_iteration", "check_counts", "time_engine", "time_interleaved"]


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


def check_counts(iterations: int, warmup: int) -> None:
    """Refuse counts that leave nothing to time: the first timed iteration starts at the end of a warm-up one."""
    if iterations < 1 or warmup < 1:
        raise ValueError(
            f"need iterations >= 1 and warmup >= 1 (the first timed step starts after one), "
            f"got iterations={iterations}, warmup={warmup}"
        )


def _check_loader(trainer: Any, iterations: int, warmup: int) -> None:
    if len(trainer.data_loader) != warmup + iterations:
        raise ValueError(f"the trainer's loader has {len(trainer.data_loader)} batches, need {warmup + iterations}")


def time_engine(training: Training, iterations: int, warmup: int, memory: PeakMemory) -> Measurement:
    """Run the trainer for ``warmup + iterations`` iterations; time each of the last ``iterations`` between
    consecutive ``ITERATION_COMPLETED`` events (so batch fetching and event handling are included) and take the peak
    memory over them. The trainer's data loader must hold ``warmup + iterations`` batches."""
    from ignite.engine import Events

    check_counts(iterations, warmup)
    trainer = training.trainer
    _check_loader(trainer, iterations, warmup)
    stamps: list[float] = []

    def completed(engine: Any) -> None:
        sync(training.device)
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

    check_counts(iterations, warmup)
    trainer, settings, device = training.trainer, training.settings, training.device
    _check_loader(trainer, iterations, warmup)
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
        sync(device)
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
        sync(device)
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
