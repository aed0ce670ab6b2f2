"""Evaluate generated data and the trained report decoder against real data; one subcommand per evaluation.

    python scripts/evaluate.py run --real data/embedded --generated output/demo/generated --out output/evaluation \
        [--classifier output/classifier/model.pt] [--checkpoint output/demo/models/checkpoint_final.pt \
        --config_file "['configs/train.json','configs/demo.json']"] [--max_items 2000]
    python scripts/evaluate.py decode --checkpoint output/demo/models/checkpoint_final.pt --real data/embedded \
        --out eval/decoder --config_file "['configs/train.json','configs/demo.json']"
    python scripts/evaluate.py decode --checkpoint ... --images output/demo/generated/manifest.csv --out eval/gen
    python scripts/evaluate.py reports --references refs.jsonl --hypotheses hyps.jsonl --out eval/ [--clinical True]

``run``: the full evaluation of a generated paired dataset (:func:`bundle.workflows.evaluate`: FID, MS-SSIM
diversity, label agreement with two classifiers, report labels, report baselines, memorisation audit; metrics.json,
report.md, figures, TensorBoard). Without ``--classifier`` it trains the evaluation classifier first; with
``--checkpoint`` it also scores F's reports on the real test images. The same run as a bundle workflow:
``python -m monai.bundle run --config_file configs/evaluate.json --real_dir ...``.
``decode``: F's greedy reports on the real test split, scored (:func:`bundle.workflows.evaluate_decoder`), or with
``--images`` on any images, written only (:func:`bundle.workflows.decode_images`). ``reports``: reports in two JSONL
files scored against each other (:func:`bundle.evaluation.console.score_reports`). Other flags of ``run`` are
classifier config values, of ``decode`` F's training config values (e.g. ``--image_size 64``). ``--help`` lists the
commands, ``<command> --help`` its flags; a flag a command does not take stops it before any work.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle import workflows  # noqa: E402
from bundle.cli import run_fire_commands  # noqa: E402
from bundle.data.errors import DataError  # noqa: E402
from bundle.evaluation.console import print_decoded_images, print_decoder_run, print_evaluation, score_reports  # noqa: E402
from bundle.evaluation.decode import HYPOTHESES  # noqa: E402


def decode(
    checkpoint: str,
    real: str | None = None,
    out: str | None = None,
    images: str | None = None,
    config_file: str | Sequence[str] | None = None,
    split: str | None = None,
    max_items: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
    meteor: bool | str = "auto",
    skip_bad: bool = False,
    seed: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """Score F's reports on the real test images (``--real``), or write its reports for ``--images``; ``--out`` is
    required. Options as in :func:`bundle.workflows.evaluate_decoder`."""
    if (real is None) == (images is None):
        raise ValueError("decode needs one of --real (score the real test split) or --images (reports only)")
    if out is None:
        raise ValueError("decode needs --out, the output folder")
    common = {"max_items": max_items, "batch_size": batch_size, "device": device, "skip_bad": skip_bad, "seed": seed}
    if images is not None:
        decoded = workflows.decode_images(images, checkpoint, config_file, out, split, **common, **overrides)
        return print_decoded_images(decoded, Path(out) / HYPOTHESES)
    metrics = workflows.evaluate_decoder(
        checkpoint, real, out, config_file=config_file, split=split or "test", meteor=meteor, **common, **overrides
    )
    print_decoder_run(metrics, out, Path(out) / HYPOTHESES)
    return metrics


def run(
    real: str,
    generated: str,
    out: str,
    classifier: str | None = None,
    checkpoint: str | None = None,
    config_file: str | Sequence[str] | None = None,
    decoder_overrides: Mapping[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The full evaluation (:func:`bundle.workflows.evaluate`); ``--classifier`` is its ``classifier_checkpoint``,
    ``--checkpoint`` / ``--config_file`` / ``--decoder_overrides`` F's checkpoint, configs and training values; other
    flags are its options or classifier config values. Prints the verdict, the summary and where the report is."""
    metrics = workflows.evaluate(
        real,
        generated,
        out,
        classifier_checkpoint=classifier,
        decoder_checkpoint=checkpoint,
        decoder_config=config_file,
        decoder_overrides=decoder_overrides,
        **options,
    )
    print_evaluation(metrics, out, with_decoder=checkpoint is not None)
    return metrics


#: The subcommands (the first argument names one).
COMMANDS = {"decode": decode, "reports": score_reports, "run": run}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: flags checked before any work; bad input, missing files and METEOR without Java end with a
    one-line error naming the problem (exit status 2)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    errors = (DataError, FileNotFoundError, RuntimeError)
    return run_fire_commands(COMMANDS, argv, name="evaluate", user_errors=errors)


if __name__ == "__main__":
    sys.exit(main())
