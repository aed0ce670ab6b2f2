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

It writes ``metrics.json`` (summary), ``memorisation.json`` (per-sample audit), ``report.md`` with ``figures/``,
and TensorBoard scalars under ``tensorboard/``. A metric that cannot be computed is an entry
``{"skipped": reason}``, never a number.

Memory: every evaluated image is kept as one grey float32 channel (64 KiB at 128 px) for SSIM and MS-SSIM;
``max_items`` caps each set (a random subset, ``seed``) for large datasets.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
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
from .image_metrics import fid, ms_ssim_diversity
from .memorisation import closest_pairs_figure, memorisation_audit
from .report import distance_histogram_figure, label_agreement_figure, samples_figure, verdict_line, write_report
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


# per-sample lists of the audit: kept in memorisation.json, left out of metrics.json
_PER_SAMPLE_KEYS = ("generated_to_train", "heldout_to_train", "nearest_train", "overlap")


# ------------------------------------------------------------------------------------------------ metrics
def _take(features: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A random ``size``-row subset of ``features`` (all rows when there are no more)."""
    if len(features) <= size:
        return features
    return features[torch.as_tensor(np.sort(rng.choice(len(features), size=size, replace=False)))]


def _fid_block(features: Mapping[str, torch.Tensor], rng: np.random.Generator) -> dict[str, Any]:
    """FID generated vs test (all generated images), and generated vs test beside validation vs test at one
    matched set size (FID is biased upwards for small sets, so only equal sizes compare)."""
    gen, test, val = features["generated"], features["test"], features["validation"]
    out: dict[str, Any] = {
        "generated_vs_test": max(0.0, fid(test, gen)),  # float64 rounding can leave -1e-13 for equal sets
        "num_generated": len(gen),
        "num_test": len(test),
        "num_validation": len(val),
        "feature_dim": int(gen.shape[1]),
    }
    size = min(len(gen), len(val))
    if size < 2:
        out.update(matched_size=size, generated_vs_test_matched=None, validation_vs_test=None, ratio=None)
        out["note"] = "the real validation split has fewer than 2 images: no real-vs-real reference"
        return out
    matched = max(0.0, fid(test, _take(gen, size, rng)))
    reference = max(0.0, fid(test, _take(val, size, rng)))
    out.update(
        matched_size=size,
        generated_vs_test_matched=matched,
        validation_vs_test=reference,
        ratio=matched / reference if reference > 0 else None,
    )
    return out


def _label_set_name(labels: np.ndarray, class_names: Sequence[str]) -> str:
    positives = [name for name, v in zip(class_names, labels) if v == 1]
    unknown = [name for name, v in zip(class_names, labels) if v == -1]
    text = "+".join(positives) or "no positive label"
    return text + (f" (unknown: {'+'.join(unknown)})" if unknown else "")


def _diversity(images: ImageSet, class_names: Sequence[str], per_set: int) -> dict[str, Any]:
    """MS-SSIM diversity over the label sets with at least ``per_set`` images, or why none qualifies."""
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(images.labels):
        groups.setdefault(_label_set_name(row, class_names), []).append(index)
    qualifying = {key: images.images[idx[:per_set]] for key, idx in groups.items() if len(idx) >= per_set}
    if not qualifying:
        return {"skipped": f"no conditioning label set has {per_set} or more images ({len(groups)} sets)"}
    try:
        return ms_ssim_diversity(qualifying, per_set=per_set)
    except ValueError as err:  # images smaller than the MS-SSIM window
        return {"skipped": str(err)}


def _reports(
    generated: ImageSet,
    test: ImageSet,
    train: ImageSet,
    class_names: Sequence[str],
    columns: Sequence[int],
    meteor: Any,
) -> dict[str, Any]:
    """Report label F1 against the conditioning labels, verbatim copies, and text metrics when references exist."""
    if generated.reports is None:
        return {"skipped": "the generated items carry no report text"}
    if train.reports is None or test.reports is None:
        return {"skipped": "the real items carry no report text"}
    stored = [item.get("report_labels") for item in generated.items]
    width = len(stored[0]) if isinstance(stored[0], list) else -1
    if all(isinstance(s, list) and len(s) == width for s in stored) and width > max(columns, default=-1):
        report_labels: Any = np.asarray(stored, dtype=np.float64)[:, list(columns)]  # the writer's labeler output
    else:
        report_labels = generated.reports
    out: dict[str, Any] = {
        "label_f1": label_f1(report_labels, generated.labels, class_names),
        "real_test_label_f1": label_f1(test.reports, test.labels, class_names),
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


def _audit_summary(audit: Mapping[str, Any]) -> dict[str, Any]:
    """The audit without its per-sample lists (those stay in memorisation.json)."""
    out: dict[str, Any] = {}
    for key, value in audit.items():
        if isinstance(value, Mapping):
            out[key] = {k: v for k, v in value.items() if k not in _PER_SAMPLE_KEYS}
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------------ outputs
def _scalars(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of ``metrics`` (settings, lists and missing values left out) as TensorBoard tags."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        tag = f"{prefix}{str(key).replace(' ', '_')}"
        if key in ("settings", "figures"):
            continue
        if isinstance(value, Mapping):
            out.update(_scalars(value, tag + "/"))
        elif isinstance(value, (bool, int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
            out[tag] = float(value)
    return out


def _write_tensorboard(metrics: Mapping[str, Any], log_dir: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for tag, value in _scalars(metrics).items():
            writer.add_scalar(tag, value, 0)
        writer.add_text("verdict", str(metrics.get("verdict", "")), 0)
    finally:
        writer.close()


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
    rng = np.random.default_rng(seed)
    skip = skip if skip is not None else SkipCounter()
    real_list, gen_list = real, generated
    classes = [name for name in real_list.class_names if name in gen_list.class_names]
    if not classes:
        raise DataError(gen_list.path, f"no class in common with the real datalist ({real_list.class_names})")
    real_columns = [real_list.class_names.index(name) for name in classes]
    gen_columns = [gen_list.class_names.index(name) for name in classes]

    decoder = None
    if models.decoder is not None:  # first: a bad checkpoint fails before the slow steps
        logger.info("report decoder F on the real test split")
        decoder = models.decoder(out / "decoder")

    transform = models.preprocessing
    sets: dict[str, ImageSet] = {}
    for split in SPLITS:
        items = subsample(real_list.splits[split], max_items, rng)
        if not items and split != "validation":
            raise DataError(real_list.path, f'the "{split}" split is empty')
        if items:
            sets[split] = load_image_set(split, items, transform, skip, real_columns)
        logger.info("loaded %d %s images", len(sets[split]) if items else 0, split)
    sets["generated"] = load_image_set(
        "generated", subsample(gen_list.items(), max_items, rng), transform, skip, gen_columns
    )
    for name in ("test", "generated"):
        if len(sets[name]) < 2:
            raise DataError(real_list.path if name == "test" else gen_list.path, f"{name} needs at least 2 images")

    network, classifier_info = models.classifier()
    check_class_count(network, classifier_info.get("checkpoint"), len(real_list.class_names))
    logger.info("classifier features of %s", ", ".join(f"{len(s)} {n}" for n, s in sets.items()))
    empty = {"features": torch.zeros(0, 1), "probs": torch.zeros(0, len(real_list.class_names))}
    outputs = {name: classify_images(network, s.images, batch_size, device) for name, s in sets.items()}
    outputs.setdefault("validation", empty)
    feats = {name: o["features"] for name, o in outputs.items()}

    metrics: dict[str, Any] = {"settings": {}, "fid": {"classifier": _fid_block(feats, rng)}}
    if xrv is True or (xrv == "auto" and xrv_available()):
        xrv_net = XRVFeatures().to(device)
        xrv_feats = {n: classify_images(xrv_net, s.images, batch_size, device)["features"] for n, s in sets.items()}
        xrv_feats.setdefault("validation", torch.zeros(0, xrv_net.feature_dim))
        metrics["fid"]["xrv"] = _fid_block(xrv_feats, rng)
    else:
        reason = "turned off (xrv=False)" if xrv is False else f"weights not on this machine ({xrv_weights_path()})"
        metrics["fid"]["xrv"] = {"skipped": reason}

    metrics["diversity"] = {
        "generated": _diversity(sets["generated"], classes, ms_ssim_per_set),
        "real_test": _diversity(sets["test"], classes, ms_ssim_per_set),
    }
    probs = {name: o["probs"][:, real_columns] for name, o in outputs.items()}
    metrics["label_agreement"] = label_agreement(
        probs["generated"], sets["generated"].labels, probs["test"], sets["test"].labels, classes
    )
    metrics["label_agreement_independent"], independent = independent_label_agreement(
        models.independent_classifier,
        models.independent_trains,
        real=real_list,
        sets=sets,
        classes=classes,
        real_columns=real_columns,
        device=device,
        batch_size=batch_size,
    )
    metrics["reports"] = _reports(sets["generated"], sets["test"], sets["training"], classes, gen_columns, meteor)
    if decoder is not None:
        metrics["reports"]["decoder"] = decoder

    logger.info("memorisation audit against %d training images", len(sets["training"]))
    generated_reports = sets["generated"].reports if sets["training"].reports is not None else None
    audit = memorisation_audit(
        feats["generated"],
        feats["test"],
        feats["training"],
        gen_images=sets["generated"].images,
        heldout_images=sets["test"].images,
        train_images=sets["training"].images,
        gen_reports=generated_reports,
        train_reports=sets["training"].reports if generated_reports is not None else None,
        seed=seed,
    )
    metrics["memorisation"] = _audit_summary(audit)

    texts = ReportTexts.from_sets(sets["generated"], sets["test"], real_list, classes, real_columns)
    val_labels = sets["validation"].labels if "validation" in sets else np.zeros((0, len(classes)))
    readings = image_readings(probs["validation"], val_labels, probs["test"], probs["generated"])
    metrics["summary"], metrics["summary_skipped"], metrics["pair_consistency"] = summary_measures(
        metrics, read_report_source(gen_list.path), texts, readings, seed
    )
    alone = None
    if models.decoder_alone is not None:
        logger.info("baseline report decoder %s on the generated images", models.decoder_alone_checkpoint)
        alone = decoder_alone_reports(
            models.decoder_alone, sets["generated"], gen_list.class_names, out / "decoder_alone"
        )
    alone_info = {"checkpoint": str(models.decoder_alone_checkpoint)}
    metrics["baselines"] = baseline_measures(texts, readings, seed, alone, alone_info)

    figure_paths: dict[str, Path] = {}
    if figures:
        folder = out / "figures"
        figure_paths = {
            "samples": samples_figure(sets["generated"].images, sets["test"].images, folder / "samples.png"),
            "label_agreement": label_agreement_figure(to_jsonable(metrics["label_agreement"]), folder / "labels.png"),
            "memorisation_distances": distance_histogram_figure(audit, folder / "memorisation_distances.png"),
            "closest_pairs": closest_pairs_figure(
                sets["generated"].images,
                sets["training"].images,
                audit["closest_pairs"],
                folder / "closest_pairs.png",
                title="closest generated / training pairs (classifier features)",
            ),
        }
    metrics["figures"] = {name: path.relative_to(out).as_posix() for name, path in figure_paths.items()}
    metrics["settings"] = {
        "real": str(real_list.path),
        "generated": str(gen_list.path),
        "classes": classes,
        "image_size": int(sets["test"].images.shape[-1]),
        "max_items": max_items,
        "seed": seed,
        "counts": {name: len(s) for name, s in sets.items()},
        "skipped": skip.summary(),
        "classifier": classifier_info,
        "independent_classifier": independent,
    }
    metrics = to_jsonable(metrics)
    metrics["verdict"] = verdict_line(metrics)
    write_json(metrics, out / "metrics.json")
    write_json(to_jsonable(audit), out / "memorisation.json")
    write_report(metrics, out / "report.md")
    _write_tensorboard(metrics, out / "tensorboard")
    logger.info("%s -> %s", metrics["verdict"], out / "report.md")
    return metrics
