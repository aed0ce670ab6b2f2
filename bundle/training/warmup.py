"""Teacher-forcing steps of the report decoder F alone before the first GAN iteration of a fresh run.

A decoder that already writes reports gives the report and joint discriminators real text to judge from the
start, and one F step costs a fraction of a GAN iteration.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["ReportDecoderWarmup"]


class ReportDecoderWarmup:
    """``iterations`` calls of ``engine.report_decoder_step`` on the engine's training batches (its own pass over the
    data loader), at the start of iteration 1 only: a resumed run, which starts later, skips it.

    Args:
        iterations: teacher-forcing steps of F alone.
        log_every: steps between log lines of the mean loss.
    """

    def __init__(self, iterations: int, log_every: int = 100) -> None:
        if iterations < 0:
            raise ValueError(f"report_warmup_iterations={iterations} must be >= 0")
        self.iterations, self.log_every = int(iterations), int(log_every)

    def attach(self, engine: Engine) -> None:
        if self.iterations:
            engine.add_event_handler(Events.ITERATION_STARTED(once=1), self)

    def __call__(self, engine: Any) -> list[float]:
        """Run the warm-up on ``engine`` (an ``EMIXERTrainer``); returns the losses."""
        losses: list[float] = []
        batches: Iterator | None = None
        while len(losses) < self.iterations:
            batchdata = next(batches, None) if batches is not None else None
            if batchdata is None:
                batches = iter(engine.data_loader)
                batchdata = next(batches, None)
                if batchdata is None:
                    raise ValueError("the training data loader yields no batches")
            losses.append(engine.report_decoder_step(batchdata))
            if len(losses) % self.log_every == 0 or len(losses) == self.iterations:
                recent = losses[-self.log_every :]
                engine.logger.info(
                    f"report decoder warm-up {len(losses)}/{self.iterations}: "
                    f"teacher-forcing loss {sum(recent) / len(recent):.3f}"
                )
        return losses
