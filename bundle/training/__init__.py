"""EMIXER training: the objective's terms (:mod:`.objective`), the routing of their gradients (:mod:`.gradients`),
the trainer that orders the steps (:mod:`.trainer`), and what it uses: batches (:mod:`.batch`), the generator's
moving average (:mod:`.ema`), the report decoder's warm-up (:mod:`.warmup`), data parallelism
(:mod:`.distributed`) and the Ignite handlers (:mod:`.handlers`)."""

from bundle.training.gradients import GradientControls
from bundle.training.objective import LOSS_KEYS, EMIXERNetworks, Objective
from bundle.training.trainer import EMIXERTrainer

__all__ = ["LOSS_KEYS", "EMIXERNetworks", "EMIXERTrainer", "GradientControls", "Objective"]
