"""The bundle's workflows: the one package that knows where ``configs/`` is and composes config files with overrides
(MONAI ``ConfigParser`` / ``ConfigWorkflow``). The library below it receives what the configs build (parsers,
networks, transforms) or plain values, so configs call code and code never reads configs on its own.

* config files: :data:`CONFIG_DIR` and the default lists (:data:`TRAIN_CONFIGS`, :data:`DEMO_TRAIN_CONFIGS`,
  :data:`DEMO_INFER_CONFIGS`, :data:`CLASSIFIER_CONFIGS`, :data:`INDEPENDENT_CONFIGS`, :data:`DECODER_CONFIGS`);
  :func:`config_files` takes a user's file or list, or the defaults; :func:`parse_config` composes files and
  overrides; :func:`run_workflow` runs one as ``python -m monai.bundle run`` does.
* the evaluation classifier: :func:`classifier_overrides` (pointed at a dataset, images only),
  :func:`classifier_preprocessing`, :func:`train_classifier`, :func:`load_classifier`, :func:`independent_overrides`.
* the report decoder F: :func:`decoder_parser` (the training config pointed at a dataset or a released model),
  :func:`decode_reports`, :func:`evaluate_decoder`, :func:`decode_images`.
* :func:`evaluate`: the full evaluation run (``configs/evaluate.json`` and ``scripts/evaluate.py run`` call it).
* :func:`run_demo`: the main job on the embedded dataset: prepare, train, generate.
"""

from __future__ import annotations

from bundle.workflows.configs import (
    CLASSIFIER_CONFIGS,
    CONFIG_DIR,
    DECODER_CONFIGS,
    DEMO_INFER_CONFIGS,
    DEMO_TRAIN_CONFIGS,
    INDEPENDENT_CONFIGS,
    INDEPENDENT_DROPPED_KEYS,
    TRAIN_CONFIGS,
    config_files,
    parse_config,
    run_workflow,
    unknown_config_ids,
)
from bundle.workflows.demo import run_demo
from bundle.workflows.evaluation import evaluate
from bundle.workflows.models import (
    classifier_overrides,
    classifier_preprocessing,
    decode_images,
    decode_reports,
    decoder_parser,
    evaluate_decoder,
    independent_overrides,
    load_classifier,
    train_classifier,
)

__all__ = [
    "CLASSIFIER_CONFIGS",
    "CONFIG_DIR",
    "DECODER_CONFIGS",
    "DEMO_INFER_CONFIGS",
    "DEMO_TRAIN_CONFIGS",
    "INDEPENDENT_CONFIGS",
    "INDEPENDENT_DROPPED_KEYS",
    "TRAIN_CONFIGS",
    "classifier_overrides",
    "classifier_preprocessing",
    "config_files",
    "decode_images",
    "decode_reports",
    "decoder_parser",
    "evaluate",
    "evaluate_decoder",
    "independent_overrides",
    "load_classifier",
    "parse_config",
    "run_demo",
    "run_workflow",
    "train_classifier",
    "unknown_config_ids",
]
