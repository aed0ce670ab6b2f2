"""Build the zip the MONAI Model Zoo expects from a trained EMIXER-CXR run.

    python scripts/package_bundle.py                                   # the demo run in output/demo
    python scripts/package_bundle.py --ckpt output/models/checkpoint_final.pt \\
        --train_configs "['configs/train.json']" --dataset_dir data/mimic --out dist/emixer_cxr.zip
    python scripts/package_bundle.py --help                            # every flag

What the zip holds is described in :mod:`bundle.packaging`; inference runs from the unpacked folder with
``python -m monai.bundle run --config_file configs/inference.json`` and needs no dataset. An existing zip is not
overwritten unless ``--overwrite``. Other flags are the training run's config overrides (e.g. ``--image_size 32``);
a flag that is neither a parameter nor an id of the training configs stops the command before any work.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.cli import run_fire  # noqa: E402
from bundle.data.errors import DataError  # noqa: E402
from bundle.packaging import package_bundle, unknown_overrides  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command line: flags checked before any work, then :func:`bundle.packaging.package_bundle`; a missing input or
    an existing zip ends with a one-line error and exit status 2."""
    return run_fire(
        package_bundle,
        argv,
        name="package_bundle",
        check=unknown_overrides,
        user_errors=(DataError, FileExistsError, FileNotFoundError),
    )


if __name__ == "__main__":
    sys.exit(main())
