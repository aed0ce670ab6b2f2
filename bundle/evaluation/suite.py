"""The full evaluation run: a generated paired dataset against the real dataset it should resemble.

:func:`evaluate` joins the metric library (EMIXER section 4 and RoentGen sections 5-7) into one run:

* images of every set go through the classifier config's own preprocessing (``train.json`` +
  ``train_classifier.json``: ``LoadCXRImaged``, resize longest side, pad, repeat channels, scale to [-1, 1]),
  so real and generated images reach the feature networks exactly as the classifier saw its training images;
* the classifier is the given checkpoint, or one trained here by that same config on the real training split;
  :class:`EvaluationModels` brings it, its preprocessing and the report decoders, built from the bundle configs by
  :func:`bundle.workflows.evaluate`, each called when the run needs it (bad input fails before any training);
* fidelity: FID on the classifier's pooled features (and on torchxrayvision's when its weights are on this
  machine), generated vs real test, beside real validation vs real test at the same set size as the reference;
* diversity: MS-SSIM between generated images that share a conditioning label set;
* label agreement: classifier AUROC of generated images against their conditioning labels, beside the same on
  the real test split, and their ratio; the same with the independent ResNet-18 classifier, never a training term;
* reports: label F1 of generated reports against their conditioning labels, verbatim copies of training
  reports, and BLEU / CIDEr / ROUGE-L / METEOR when the generated items carry a ``reference_report``;
* report decoder (with an EMIXER checkpoint): F's greedy reports on the real test images against the real reports,
  BLEU-1..4 / CIDEr / ROUGE-L / METEOR, clinical efficacy and label F1 (:mod:`.decode`), under ``reports -> decoder``;
* memorisation audit (held-out = real test) on classifier features, SSIM and report n-grams;
* the flat ``summary`` and the report ``baselines`` (:mod:`.summary`): every report figure beside reports that learn
  nothing (retrieval by label set, most common per label set, optionally F trained by teacher forcing alone), and
  non-circular measures (image-report pair consistency, the classifier on real test images, report diversity and
  novelty).

:func:`evaluate` only orders the steps, each a function of this module or of the metric module of its kind:
:func:`shared_classes`, :func:`decode_real_test`, :func:`load_sets`, :func:`classify`, :func:`image_measures`
(:func:`.image_metrics.fid_with_reference`, :func:`.image_metrics.label_set_diversity`), the independent classifier
(:func:`.summary.independent_label_agreement`), :func:`report_measures`, :func:`audit`, :func:`summary_and_baselines`,
:func:`draw_figures`, :func:`run_settings` and :func:`write_outputs`.

It writes ``metrics.json`` (summary), ``memorisation.json`` (per-sample audit), ``report.md`` with ``figures/``,
and TensorBoard scalars under ``tensorboard/``. A metric that cannot be computed is an entry
``{"skipped": reason}``, never a number.

Memory: every evaluated image is kept as one grey float32 channel (64 KiB at 128 px) for SSIM and MS-SSIM;
``max_items`` caps each set (a random subset, ``seed``) for large datasets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.classifier import XRVFeatures, xrv_available, xrv_weights_path
from bundle.data.datalist import SPLITS, Datalist
from bundle.data.errors import DataError, SkipCounter

from .classify import ImageSet, classify_images, load_image_set
from .clinical import label_f1, verbatim_copy_rate
from .common import subsample, to_jsonable, write_json
from .image_metrics import fid_with_reference, label_set_diversity
from .memorisation import audit_summary, closest_pairs_figure, memorisation_audit
from .report import (
    distance_histogram_figure,
    label_agreement_figure,
    samples_figure,
    verdict_line,
    write_report,
    write_tensorboard,
)
from .summary import (
    ReportTexts,
    baseline_measures,
    check_class_count,
    decoder_alone_reports,
    image_readings,
    independent_label_agreement,
    label_agreement,
    read_report_source,
    summary_measures,
)
from .text_metrics import report_metrics

__all__ = ["XRV_CHOICES", "EvaluationModels", "check_xrv", "evaluate"]

logger = logging.getLogger(__name__)

#: FID on torchxrayvision features: when its weights are on this machine, required, or off.
XRV_CHOICES = ("auto", True, False)
#: A classifier and its settings entry (``checkpoint``, ``trained``, ``config_files``, ``best_validation_macro_auroc``).
Classifier = tuple[torch.nn.Module, dict[str, Any]]


@dataclass
class EvaluationModels:
    """The networks of one evaluation run, each built or called when the run needs it.

    Attributes:
        preprocessing: the classifier's image preprocessing (``[C, H, W]`` in [-1, 1]) for datalist items.
        classifier: loads the evaluation classifier, training it first when no checkpoint was given.
        independent_classifier: the same for the independent ResNet-18; None: turned off.
        independent_trains: whether ``independent_classifier`` trains one first (no checkpoint given).
        decoder: ``decoder(out_dir)`` decodes the real test split with F and scores it (the metrics of
            :func:`.decode.evaluate_decoder`); None: skipped.
        decoder_alone: ``decoder_alone(datalist, out_dir)``: the :func:`.decode.decode_images` of F trained by teacher
            forcing alone; None: that baseline is left out. ``decoder_alone_checkpoint`` names it in the metrics.
    """

    preprocessing: Callable[[dict], dict]
    classifier: Callable[[], Classifier]
    independent_classifier: Callable[[], Classifier] | None = None
    independent_trains: bool = False
    decoder: Callable[[Path], dict[str, Any]] | None = None
    decoder_alone: Callable[[Path, Path], Any] | None = None
    decoder_alone_checkpoint: str | None = None


def check_xrv(xrv: Any) -> None:
    """Raise ValueError unless ``xrv`` is one of :data:`XRV_CHOICES`."""
    if xrv not in XRV_CHOICES:
        raise ValueError(f"xrv must be 'auto', True or False, got {xrv!r}")


# ------------------------------------------------------------------------------------------------ inputs
@dataclass
class SharedClasses:
    """The classes both datalists label, in the real datalist's order, and their label columns in each."""

    names: list[str]
    real_columns: list[int]
    generated_columns: list[int]


@dataclass
class Classified:
    """The evaluation classifier on every image set: pooled ``features`` and ``probs`` (columns of
    :class:`SharedClasses`) by set name (``validation`` with 0 rows when that split is empty), and its settings
    entry ``info``."""

    features: dict[str, torch.Tensor]
    probs: dict[str, torch.Tensor]
    info: dict[str, Any]


def shared_classes(real: Datalist, generated: Datalist) -> SharedClasses:
    """The classes the two datalists share; :class:`DataError` naming the generated datalist when there is none."""
    names = [name for name in real.class_names if name in generated.class_names]
    if not names:
        raise DataError(generated.path, f"no class in common with the real datalist ({real.class_names})")
    return SharedClasses(
        names=names,
        real_columns=[real.class_names.index(name) for name in names],
        generated_columns=[generated.class_names.index(name) for name in names],
    )


def load_sets(
    real: Datalist,
    generated: Datalist,
    classes: SharedClasses,
    transform: Callable[[dict], dict],
    skip: SkipCounter,
    max_items: int | None,
    rng: np.random.Generator,
) -> dict[str, ImageSet]:
    """The real splits and the generated items through the classifier's preprocessing, each at most ``max_items``
    (a random subset): ``training``, ``validation`` (left out when empty), ``test``, ``generated``.

    Raises :class:`DataError` for an empty training or test split and for fewer than 2 test or generated images.
    """
    sets: dict[str, ImageSet] = {}
    for split in SPLITS:
        items = subsample(real.splits[split], max_items, rng)
        if not items and split != "validation":
            raise DataError(real.path, f'the "{split}" split is empty')
        if items:
            sets[split] = load_image_set(split, items, transform, skip, classes.real_columns)
        logger.info("loaded %d %s images", len(sets[split]) if items else 0, split)
    items = subsample(generated.items(), max_items, rng)
    sets["generated"] = load_image_set("generated", items, transform, skip, classes.generated_columns)
    for name in ("test", "generated"):
        if len(sets[name]) < 2:
            raise DataError(real.path if name == "test" else generated.path, f"{name} needs at least 2 images")
    return sets


def classify(
    load: Callable[[], Classifier],
    sets: Mapping[str, ImageSet],
    num_classes: int,
    classes: SharedClasses,
    device: torch.device,
    batch_size: int,
) -> Classified:
    """Load (or train) the evaluation classifier, check it predicts the real datalist's ``num_classes``, and read
    every image set with it."""
    network, info = load()
    check_class_count(network, info.get("checkpoint"), num_classes)
    logger.info("classifier features of %s", ", ".join(f"{len(s)} {n}" for n, s in sets.items()))
    empty = {"features": torch.zeros(0, 1), "probs": torch.zeros(0, num_classes)}
    outputs = {name: classify_images(network, s.images, batch_size, device) for name, s in sets.items()}
    outputs.setdefault("validation", empty)
    return Classified(
        features={name: o["features"] for name, o in outputs.items()},
        probs={name: o["probs"][:, classes.real_columns] for name, o in outputs.items()},
        info=info,
    )


# ------------------------------------------------------------------------------------------------ measures
def xrv_fid(
    sets: Mapping[str, ImageSet], xrv: bool | str, rng: np.random.Generator, device: torch.device, batch_size: int
) -> dict[str, Any]:
    """:func:`.image_metrics.fid_with_reference` on torchxrayvision's features, or ``{"skipped": reason}`` when
    ``xrv`` is False, or ``"auto"`` and its weights are not on this machine."""
    if not (xrv is True or (xrv == "auto" and xrv_available())):
        reason = "turned off (xrv=False)" if xrv is False else f"weights not on this machine ({xrv_weights_path()})"
        return {"skipped": reason}
    network = XRVFeatures().to(device)
    features = {n: classify_images(network, s.images, batch_size, device)["features"] for n, s in sets.items()}
    features.setdefault("validation", torch.zeros(0, network.feature_dim))
    return fid_with_reference(features, rng)


def image_measures(
    sets: Mapping[str, ImageSet],
    classified: Classified,
    classes: SharedClasses,
    xrv: bool | str,
    ms_ssim_per_set: int,
    rng: np.random.Generator,
    device: torch.device,
    batch_size: int,
) -> dict[str, Any]:
    """The ``fid`` (classifier features, then torchxrayvision's), ``diversity`` (MS-SSIM within label sets,
    generated and real test) and ``label_agreement`` (classifier AUROC against the labels) blocks of metrics.json."""
    generated, test = sets["generated"], sets["test"]
    fid_blocks = {"classifier": fid_with_reference(classified.features, rng)}
    fid_blocks["xrv"] = xrv_fid(sets, xrv, rng, device, batch_size)
    probs = classified.probs
    return {
        "fid": fid_blocks,
        "diversity": {
            "generated": label_set_diversity(generated.images, generated.labels, classes.names, ms_ssim_per_set),
            "real_test": label_set_diversity(test.images, test.labels, classes.names, ms_ssim_per_set),
        },
        "label_agreement": label_agreement(
            probs["generated"], generated.labels, probs["test"], test.labels, classes.names
        ),
    }


def report_measures(
    sets: Mapping[str, ImageSet], classes: SharedClasses, meteor: Any, decoder: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``reports`` block: label F1 of the generated reports against their conditioning labels, verbatim copies
    of training reports, text metrics when references exist (``{"skipped": reason}`` when the generated or real items
    carry no report text), and F's block on the real test images (``decoder``) when given."""
    generated, test, train = sets["generated"], sets["test"], sets["training"]
    if generated.reports is None:
        out: dict[str, Any] = {"skipped": "the generated items carry no report text"}
    elif train.reports is None or test.reports is None:
        out = {"skipped": "the real items carry no report text"}
    else:
        out = _report_text_measures(generated, test, train, classes, meteor)
    if decoder is not None:
        out["decoder"] = decoder
    return out


def _report_text_measures(
    generated: ImageSet, test: ImageSet, train: ImageSet, classes: SharedClasses, meteor: Any
) -> dict[str, Any]:
    """:func:`report_measures` for generated and real items that all carry report text."""
    columns = classes.generated_columns
    stored = [item.get("report_labels") for item in generated.items]
    width = len(stored[0]) if isinstance(stored[0], list) else -1
    if all(isinstance(s, list) and len(s) == width for s in stored) and width > max(columns, default=-1):
        report_labels: Any = np.asarray(stored, dtype=np.float64)[:, list(columns)]  # the writer's labeler output
    else:
        report_labels = generated.reports
    out: dict[str, Any] = {
        "label_f1": label_f1(report_labels, generated.labels, classes.names),
        "real_test_label_f1": label_f1(test.reports, test.labels, classes.names),
        "verbatim_copy_rate": verbatim_copy_rate(generated.reports, train.reports),
        "real_test_verbatim_copy_rate": verbatim_copy_rate(test.reports, train.reports),
    }
    references = [item.get("reference_report") for item in generated.items]
    if all(isinstance(r, str) for r in references):
        ids = [str(item.get("id", n)) for n, item in enumerate(generated.items)]
        out["text_metrics"] = report_metrics(dict(zip(ids, references)), dict(zip(ids, generated.reports)), meteor)
    else:
        out["text_metrics"] = {
            "skipped": "generated items carry no reference_report (report-decoder metrics need the trained decoder's "
            "reports on real test images: scripts/evaluate.py decode --checkpoint ..., or run --checkpoint ..., "
            "which puts them under reports -> decoder)"
        }
    return out


def decode_real_test(models: EvaluationModels, out: Path) -> dict[str, Any] | None:
    """The report decoder F's metrics on the real test images (files under ``<out>/decoder``), None without one."""
    if models.decoder is None:
        return None
    logger.info("report decoder F on the real test split")
    return models.decoder(out / "decoder")


def audit(sets: Mapping[str, ImageSet], classified: Classified, seed: int) -> dict[str, Any]:
    """The memorisation audit of the generated set against the training split, calibrated by the real test split
    (held-out): classifier features, SSIM, and report n-grams when both the generated and training items have
    reports."""
    generated, test, train = sets["generated"], sets["test"], sets["training"]
    logger.info("memorisation audit against %d training images", len(train))
    generated_reports = generated.reports if train.reports is not None else None
    features = classified.features
    return memorisation_audit(
        features["generated"],
        features["test"],
        features["training"],
        gen_images=generated.images,
        heldout_images=test.images,
        train_images=train.images,
        gen_reports=generated_reports,
        train_reports=train.reports if generated_reports is not None else None,
        seed=seed,
    )


def summary_and_baselines(
    metrics: dict[str, Any],
    real: Datalist,
    generated: Datalist,
    sets: Mapping[str, ImageSet],
    classes: SharedClasses,
    classified: Classified,
    models: EvaluationModels,
    seed: int,
    out: Path,
) -> None:
    """Add ``summary``, ``summary_skipped``, ``pair_consistency`` (:func:`.summary.summary_measures`, read from the
    ``metrics`` so far) and ``baselines`` (:func:`.summary.baseline_measures`, with F trained alone when
    ``models.decoder_alone`` is given: its files under ``<out>/decoder_alone``) to ``metrics``."""
    texts = ReportTexts.from_sets(sets["generated"], sets["test"], real, classes.names, classes.real_columns)
    probs = classified.probs
    val_labels = sets["validation"].labels if "validation" in sets else np.zeros((0, len(classes.names)))
    readings = image_readings(probs["validation"], val_labels, probs["test"], probs["generated"])
    metrics["summary"], metrics["summary_skipped"], metrics["pair_consistency"] = summary_measures(
        metrics, read_report_source(generated.path), texts, readings, seed
    )
    alone = None
    if models.decoder_alone is not None:
        logger.info("baseline report decoder %s on the generated images", models.decoder_alone_checkpoint)
        alone = decoder_alone_reports(
            models.decoder_alone, sets["generated"], generated.class_names, out / "decoder_alone"
        )
    alone_info = {"checkpoint": str(models.decoder_alone_checkpoint)}
    metrics["baselines"] = baseline_measures(texts, readings, seed, alone, alone_info)


# ------------------------------------------------------------------------------------------------ outputs
def draw_figures(
    sets: Mapping[str, ImageSet], label_agreement: Mapping[str, Any], audit: Mapping[str, Any], out: Path
) -> dict[str, str]:
    """The report's PNG figures under ``<out>/figures`` (samples, label agreement, audit distances, closest pairs),
    by name, as paths relative to ``out``."""
    folder = out / "figures"
    paths = {
        "samples": samples_figure(sets["generated"].images, sets["test"].images, folder / "samples.png"),
        "label_agreement": label_agreement_figure(to_jsonable(label_agreement), folder / "labels.png"),
        "memorisation_distances": distance_histogram_figure(audit, folder / "memorisation_distances.png"),
        "closest_pairs": closest_pairs_figure(
            sets["generated"].images,
            sets["training"].images,
            audit["closest_pairs"],
            folder / "closest_pairs.png",
            title="closest generated / training pairs (classifier features)",
        ),
    }
    return {name: path.relative_to(out).as_posix() for name, path in paths.items()}


def run_settings(
    real: Datalist,
    generated: Datalist,
    sets: Mapping[str, ImageSet],
    classes: SharedClasses,
    skip: SkipCounter,
    max_items: int | None,
    seed: int,
    classifier: Mapping[str, Any],
    independent: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``settings`` block: inputs, classes, image size, subset settings, counts, skipped input, classifiers."""
    return {
        "real": str(real.path),
        "generated": str(generated.path),
        "classes": classes.names,
        "image_size": int(sets["test"].images.shape[-1]),
        "max_items": max_items,
        "seed": seed,
        "counts": {name: len(s) for name, s in sets.items()},
        "skipped": skip.summary(),
        "classifier": classifier,
        "independent_classifier": independent,
    }


def write_outputs(metrics: Mapping[str, Any], audit: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """Add the verdict to the JSON form of ``metrics`` and write ``metrics.json``, ``memorisation.json`` (the audit
    with its per-sample lists), ``report.md`` and the TensorBoard scalars; returns that JSON form."""
    written = to_jsonable(metrics)
    written["verdict"] = verdict_line(written)
    write_json(written, out / "metrics.json")
    write_json(to_jsonable(audit), out / "memorisation.json")
    write_report(written, out / "report.md")
    write_tensorboard(written, out / "tensorboard")
    logger.info("%s -> %s", written["verdict"], out / "report.md")
    return written


# ------------------------------------------------------------------------------------------------ the run
def evaluate(
    real: Datalist,
    generated: Datalist,
    out_dir: str | PathLike,
    models: EvaluationModels,
    skip: SkipCounter | None = None,
    max_items: int | None = None,
    xrv: bool | str = "auto",
    ms_ssim_per_set: int = 4,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int = 32,
    meteor: bool | str = "auto",
    figures: bool = True,
) -> dict[str, Any]:
    """Evaluate a generated paired dataset against real data; write metrics.json, report.md, figures, TensorBoard.

    Args:
        real: the real datalist (training / validation / test).
        generated: the generated datalist (as written by the paired writer, ``labels`` = conditioning labels).
        out_dir: output folder.
        models: the classifiers, their preprocessing and the report decoders (:class:`EvaluationModels`).
        skip: counts unreadable items left out (the one the datalists were read with); None: bad input raises.
        max_items: at most this many items per set (real splits and generated), a random subset drawn with ``seed``.
        xrv: FID on torchxrayvision features too: ``"auto"`` when its weights are on this machine, ``True``
            (required: FileNotFoundError without them) or ``False``.
        ms_ssim_per_set: generated images per conditioning label set compared pairwise (sets with fewer are left out).
        seed: subsets, matched-size FID and the audit's permutations.
        device: where the networks run (default CUDA when available).
        batch_size: images per forward pass.
        meteor: METEOR for the report text metrics (``"auto"``: when Java is available).
        figures: draw the PNG figures (samples, label agreement, audit distances, closest pairs) for the report.

    Returns:
        the content of ``metrics.json``; ``summary`` (one flat value per :data:`.summary.SUMMARY_KEYS` key, None with
        the reason in ``summary_skipped``) and ``baselines`` are described in :mod:`.summary`.
    """
    check_xrv(xrv)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    rng = np.random.default_rng(seed)  # one stream, drawn in this order: subsets, then matched-size FID
    skip = skip if skip is not None else SkipCounter()
    classes = shared_classes(real, generated)
    decoder = decode_real_test(models, out)  # first: a bad checkpoint fails before the slow steps
    sets = load_sets(real, generated, classes, models.preprocessing, skip, max_items, rng)
    classified = classify(models.classifier, sets, len(real.class_names), classes, device, batch_size)

    metrics: dict[str, Any] = {"settings": {}}  # settings first in metrics.json, filled in last
    metrics.update(image_measures(sets, classified, classes, xrv, ms_ssim_per_set, rng, device, batch_size))
    metrics["label_agreement_independent"], independent = independent_label_agreement(
        models.independent_classifier,
        models.independent_trains,
        real=real,
        sets=sets,
        classes=classes.names,
        real_columns=classes.real_columns,
        device=device,
        batch_size=batch_size,
    )
    metrics["reports"] = report_measures(sets, classes, meteor, decoder)
    memorisation = audit(sets, classified, seed)
    metrics["memorisation"] = audit_summary(memorisation)
    summary_and_baselines(metrics, real, generated, sets, classes, classified, models, seed, out)
    metrics["figures"] = draw_figures(sets, metrics["label_agreement"], memorisation, out) if figures else {}
    metrics["settings"] = run_settings(
        real, generated, sets, classes, skip, max_items, seed, classified.info, independent
    )
    return write_outputs(metrics, memorisation, out)
