"""Training throughput and memory of EMIXER: the MONAI/Ignite engine against a bare loop, and memory at batch 512.

    python scripts/benchmark_train.py --preset demo --iterations 5 --out docs/benchmarks.md
    python scripts/benchmark_train.py --preset paper --device cuda --amp --memory_batch_sizes 8,16,32,64
    python scripts/benchmark_train.py --help          # every flag

Builds the networks and :class:`bundle.training.EMIXERTrainer` from the bundle configs with synthetic batches and
times it against a bare loop built from the same objective functions; the memory of the paper's setting is
extrapolated from small batches, each in a fresh process. What is measured is described in
:mod:`bundle.benchmarks.train`. It prints a Markdown table and, with ``--out``, writes it with the command, machine
and date. A flag it does not know stops the command before any work.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.benchmarks.train import run_benchmark  # noqa: E402
from bundle.cli import run_fire  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command line: flags checked before any work, then :func:`bundle.benchmarks.train.run_benchmark`."""
    return run_fire(run_benchmark, argv, name="benchmark_train")


if __name__ == "__main__":
    sys.exit(main())
