"""The full evaluation run: generated and real datalists, the classifiers and decoders it needs (built from their
configs), then :func:`bundle.evaluation.suite.evaluate`; ``configs/evaluate.json`` and ``scripts/evaluate.py run``
call :func:`evaluate`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bundle.data.datalist import Datalist, read_datalist
from bundle.data.errors import DataError, SkipCounter
from bundle.evaluation import decode
from bundle.evaluation.suite import EvaluationModels, check_xrv
from bundle.evaluation.suite import evaluate as evaluate_suite
from bundle.workflows.configs import (
    CLASSIFIER_CONFIGS,
    DECODE_OPTIONS,
    DECODER_CONFIGS,
    INDEPENDENT_CONFIGS,
    ConfigFiles,
    config_files,
)
from bundle.workflows.models import (
    classifier_overrides,
    classifier_preprocessing,
    decoder_parser,
    evaluate_decoder,
    independent_overrides,
    load_classifier,
    train_classifier,
)

logger = logging.getLogger(__name__)


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
