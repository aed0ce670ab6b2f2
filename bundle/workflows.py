"""The bundle's workflows: the one module that knows where ``configs/`` is and composes config files with overrides
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

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bundle.classifier import classifier_from_config, read_classifier_state, state_sizes
from bundle.data.datalist import DATALIST_NAME, Datalist, read_datalist
from bundle.data.errors import DataError, SkipCounter
from bundle.evaluation import decode
from bundle.evaluation.classify import image_preprocessing
from bundle.evaluation.suite import EvaluationModels, check_xrv
from bundle.evaluation.suite import evaluate as evaluate_suite
from bundle.transforms import TokenizeReportd

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
]

logger = logging.getLogger(__name__)

#: The bundle's config folder (the repository root is the bundle root).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


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


# ------------------------------------------------------------------------------------------------ the evaluation run
def _classifier_source(
    files: Sequence[str],
    settings: Mapping[str, Any],
    checkpoint: str | PathLike | None,
    out_dir: Path,
    device: torch.device,
    what: str,
) -> Callable[[], tuple[nn.Module, dict[str, Any]]]:
    """A callable that loads the classifier of ``checkpoint``, or first trains one into ``out_dir`` (None)."""

    def load() -> tuple[nn.Module, dict[str, Any]]:
        path, best = checkpoint, None
        if path is None:
            names = " + ".join(Path(f).name for f in files)
            epochs = f" (max_epochs={settings['max_epochs']})" if "max_epochs" in settings else ""
            logger.info("no %s checkpoint given: training one with %s%s -> %s", what, names, epochs, out_dir)
            path, best = train_classifier(files, out_dir, settings)
        network = load_classifier(files, path, device, **settings)
        return network, {
            "checkpoint": str(path),
            "trained": checkpoint is None,
            "config_files": list(files),
            "best_validation_macro_auroc": best,
        }

    return load


def _decode_into(
    checkpoint: str | PathLike, parser: Any, options: Mapping[str, Any], images: Path, out_dir: Path
) -> decode.DecodedImages:
    return decode.decode_images(images, checkpoint, parser, out_dir, **options)


def _evaluation_decoders(
    real: Datalist,
    checkpoint: str | PathLike | None,
    baseline_checkpoint: str | PathLike | None,
    config_file: ConfigFiles,
    overrides: Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> tuple[Callable | None, Callable | None]:
    """The evaluation run's report decoders: F of ``checkpoint`` scored on the real test split (``decoder(out_dir)``)
    and F of ``baseline_checkpoint`` decoding a datalist (``decoder_alone(datalist, out_dir)``); None where no
    checkpoint is given. ``overrides``: F's training values and decode options, these winning over the run's
    ``options``."""
    if checkpoint is None and baseline_checkpoint is None:
        return None, None
    files = config_files(config_file, DECODER_CONFIGS, "report decoder")
    settings = dict(overrides or {})
    decoder = alone = None
    if checkpoint is not None:  # the training overrides may hold batch_size, say: no clash
        decoder = partial(evaluate_decoder, checkpoint, real.path, config_file=files, **{**options, **settings})
    if baseline_checkpoint is not None:
        training = {k: v for k, v in settings.items() if k not in DECODE_OPTIONS}
        parser = decoder_parser(
            files, baseline_checkpoint, {"dataset_dir": str(real.root), "datalist_path": str(real.path), **training}
        )
        kept = {k: v for k, v in {**options, **settings}.items() if k in ("batch_size", "skip_bad", "seed", "device")}
        if "device" in settings:  # F runs where the run's networks run
            kept["device"] = options["device"]
        alone = partial(_decode_into, baseline_checkpoint, parser, kept)
    return decoder, alone


def evaluate(
    real: str | PathLike,
    generated: str | PathLike,
    out_dir: str | PathLike,
    classifier_checkpoint: str | PathLike | None = None,
    classifier_config: ConfigFiles = None,
    image_size: int | None = None,
    max_items: int | None = None,
    xrv: bool | str = "auto",
    ms_ssim_per_set: int = 4,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int = 32,
    meteor: bool | str = "auto",
    skip_bad: bool = False,
    figures: bool = True,
    decoder_checkpoint: str | PathLike | None = None,
    decoder_config: ConfigFiles = None,
    decoder_overrides: Mapping[str, Any] | None = None,
    independent_classifier: bool = True,
    independent_classifier_checkpoint: str | PathLike | None = None,
    baseline_decoder_checkpoint: str | PathLike | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Evaluate a generated paired dataset against real data (:func:`bundle.evaluation.suite.evaluate`) with the
    networks built from the bundle configs; write metrics.json, report.md, figures, TensorBoard.

    Args:
        real / generated / out_dir / max_items / xrv / ms_ssim_per_set / seed / device / batch_size / meteor /
            skip_bad / figures: as :func:`bundle.evaluation.suite.evaluate`; ``real`` and ``generated`` are dataset
            folders (``datalist.json``) or datalist files.
        classifier_checkpoint: the classifier's weights; None trains one here with the classifier config on the
            real training split (into ``<out_dir>/classifier/``).
        classifier_config: the classifier's config files (default :data:`CLASSIFIER_CONFIGS`; add your own override
            file last in the list).
        image_size: evaluation (and training) image size; default the config's (128).
        decoder_checkpoint: an EMIXER checkpoint (training ``checkpoint_*.pt`` or released ``model.pt``): its report
            decoder F also decodes the real test images (:func:`evaluate_decoder`, files under
            ``<out_dir>/decoder/``), scored into ``metrics["reports"]["decoder"]``. None: skipped.
        decoder_config / decoder_overrides: the config files and values F was trained with (default
            :data:`DECODER_CONFIGS`); ``decoder_overrides`` may also set the options of :func:`evaluate_decoder`
            (``batch_size``, ``max_items``, ``split``...), which default to this run's.
        independent_classifier: label agreement with the independent classifier too (a MONAI ResNet-18,
            ``train_classifier_independent.json`` layered on ``classifier_config``); False: skipped.
        independent_classifier_checkpoint: its weights; None trains it here on the real training split exactly as
            the first one (``overrides`` without the first one's architecture and files, :func:`independent_overrides`)
            into ``<out_dir>/classifier_independent/``.
        baseline_decoder_checkpoint: an EMIXER checkpoint whose F was trained by teacher forcing alone (trained with
            ``decoder_config`` / ``decoder_overrides``): its reports on the generated images are the
            ``decoder_alone`` baseline (files under ``<out_dir>/decoder_alone/``). None: that baseline is left out.
        overrides: classifier config values (``max_epochs``, ``classifier_def``, ``num_workers``...), used for
            training and for rebuilding the network.
    """
    check_xrv(xrv)
    for path, what in ((independent_classifier_checkpoint, "classifier"), (baseline_decoder_checkpoint, "decoder")):
        if path is not None and not Path(path).is_file():  # before the slow steps
            raise DataError(path, f"missing checkpoint (the {what} checkpoint given for the evaluation)")
    out = Path(out_dir)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    skip = SkipCounter(skip_bad)
    real_list = read_datalist(real, skip)
    gen_list = read_datalist(generated, skip)

    options = {"max_items": max_items, "batch_size": batch_size, "meteor": meteor, "skip_bad": skip_bad}
    options.update(seed=seed, device=device)
    decoder, alone = _evaluation_decoders(
        real_list, decoder_checkpoint, baseline_decoder_checkpoint, decoder_config, decoder_overrides, options
    )

    files = config_files(classifier_config, CLASSIFIER_CONFIGS, "classifier")
    settings = classifier_overrides(files, real_list, image_size, **overrides)
    independent, independent_trains = None, independent_classifier_checkpoint is None
    if independent_classifier:
        second = list(files) + ([INDEPENDENT_CONFIGS[-1]] if INDEPENDENT_CONFIGS[-1] not in files else [])
        second_settings = classifier_overrides(second, real_list, image_size, **independent_overrides(overrides))
        checkpoint = independent_classifier_checkpoint
        independent = _classifier_source(second, second_settings, checkpoint, out, device, "independent classifier")
    models = EvaluationModels(
        preprocessing=classifier_preprocessing(files, settings),
        classifier=_classifier_source(files, settings, classifier_checkpoint, out, device, "classifier"),
        independent_classifier=independent,
        independent_trains=independent_trains,
        decoder=decoder,
        decoder_alone=alone,
        decoder_alone_checkpoint=None if baseline_decoder_checkpoint is None else str(baseline_decoder_checkpoint),
    )
    return evaluate_suite(
        real_list,
        gen_list,
        out,
        models,
        skip,
        max_items=max_items,
        xrv=xrv,
        ms_ssim_per_set=ms_ssim_per_set,
        seed=seed,
        device=device,
        batch_size=batch_size,
        meteor=meteor,
        figures=figures,
    )


# ------------------------------------------------------------------------------------------------ the demo
def run_demo(
    num_items: int = 2000,
    dataset_dir: str = "data/embedded",
    output_dir: str = "output",
    seed: int = 0,
    train: bool = True,
    samples_per_class: int = 4,
    **overrides: Any,
) -> dict:
    """Prepare the embedded dataset (unless it is there), then train the demo EMIXER and generate samples.

    1. ``<dataset_dir>``: the embedded dataset (raw data, datalist, tokenizer, summary), reused when it is there,
       never overwritten; ``<output_dir>/embedded_preview.png``: one real example per finding with its report.
    2. Trains with :data:`DEMO_TRAIN_CONFIGS` into ``<output_dir>/demo`` (resumed from its newest checkpoint).
    3. Generates ``samples_per_class`` paired samples per finding with :data:`DEMO_INFER_CONFIGS` into
       ``<output_dir>/demo/generated`` and a sheet of one sample per finding, ``<output_dir>/demo/generated_preview.png``.

    ``overrides`` set ids of the configs of steps 2 and 3. Returns the dataset summary, with ``generated`` (the
    writer's summary) after step 3.
    """
    from bundle.data.preview import preview_sheet
    from bundle.data.prepare import format_summary, prepare_data

    dataset = Path(dataset_dir)
    if (dataset / DATALIST_NAME).is_file():
        summary = json.loads((dataset / "summary.json").read_text())
        print(f"using the embedded dataset already in {dataset} (delete it to regenerate)")
        print(format_summary(summary))
    else:
        summary = prepare_data(source="embedded", out_dir=str(dataset), num_items=num_items, seed=seed)
    sheet = preview_sheet(dataset, Path(output_dir) / "embedded_preview.png")
    print(f"preview of one study per finding: {sheet}")
    print(f"datalist for training: {dataset / DATALIST_NAME} (tokenizer: {dataset / 'tokenizer.json'})")
    if not train:
        return summary

    run_dir = Path(output_dir) / "demo"
    common = {"dataset_dir": str(dataset), "output_dir": str(run_dir), "seed": seed, **overrides}
    print(f"training the demo EMIXER into {run_dir} (TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'})")
    run_workflow(DEMO_TRAIN_CONFIGS, "train", **common)

    generated = run_dir / "generated"
    inference = {"labels": "per_class", "num_samples": samples_per_class, "overwrite": True, **common}
    flow = run_workflow(DEMO_INFER_CONFIGS, "infer", generated_dir=str(generated), **inference)
    written = flow.parser.get_parsed_content("saver").summary
    sheet = preview_sheet(generated, run_dir / "generated_preview.png")
    print(f"generated {written['num_samples']} paired samples: {generated} (open index.html in a browser)")
    print(f"one generated sample per finding, with its report: {sheet}")
    return {**summary, "generated": written}
