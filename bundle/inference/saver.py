"""From the sampler to the dataset writer: :class:`PairedOutputSaver`, an Ignite handler that turns each batch's
report tokens into text (:func:`decode_report_tokens`) and hands the batch to a
:class:`bundle.inference.writer.PairedDatasetWriter`, which it finalises when the run completes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from ignite.engine import Engine, Events

logger = logging.getLogger(__name__)

__all__ = ["decode_report_tokens", "PairedOutputSaver"]


def decode_report_tokens(tokenizer: Any, tokens: torch.Tensor, num_sentences: torch.Tensor) -> list[str]:
    """Report texts of F's output (``tokens [B, S, W]``, ``num_sentences [B]``) through ``tokenizer.decode``."""
    return [tokenizer.decode(t, int(n)) for t, n in zip(tokens, num_sentences)]


class PairedOutputSaver:
    """Writes each sampler batch through a :class:`bundle.inference.writer.PairedDatasetWriter` and finalises it at
    the end.

    Args:
        writer: the output writer (it owns the folder, the manifest and resume state).
        tokenizer: the report tokenizer (``decode(tokens, num_sentences)``) that turns ids into text.
        output_transform: picks the sampler output from ``engine.state.output``.
    """

    def __init__(self, writer: Any, tokenizer: Any, output_transform: Callable[[Any], Any] = lambda x: x) -> None:
        self.writer, self.tokenizer, self.output_transform = writer, tokenizer, output_transform
        self.summary: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.finalize)

    def reports(self, tokens: torch.Tensor, num_sentences: torch.Tensor) -> list[str]:
        return decode_report_tokens(self.tokenizer, tokens, num_sentences)

    def __call__(self, engine: Engine) -> None:
        out = self.output_transform(engine.state.output)
        reports = self.reports(out["report_tokens"], out["report_num_sentences"])
        self.writer.write_batch(out["images"], reports, out["labels"], out["seeds"], out["sample_indices"])

    def finalize(self, engine: Engine | None = None) -> dict[str, Any]:
        self.summary = self.writer.finalize()
        logger.info("wrote %s paired samples to %s", self.summary.get("num_samples"), self.writer.out_dir)
        return self.summary
