"""Does synthetic data help a classifier? Train on real data alone and on real + k x synthetic, test on real data.

    python scripts/augmentation_experiment.py --real data/embedded --generated output/generated --out output/aug
    python scripts/augmentation_experiment.py --real data/embedded --generated output/generated --out output/aug \\
        --ks "[0, 1, 2, 5]" --seeds "[0, 1, 2]" --max_epochs 10
    python scripts/augmentation_experiment.py --help          # every flag

The protocol and the outputs are described in :mod:`bundle.experiments.augmentation`. Other flags override ids of
the classifier configs (``--learning_rate``, ``--num_workers``...); a flag that is neither a parameter nor such an id
stops the command before any work, and bad input ends it with a one-line error naming the file and the problem.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.cli import run_fire  # noqa: E402
from bundle.data.errors import DataError  # noqa: E402
from bundle.experiments.augmentation import augmentation_experiment, unknown_overrides  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command line: flags checked before any work; bad input ends with a one-line error and exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_fire(
        augmentation_experiment,
        argv,
        name="augmentation_experiment",
        check=unknown_overrides,
        user_errors=(DataError, FileNotFoundError, RuntimeError),
    )


if __name__ == "__main__":
    sys.exit(main())
