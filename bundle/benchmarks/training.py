"""One EMIXER training built from the bundle configs with no dataset, for the benchmark to run.

The class count and vocabulary size are set directly and the batches are synthetic ones of the contract's shapes and
dtypes (images in [-1, 1], multi-hot labels, report tokens as ``TokenizeReportd`` lays them out), repeated by a
loader with no loading cost, so that only training is timed.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bundle.benchmarks.memory import PeakMemory
from bundle.benchmarks.presets import NETWORKS, PRESETS
from bundle.data.labels import DEFAULT_CLASSES
from bundle.data.tokenizer import END, PAD
from bundle.workflows import DEMO_TRAIN_CONFIGS, TRAIN_CONFIGS, parse_config

__all__ = [
    "RepeatedBatch",
    "Training",
    "build_training",
    "parameter_counts",
    "preset_configs",
    "release",
    "set_threads",
    "sync",
    "synthetic_batch",
]

#: The config values a benchmark run reads back after the overrides (for the bare loop and the report).
SETTING_KEYS = (
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


def preset_configs(preset: str) -> tuple[str, ...]:
    """The config files of ``preset``: the training config, with the demo's overrides where the preset says so."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {sorted(PRESETS)}")
    return DEMO_TRAIN_CONFIGS if PRESETS[preset]["demo"] else TRAIN_CONFIGS


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
    files = preset_configs(preset)
    spec = PRESETS[preset]
    device = torch.device(device)
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
    parser = parse_config(files, settings)
    parser.get_parsed_content("imports")
    settings.update({key: parser.get_parsed_content(key) for key in SETTING_KEYS})
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


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that a clock read after it covers that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_threads(num_threads: int | None) -> None:
    """torch's CPU threads, where given."""
    if num_threads:
        torch.set_num_threads(int(num_threads))


def release(training: Training) -> None:
    """Drop the trainer (its EMA copy and Ignite state) and free memory before the next measurement."""
    training.trainer = None
    gc.collect()
    if training.device.type == "cuda":
        torch.cuda.empty_cache()
