"""Find the checkpoint to resume from, so that killing a run and starting it again continues it.

MONAI's ``CheckpointSaver`` writes ``checkpoint_iteration=<N>.pt`` every ``save_interval`` iterations (keeping
the last ``n_saved``) and ``checkpoint_final.pt`` when a run completes or fails. The newest of these files is
the state a restarted run should load. Usable from a bundle config:
``"$@resume_from or bundle.checkpoints.latest_checkpoint(@ckpt_dir)"``.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["latest_checkpoint", "checkpoint_iteration"]

_ITERATION = re.compile(r"_(?:iteration|epoch)=(\d+)\.pt$")


def checkpoint_iteration(path: str | Path) -> int:
    """The count in a ``checkpoint_iteration=<N>.pt`` (or ``_epoch=<N>``) file name; -1 for other names."""
    match = _ITERATION.search(Path(path).name)
    return int(match.group(1)) if match else -1


def latest_checkpoint(ckpt_dir: str | Path, pattern: str = "checkpoint_*.pt") -> str:
    """Path of the newest checkpoint in ``ckpt_dir``, or ``""`` when there is none (or no such folder).

    "Newest" is the last written (modification time): after an interrupted run that is its last interval
    checkpoint, after a completed (or crashed) one its final checkpoint. Ties (coarse file-system clocks) go to
    ``checkpoint_final.pt``, which a run writes last, then to the larger iteration number in the name.
    """
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return ""
    files = [f for f in folder.glob(pattern) if f.is_file()]
    if not files:
        return ""

    def order(f: Path) -> tuple[int, int, int]:
        return f.stat().st_mtime_ns, int(f.name.endswith("_final.pt")), checkpoint_iteration(f)

    return str(max(files, key=order))
