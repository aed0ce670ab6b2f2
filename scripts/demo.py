"""The main job on the embedded default dataset: prepare it, train EMIXER on it, generate paired samples.

    python scripts/demo.py                       # 2,000 studies, the demo training run, 4 samples per finding
    python scripts/demo.py --num_items 200       # a quicker look
    python scripts/demo.py --train False         # prepare and summarise only
    python scripts/demo.py --max_epochs 4        # train further (resumes from the last checkpoint)

1. Prepares the embedded dataset into ``<dataset_dir>`` (raw MIMIC-CXR-JPG-layout data in ``raw/``, the MONAI
   datalist, tokenizer and summary) unless it is there: an existing dataset folder is reused, never overwritten.
   A preview sheet (one real example per finding, with its report) goes to ``<output_dir>/embedded_preview.png``.
2. Trains with ``configs/train.json`` + ``configs/demo.json`` (a CPU-sized EMIXER) into ``<output_dir>/demo``:
   checkpoints in ``models/``, TensorBoard logs in ``tensorboard/``, sample grids in ``samples/``. A finished or
   interrupted run in that folder is resumed from its newest checkpoint.
3. Generates ``samples_per_class`` paired samples per finding with ``configs/inference.json`` into
   ``<output_dir>/demo/generated`` (images, reports, manifest, datalist, index.html) and a sheet of one sample per
   finding with its report, ``<output_dir>/demo/generated_preview.png``.

Other flags override ids of the bundle configs of steps 2 and 3 (e.g. ``--image_size 32``); a flag that is neither
a parameter nor such an id stops the command before any work, and ``--help`` prints the flags without running. The
steps are :func:`bundle.workflows.run_demo`.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.cli import run_fire  # noqa: E402
from bundle.workflows import run_demo, unknown_config_ids  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command line: flags checked before any work, then :func:`bundle.workflows.run_demo`."""
    return run_fire(run_demo, argv, check=lambda _arguments, overrides: unknown_config_ids(overrides))


if __name__ == "__main__":
    sys.exit(main())
