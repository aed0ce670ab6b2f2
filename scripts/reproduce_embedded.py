"""Reproduce EMIXER's experiments on the embedded dataset and write the results page and its JSON.

    python scripts/reproduce_embedded.py                                  # every setting, seed 0, demo config
    python scripts/reproduce_embedded.py --settings "[full,decoder_alone]" --seeds "[0,1]"
    python scripts/reproduce_embedded.py --settings "[full,sm_gan]" --seeds "{full: [0,1], sm_gan: [0]}"
    python scripts/reproduce_embedded.py --settings full --dataset_seed 7 --dataset_dir data/embedded_seed7
    python scripts/reproduce_embedded.py --help                           # every flag

The steps, the settings and the page are described in :mod:`bundle.experiments.reproduce`. Other flags override ids
of the training and inference configs (e.g. ``--image_size 32``); a flag that is neither a parameter nor such an id
stops the command before any work.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.cli import run_fire  # noqa: E402
from bundle.experiments.reproduce import reproduce  # noqa: E402
from bundle.experiments.settings import unknown_overrides  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command line: flags checked before any work, then :func:`bundle.experiments.reproduce.reproduce`."""
    return run_fire(reproduce, argv, check=lambda _arguments, overrides: unknown_overrides(overrides))


if __name__ == "__main__":
    sys.exit(main())
