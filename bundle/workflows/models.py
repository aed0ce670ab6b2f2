"""The evaluation classifier and the report decoder F built from their configs: the classifier's overrides,
preprocessing, training and loading; F's parser and its decoding of real test images or of any images."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bundle.classifier import classifier_from_config, read_classifier_state, state_sizes
from bundle.data.datalist import DATALIST_NAME, Datalist
from bundle.evaluation import decode
from bundle.evaluation.classify import image_preprocessing
from bundle.transforms import TokenizeReportd
from bundle.workflows.configs import (
    CLASSIFIER_CONFIGS,
    DECODER_CONFIGS,
    INDEPENDENT_DROPPED_KEYS,
    ConfigFiles,
    config_files,
    parse_config,
    run_workflow,
)

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ the classifier
def _target_class(step: Any) -> Any:
    """The class a config step's ``_target_`` names (a short MONAI name or a dotted path), None when it names none."""
    import pydoc

    from monai.bundle.config_item import ComponentLocator, ConfigComponent

    if not isinstance(step, Mapping) or not isinstance(step.get("_target_"), str):
        return None
    name = ConfigComponent(config=dict(step), locator=ComponentLocator()).resolve_module_name()
    return pydoc.locate(name) if isinstance(name, str) else name


def classifier_overrides(
    files: Sequence[str], datalist: Datalist | None = None, image_size: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """Config overrides that point the classifier configs at ``datalist`` and keep images only.

    The report tokenizer step (:class:`bundle.transforms.TokenizeReportd`) is dropped from
    ``preprocessing_transforms`` (the classifier never reads reports), so a dataset without ``tokenizer.json`` works
    too; ``image_size`` and ``overrides`` are applied as given.
    """
    parser = parse_config(files)
    out: dict[str, Any] = {}
    if "preprocessing_transforms" in parser:
        steps = parser["preprocessing_transforms"]
        out["preprocessing_transforms"] = [t for t in steps if not _is_subclass(_target_class(t), TokenizeReportd)]
    if datalist is not None:
        out.update(dataset_dir=str(datalist.root), datalist_path=str(datalist.path))
    if image_size is not None:
        out["image_size"] = int(image_size)
    out.update(overrides)
    return out


def _is_subclass(value: Any, cls: type) -> bool:
    return isinstance(value, type) and issubclass(value, cls)


def classifier_preprocessing(files: Sequence[str], overrides: Mapping[str, Any]) -> Any:
    """The classifier's evaluation preprocessing (its ``image_transforms``) as a MONAI ``Compose``."""
    return image_preprocessing(parse_config(files, overrides))


def independent_overrides(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Config overrides of the first classifier made fit for the independent one (:data:`INDEPENDENT_CONFIGS`).

    Data, image size, epochs, batch size and the like apply to both; the first classifier's architecture
    (``classifier_def``, e.g. a small DenseNet for a CPU run) and its files (``classifier_dir``,
    ``classifier_checkpoint``, ``classifier_tensorboard_dir``) are left out, so the second classifier keeps its own
    architecture and folder. Its architecture is changed with ``independent_classifier_def``.
    """
    return {key: value for key, value in (overrides or {}).items() if key not in INDEPENDENT_DROPPED_KEYS}


def train_classifier(
    files: Sequence[str], output_dir: str | PathLike, overrides: Mapping[str, Any]
) -> tuple[Path, float | None]:
    """Train the classifier with its bundle config (``python -m monai.bundle run`` in-process) into
    ``<output_dir>/classifier/``; returns the best checkpoint (validation macro AUROC) and that AUROC.

    The process's torch thread count is restored afterwards (the config may set its own)."""
    settings = {**overrides, "output_dir": str(output_dir), "logging_file": False}
    threads = torch.get_num_threads()
    try:
        flow = run_workflow(files, "train", **settings)
    finally:
        torch.set_num_threads(threads)
    checkpoint = Path(flow.parser.get_parsed_content("classifier_checkpoint"))
    if not checkpoint.is_file():
        raise RuntimeError(
            f"{checkpoint}: classifier training kept no model; the validation macro AUROC that selects it needs a "
            "validation split where some class has both label values"
        )
    best = getattr(flow.parser.get_parsed_content("validate#evaluator").state, "best_metric", None)
    return checkpoint, (float(best) if best is not None and math.isfinite(best) else None)


def load_classifier(
    config_file: ConfigFiles = None,
    checkpoint: str | PathLike | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> nn.Module:
    """Rebuild the classifier from its configs and load its best checkpoint (``torch.load(weights_only=True)``).

    Args:
        config_file: the training configs; a ``.pt`` / ``.pth`` path here is taken as ``checkpoint``. Default:
            :data:`CLASSIFIER_CONFIGS`; :data:`INDEPENDENT_CONFIGS` for the independent ResNet-18.
        checkpoint: the weights; default the config's ``classifier_checkpoint`` (``<output_dir>/classifier/model.pt``,
            ``<output_dir>/classifier_independent/model.pt`` for the independent one).
        device: where the network goes.
        overrides: config values used at training time (``output_dir``, ``classifier_def``, ``image_channels``...).
            ``num_classes`` and ``image_channels`` are read from the checkpoint unless given (the last linear layer's
            outputs, the first convolution's inputs), so no datalist is needed to load one.

    Returns:
        the network in eval mode, with ``class_names`` set when the config's datalist is at hand (else None).
    """
    if isinstance(config_file, (str, PathLike)) and Path(config_file).suffix in (".pt", ".pth"):
        config_file, checkpoint = None, config_file
    files = config_files(config_file, CLASSIFIER_CONFIGS, "classifier")
    parser = parse_config(files, overrides)
    path = Path(checkpoint) if checkpoint is not None else Path(parser.get_parsed_content("classifier_checkpoint"))
    state = read_classifier_state(path, " + ".join(Path(f).name for f in files))
    channels, classes = state_sizes(state)
    for key, value in (("num_classes", classes), ("image_channels", channels)):
        if key not in overrides and value is not None:
            parser[key] = value
    return classifier_from_config(parser, state, path, device)


# ------------------------------------------------------------------------------------------------ the report decoder
def _datalist_file(real: str | PathLike) -> Path:
    path = Path(real)
    return path / DATALIST_NAME if path.is_dir() else path


def decoder_parser(
    files: Sequence[str],
    checkpoint: str | PathLike,
    overrides: Mapping[str, Any] | None = None,
    real: str | PathLike | None = None,
) -> Any:
    """F's training config for decoding: F's encoder is not pre-loaded (the checkpoint holds its weights).

    With ``real`` (a dataset folder or datalist file) the config points at that dataset, and the tokenizer falls back
    to ``tokenizer.json`` beside a released ``model.pt`` when the dataset has none. Without it the tokenizer and class
    names come from the configured dataset (``dataset_dir`` / ``tokenizer_path`` / ``datalist_path`` in the files or
    ``overrides``), or, where those files are missing, from ``tokenizer.json`` / ``training_labels.json`` beside a
    released ``model.pt``. ``overrides`` are set last.
    """
    overrides = dict(overrides or {})
    parser = parse_config(files)
    beside = Path(checkpoint).parent
    if real is not None:
        datalist = _datalist_file(real)
        parser["dataset_dir"] = str(datalist.parent)
        parser["datalist_path"] = str(datalist)
        if not (datalist.parent / "tokenizer.json").is_file() and (beside / "tokenizer.json").is_file():
            parser["tokenizer_path"] = str(beside / "tokenizer.json")
    if "pretrained_encoder_path" in parser:
        parser["pretrained_encoder_path"] = None
    for key, value in overrides.items():
        parser[key] = value
    if real is None:
        for key, name in (("tokenizer_path", "tokenizer.json"), ("datalist_path", "training_labels.json")):
            fallback = beside / name
            if key not in overrides and key in parser and fallback.is_file():
                if not Path(decode.parsed_content(parser, key)).is_file():
                    parser[key] = str(fallback)
    return parser


def _config_record(files: Sequence[str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {"config_files": list(files), "overrides": dict(overrides)}


def decode_reports(
    checkpoint: str | PathLike,
    real: str | PathLike,
    config_file: ConfigFiles = None,
    split: str = "test",
    max_items: int | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    skip_bad: bool = False,
    seed: int = 0,
    **overrides: Any,
) -> decode.DecodedReports:
    """:func:`bundle.evaluation.decode.decode_reports` with F built from ``config_file`` (one file or a list, merged
    in order; default :data:`DECODER_CONFIGS`) and ``overrides`` (training config values: ``image_size``,
    ``report_encoder``, ``tokenizer_path``...), pointed at the ``real`` dataset."""
    files = config_files(config_file, DECODER_CONFIGS, "report decoder")
    parser = decoder_parser(files, checkpoint, overrides, real=real)
    options = {"max_items": max_items, "batch_size": batch_size, "device": device, "skip_bad": skip_bad, "seed": seed}
    return decode.decode_reports(checkpoint, real, parser, split, **options, config=_config_record(files, overrides))


def evaluate_decoder(
    checkpoint: str | PathLike,
    real: str | PathLike,
    out_dir: str | PathLike,
    config_file: ConfigFiles = None,
    split: str = "test",
    max_items: int | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    meteor: bool | str = "auto",
    skip_bad: bool = False,
    seed: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """:func:`bundle.evaluation.decode.evaluate_decoder` with F built from ``config_file`` and ``overrides`` as in
    :func:`decode_reports`; ``metrics.json`` records both under ``settings``."""
    files = config_files(config_file, DECODER_CONFIGS, "report decoder")
    parser = decoder_parser(files, checkpoint, overrides, real=real)
    options = {"max_items": max_items, "batch_size": batch_size, "device": device, "skip_bad": skip_bad, "seed": seed}
    config = _config_record(files, overrides)
    return decode.evaluate_decoder(checkpoint, real, out_dir, parser, split, meteor=meteor, **options, config=config)


def decode_images(
    images: str | PathLike,
    checkpoint: str | PathLike,
    config_file: ConfigFiles = None,
    out_dir: str | PathLike | None = None,
    split: str | None = None,
    max_items: int | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    skip_bad: bool = False,
    seed: int = 0,
    **overrides: Any,
) -> decode.DecodedImages:
    """:func:`bundle.evaluation.decode.decode_images` with F built from ``config_file`` and ``overrides`` (the
    tokenizer and class names from the configured dataset, else from the files beside a released ``model.pt``:
    :func:`decoder_parser`)."""
    files = config_files(config_file, DECODER_CONFIGS, "report decoder")
    parser = decoder_parser(files, checkpoint, overrides)
    options = {"max_items": max_items, "batch_size": batch_size, "device": device, "skip_bad": skip_bad, "seed": seed}
    return decode.decode_images(images, checkpoint, parser, out_dir, split, **options, config=_config_record(files, {}))
