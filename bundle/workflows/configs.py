"""Where ``configs/`` is, the default config lists, and composing files with overrides (the only module of the
bundle that names the config folder): :func:`config_files`, :func:`parse_config`, :func:`run_workflow`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The bundle's config folder (the repository root is the bundle root).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def _configs(*names: str) -> tuple[str, ...]:
    return tuple(str(CONFIG_DIR / name) for name in names)


#: EMIXER's training config (the paper's settings).
TRAIN_CONFIGS: tuple[str, ...] = _configs("train.json")
#: The demo's CPU-sized training and generation.
DEMO_TRAIN_CONFIGS: tuple[str, ...] = _configs("train.json", "demo.json")
DEMO_INFER_CONFIGS: tuple[str, ...] = _configs("inference.json", "demo.json")
#: The evaluation classifier: the generator's config (data, preprocessing) then the classifier's overrides.
CLASSIFIER_CONFIGS: tuple[str, ...] = _configs("train.json", "train_classifier.json")
#: The independent evaluation classifier (a MONAI ResNet-18, set by ``independent_classifier_def``): the same data,
#: preprocessing, trainer and checkpoint selection as :data:`CLASSIFIER_CONFIGS`, its own folder
#: ``<output_dir>/classifier_independent``.
INDEPENDENT_CONFIGS: tuple[str, ...] = (*CLASSIFIER_CONFIGS, *_configs("train_classifier_independent.json"))
#: F's training config; add ``configs/demo.json`` and your overrides for a model trained with them.
DECODER_CONFIGS: tuple[str, ...] = TRAIN_CONFIGS
#: Overrides of the first classifier that :func:`independent_overrides` leaves out: its architecture and its files.
INDEPENDENT_DROPPED_KEYS: tuple[str, ...] = (
    "classifier_def",
    "classifier_dir",
    "classifier_checkpoint",
    "classifier_tensorboard_dir",
)
#: Options of the decode functions that may travel in ``decoder_overrides`` beside F's training config values.
DECODE_OPTIONS: tuple[str, ...] = ("split", "max_items", "batch_size", "device", "meteor", "skip_bad", "seed")

ConfigFiles = str | PathLike | Sequence[str | PathLike] | None


# ------------------------------------------------------------------------------------------------ composing configs
def config_files(config_file: ConfigFiles, defaults: Sequence[str], what: str = "classifier") -> list[str]:
    """Bundle config files to merge in order: ``config_file`` (one file or a list) or ``defaults``; a missing file
    raises FileNotFoundError naming it (``what`` says whose configs they are)."""
    if config_file is None:
        return list(defaults)
    files = [config_file] if isinstance(config_file, (str, PathLike)) else list(config_file)
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"{what} config files not found: {', '.join(missing)}")
    return [str(f) for f in files]


def parse_config(files: Sequence[str | PathLike], overrides: Mapping[str, Any] | None = None) -> Any:
    """A ``ConfigParser`` of ``files`` merged in order, then ``overrides`` set by id (``a#b`` for nested ids)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


def run_workflow(config_files: Sequence[str], workflow_type: str, **overrides: Any) -> Any:
    """Run a bundle workflow (``initialize``, ``run``, ``finalize``) as ``python -m monai.bundle run`` does."""
    from monai.bundle import ConfigWorkflow

    flow = ConfigWorkflow(config_file=list(config_files), workflow_type=workflow_type, **overrides)
    flow.initialize()
    flow.run()
    flow.finalize()
    return flow


def unknown_config_ids(
    overrides: Mapping[str, Any], config_lists: Sequence[Sequence[str]] = (DEMO_TRAIN_CONFIGS, DEMO_INFER_CONFIGS)
) -> list[str]:
    """The names in ``overrides`` that are ids (nested ids such as ``train#trainer#max_epochs`` included) of none of
    ``config_lists``: a bundle config takes an unknown id without complaint, so such a name is a typo that would
    change nothing, and a command refuses it before any work."""
    parsers = [parse_config(files) for files in config_lists]
    return [name for name in overrides if not any(name in parser for parser in parsers)]
