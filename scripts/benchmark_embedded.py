"""Learnability benchmark of the embedded dataset: can a small CNN read the drawn findings from the images?

    python scripts/benchmark_embedded.py                      # 600 items at 64 px, grammar reports
    python scripts/benchmark_embedded.py --data_dir DIR       # an existing embedded dataset
    python scripts/benchmark_embedded.py --help               # every flag

The protocol is described in :mod:`bundle.benchmarks.embedded`; a flag it does not know stops the command before
any work.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.benchmarks.embedded import run_benchmark  # noqa: E402
from bundle.cli import run_fire  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command line: flags checked before any work, then :func:`bundle.benchmarks.embedded.run_benchmark`."""
    return run_fire(run_benchmark, argv, name="benchmark_embedded")


if __name__ == "__main__":
    sys.exit(main())
