"""Re-export of :mod:`bundle.inference.checkpoints` for importers not yet switched to it."""

from bundle.inference.checkpoints import checkpoint_iteration, latest_checkpoint

__all__ = ["latest_checkpoint", "checkpoint_iteration"]
