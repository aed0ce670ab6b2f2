"""Report decoder F alone: which text-path variant writes reports that state the findings?

    python scripts/benchmark_report_decoder.py --dataset_dir data/embedded --iterations 2500
    python scripts/benchmark_report_decoder.py --variants '["demo"]' --lr 1e-3

``--checkpoint`` scores a trained run's F the same way instead of training one (e.g. to compare its reports on
real validation images with those it wrote for the generated images):

    python scripts/benchmark_report_decoder.py --checkpoint output/demo/models/checkpoint_final.pt --num_eval 192
    python scripts/benchmark_report_decoder.py --help          # every flag

The protocol is described in :mod:`bundle.benchmarks.report_decoder`. Other flags override ids of the demo training
config (``--batch_size 8``, ``--text_hidden 128``); a flag that is neither a parameter nor such an id stops the
command before any work.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.benchmarks.report_decoder import benchmark, unknown_overrides  # noqa: E402
from bundle.cli import run_fire  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command line: flags checked before any work, then :func:`bundle.benchmarks.report_decoder.benchmark`."""
    return run_fire(benchmark, argv, name="benchmark_report_decoder", check=unknown_overrides)


if __name__ == "__main__":
    sys.exit(main())
