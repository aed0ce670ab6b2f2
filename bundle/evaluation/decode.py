"""The report decoder F on real images: EMIXER's report-generation evaluation (paper section 4, R2Gen's metrics).

:func:`decode_reports` takes a parser of F's *training* config pointed at the real dataset (composed by
:func:`bundle.workflows.decoder_parser`): ``report_decoder_def``, the tokenizer and ``validate#preprocessing`` (the
same size, channels and [-1, 1] range as in training). It loads F's weights from a training checkpoint
(``output/models/checkpoint_*.pt``) or a released ``models/model.pt`` through :mod:`bundle.inference`, and
greedy-decodes one report per real image of a split. :func:`evaluate_decoder` scores those reports against the real
ones:

* BLEU-1..4, CIDEr, ROUGE-L and METEOR (pycocoevalcap, :func:`.text_metrics.report_metrics`);
* clinical efficacy, precision / recall / F1 micro and macro between generated and reference reports
  (:func:`.clinical.clinical_efficacy`, R2Gen's convention);
* label F1 of the generated reports (the project's labeler) against the real images' labels
  (:func:`.clinical.label_f1`),

and writes ``hypotheses.jsonl`` / ``references.jsonl`` (``{"id", "report"}`` lines, the input of
``scripts/evaluate.py reports``) and ``metrics.json``. A training checkpoint does not store its config: the parser
must hold the config files and overrides the model was trained with (e.g. ``train.json`` + ``demo.json``).

:func:`decode_images` writes F's reports for any images without references: a folder of image files, a
``manifest.csv`` of the generated-data writer or a datalist (e.g. a generated set, to score reports written from
the generated image alone). F reads the image only, as for the real test split.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.data.datalist import SPLITS, read_datalist
from bundle.data.errors import DataError, SkipCounter
from bundle.data.images import IMAGE_SUFFIXES
from bundle.inference import decode_report_tokens, load_network_weights, read_checkpoint

from .clinical import clinical_efficacy, label_f1
from .common import (
    data_error_cause,
    preprocess_or_skip,
    subsample,
    to_jsonable,
    write_json,
    write_text_atomic,
)
from .text_metrics import report_metrics

__all__ = [
    "DecodedImages",
    "DecodedReports",
    "decode_images",
    "decode_reports",
    "evaluate_decoder",
    "image_items",
    "parsed_content",
]

logger = logging.getLogger(__name__)

#: Where F's weights are in a training checkpoint and in a released ``model.pt``.
DECODER_KEYS: tuple[str, ...] = ("report_decoder",)
#: The columns :func:`decode_images` needs in a manifest (the generated-data writer's ``id`` and ``image``).
MANIFEST_COLUMNS: tuple[str, ...] = ("id", "image")
#: Where :func:`decode_images` writes its reports.
HYPOTHESES = "hypotheses.jsonl"


@dataclass
class DecodedReports:
    """F's greedy reports for real images: ``references`` / ``hypotheses`` are ``{id: report}`` in the same order,
    ``labels`` the real items' label rows ``[N, K]`` over ``class_names`` in that order; ``config`` describes F's
    configs as the caller gave it (e.g. ``config_files`` and ``overrides``)."""

    references: dict[str, str]
    hypotheses: dict[str, str]
    labels: np.ndarray
    class_names: list[str]
    split: str
    checkpoint: str
    config: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.hypotheses)


@dataclass
class DecodedImages:
    """F's greedy reports, ``{id: report}`` in input order, for the images of ``source`` (read from the image alone)."""

    hypotheses: dict[str, str]
    source: str
    checkpoint: str
    config: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.hypotheses)


def _decoder_and_preprocessing(
    parser: Any, state: Mapping[str, Any], source: str, device: torch.device
) -> tuple[Any, Any, Any]:
    """(preprocessing, tokenizer, F in eval mode on ``device`` with the checkpoint's weights) of a training config;
    the preprocessing is ``validate#preprocessing`` (``train#preprocessing`` when there is none)."""
    key = "validate#preprocessing" if "validate#preprocessing" in parser else "train#preprocessing"
    transform = parsed_content(parser, key)
    tokenizer = parsed_content(parser, "tokenizer")
    decoder = parsed_content(parser, "report_decoder_def", lazy=False)
    load_network_weights(decoder, state, DECODER_KEYS, source)
    return transform, tokenizer, decoder.to(device).eval()


def parsed_content(parser: Any, key: str, **kwargs: Any) -> Any:
    """``parser.get_parsed_content(key)``; a :class:`DataError` behind MONAI's wrapping error (a missing tokenizer,
    say) is raised as itself, so the message names the file."""
    try:
        return parser.get_parsed_content(key, **kwargs)
    except Exception as err:
        cause = data_error_cause(err)
        if cause is None:
            raise
    raise cause  # outside the handler: the DataError keeps its own cause, without MONAI's wrapper as context


def _item_ids(items: Sequence[Mapping[str, Any]], root: Path) -> list[str]:
    """Report ids: the study ids when they are unique in ``items``, else the image paths relative to ``root``."""
    studies = [item.get("study") for item in items]
    if all(isinstance(s, str) and s for s in studies) and len(set(studies)) == len(studies):
        return [str(s) for s in studies]
    return [Path(os.path.relpath(item["image"], root)).as_posix() for item in items]


def _batches(
    items: Sequence[dict], transform: Any, skip: SkipCounter, batch_size: int
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Preprocessed images ``[B, C, H, W]`` with their positions in ``items``, ``batch_size`` at a time; an unreadable
    image raises its :class:`DataError` (naming the file) or is counted and left out when ``skip`` skips bad input."""
    kept: list[int] = []
    images: list[torch.Tensor] = []
    for index, item in enumerate(items):
        data = preprocess_or_skip(transform, item, skip)
        if data is None:
            continue
        kept.append(index)
        images.append(torch.as_tensor(data["image"]).as_subclass(torch.Tensor).float())
        if len(kept) == batch_size:
            yield kept, torch.stack(images)
            kept, images = [], []
    if kept:
        yield kept, torch.stack(images)


def decode_reports(
    checkpoint: str | PathLike,
    real: str | PathLike,
    parser: Any,
    split: str = "test",
    max_items: int | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    skip_bad: bool = False,
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
) -> DecodedReports:
    """F's greedy report for every image of a real split, beside the real report.

    Args:
        checkpoint: a training checkpoint (``checkpoint_*.pt``) or a released ``models/model.pt``.
        real: the real dataset folder (``datalist.json``, ``tokenizer.json``) or its datalist file.
        parser: a ``ConfigParser`` of the config F was trained with, pointed at ``real``
            (:func:`bundle.workflows.decoder_parser`).
        split: the datalist split decoded (``test`` by default).
        max_items: at most this many items, a random subset drawn with ``seed``.
        batch_size: images per forward pass.
        device: where F runs (default CUDA when available).
        skip_bad: count and leave out unreadable items and items without report text instead of raising.
        config: what the parser was composed of, kept in the result (e.g. ``config_files``, ``overrides``).

    Raises:
        DataError: naming the checkpoint when it is missing, unreadable or does not fit F, or the datalist / image
            when the data is bad.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    source = str(checkpoint)
    state = read_checkpoint(source)  # before anything slow: a bad path fails at once
    skip = SkipCounter(skip_bad)
    datalist = read_datalist(real, skip)
    items = []
    for n, item in enumerate(datalist.splits[split]):
        if isinstance(item.get("report"), str) and item["report"].strip():
            items.append(item)
        else:
            skip.handle(DataError(datalist.path, f"bad item: {split} item {n}: no report text to compare with"))
    items = subsample(items, max_items, np.random.default_rng(seed))
    if not items:
        raise DataError(datalist.path, f'the "{split}" split has no items with a report')

    transform, tokenizer, decoder = _decoder_and_preprocessing(parser, state, source, device)
    del state

    ids = _item_ids(items, datalist.root)
    references: dict[str, str] = {}
    hypotheses: dict[str, str] = {}
    labels: list[list[float]] = []
    for batch, images in _batches(items, transform, skip, batch_size):
        decoded = decoder.greedy_decode(images.to(device))
        texts = decode_report_tokens(tokenizer, decoded["tokens"].cpu(), decoded["num_sentences"].cpu())
        for index, text in zip(batch, texts):
            references[ids[index]] = items[index]["report"]
            hypotheses[ids[index]] = text
            labels.append(items[index]["labels"])
    if not hypotheses:
        raise DataError(datalist.path, f'no loadable image in the "{split}" split')
    logger.info("decoded %d %s reports with %s", len(hypotheses), split, source)
    return DecodedReports(
        references=references,
        hypotheses=hypotheses,
        labels=np.asarray(labels, dtype=np.float64),
        class_names=list(datalist.class_names),
        split=split,
        checkpoint=source,
        config=dict(config or {}),
        skipped=skip.summary(),
    )


def _write_jsonl(reports: Mapping[str, str], path: Path) -> Path:
    """``{"id", "report"}`` per line (the format :func:`.text_metrics.read_reports_jsonl` reads)."""
    return write_text_atomic("".join(json.dumps({"id": k, "report": t}) + "\n" for k, t in reports.items()), path)


def evaluate_decoder(
    checkpoint: str | PathLike,
    real: str | PathLike,
    out_dir: str | PathLike,
    parser: Any,
    split: str = "test",
    max_items: int | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    meteor: bool | str = "auto",
    skip_bad: bool = False,
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Decode a real split with F (:func:`decode_reports`, the same arguments) and score the reports; write
    ``hypotheses.jsonl``, ``references.jsonl`` and ``metrics.json`` into ``out_dir``. ``config`` (what the parser was
    composed of) goes into ``settings``.

    Returns:
        ``BLEU-1`` .. ``BLEU-4``, ``CIDEr``, ``ROUGE-L``, ``METEOR`` (left out without Java unless ``meteor=True``,
        see :func:`.text_metrics.report_metrics`), ``clinical_efficacy`` (generated vs reference reports:
        ``precision_micro`` ... ``f1_macro``, ``per_class``), ``label_f1`` (generated reports vs the images'
        labels) and ``settings``.
    """
    decoded = decode_reports(checkpoint, real, parser, split, max_items, batch_size, device, skip_bad, seed, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(decoded.hypotheses, out / "hypotheses.jsonl")
    _write_jsonl(decoded.references, out / "references.jsonl")
    metrics: dict[str, Any] = dict(report_metrics(decoded.references, decoded.hypotheses, meteor=meteor))
    metrics["clinical_efficacy"] = clinical_efficacy(decoded.references, decoded.hypotheses)
    metrics["label_f1"] = label_f1(list(decoded.hypotheses.values()), decoded.labels, decoded.class_names)
    metrics["settings"] = {
        "checkpoint": decoded.checkpoint,
        **decoded.config,
        "real": str(real),
        "split": split,
        "num_reports": len(decoded),
        "max_items": max_items,
        "seed": seed,
        "skipped": decoded.skipped,
    }
    metrics = to_jsonable(metrics)
    write_json(metrics, out / "metrics.json")
    return metrics


# ------------------------------------------------------------------------------------------------ any images
def _image_suffix(name: str) -> str | None:
    """The image file ending of ``name`` (case-insensitive, the longest that fits: ``.nii.gz`` before ``.nii``)."""
    lower = name.lower()
    return next((s for s in sorted(IMAGE_SUFFIXES, key=len, reverse=True) if lower.endswith(s)), None)


def _folder_items(folder: Path, skip: SkipCounter) -> list[dict]:
    """Every image file under ``folder`` (by its ending, :data:`bundle.data.images.IMAGE_SUFFIXES`), in path order;
    its id is its path relative to ``folder`` without the ending. Two files of one id (``a.png``, ``a.dcm``): the
    second is a :class:`DataError` (or counted and left out when skipping)."""
    items: list[dict] = []
    owners: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        suffix = _image_suffix(path.name)
        if suffix is None:
            continue
        relative = path.relative_to(folder).as_posix()
        sample_id = relative[: -len(suffix)]
        if sample_id in owners:
            skip.handle(DataError(path, f"repeated id: {sample_id!r} is also the id of {owners[sample_id]}"))
            continue
        owners[sample_id] = relative
        items.append({"id": sample_id, "image": str(path)})
    if not items and not skip.total:
        raise DataError(folder, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    return items


def _manifest_items(path: Path, skip: SkipCounter) -> list[dict]:
    """The ``id`` / ``image`` of every row of a manifest CSV (the generated-data writer's ``manifest.csv``); image
    paths are relative to the manifest's folder (or absolute). A row without an id or image, or repeating an id,
    is a :class:`DataError` naming the manifest and line (or counted and left out when skipping)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(path, f"not a readable CSV manifest ({err})") from err
    missing = [column for column in MANIFEST_COLUMNS if column not in columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}: a manifest needs {list(MANIFEST_COLUMNS)}")
    items: list[dict] = []
    lines: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):  # the header is line 1
        sample_id, image = (str(row.get(column) or "").strip() for column in MANIFEST_COLUMNS)
        if not sample_id or not image:
            skip.handle(DataError(path, f"bad row: line {line}: no {'id' if not sample_id else 'image'}"))
        elif sample_id in lines:
            skip.handle(DataError(path, f"bad row: line {line}: id {sample_id!r} repeats line {lines[sample_id]}"))
        else:
            lines[sample_id] = line
            items.append({"id": sample_id, "image": os.path.abspath(path.parent / image)})
    return items


def _datalist_items(path: Path, split: str | None, skip: SkipCounter) -> list[dict]:
    """The items of a datalist's ``split`` (all splits when None), ids from their ``id`` entries when every item has
    a distinct one (a generated datalist), else as :func:`decode_reports` names real items (study, else image)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    datalist = read_datalist(path, skip)
    chosen = datalist.items([split] if split is not None else SPLITS)
    own = [item.get("id") for item in chosen]
    if all(isinstance(i, str) and i for i in own) and len(set(own)) == len(own):
        ids = [str(i) for i in own]
    else:
        ids = _item_ids(chosen, datalist.root)
    return [{"id": sample_id, "image": item["image"]} for sample_id, item in zip(ids, chosen)]


def image_items(
    images: str | PathLike, split: str | None = None, skip: SkipCounter | None = None
) -> tuple[list[dict], Path]:
    """``[{"id", "image"}, ...]`` (absolute image paths) of ``images`` and the file or folder they were read from.

    ``images``: a folder of image files (PNG / JPEG / DICOM / NIfTI, searched recursively; ids are the paths relative
    to the folder without the file ending), a manifest ``.csv`` with ``id`` and ``image`` columns (ids from its
    ``id`` column), or a datalist ``.json`` (the items of ``split``, all splits when None; ids from the items' ``id``
    entries, else as :func:`decode_reports` names them). ``split`` is for datalists only.
    """
    skip = skip if skip is not None else SkipCounter()
    path = Path(images)
    if not path.exists():
        raise DataError(path, "missing: expected a folder of images, a manifest .csv or a datalist .json")
    if path.suffix.lower() == ".json" and path.is_file():
        return _datalist_items(path, split, skip), path
    if split is not None:
        raise ValueError(f"split={split!r} applies to a datalist .json; {path} is not one")
    if path.is_dir():
        items = _folder_items(path, skip)
    elif path.suffix.lower() == ".csv":
        items = _manifest_items(path, skip)
    else:
        raise DataError(path, "unsupported input: expected a folder of images, a manifest .csv or a datalist .json")
    return items, path


def _image_only(transform: Any) -> Any:
    """``transform`` without its dictionary transforms that touch no ``image`` key (the report tokenizer, label
    typing), so items without a report go through the same image steps as in training."""
    from monai.transforms import Compose, MapTransform

    if not isinstance(transform, Compose):
        return transform
    return Compose([t for t in transform.transforms if not isinstance(t, MapTransform) or "image" in t.keys])


def decode_images(
    images: str | PathLike,
    checkpoint: str | PathLike,
    parser: Any,
    out_dir: str | PathLike | None = None,
    split: str | None = None,
    max_items: int | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    skip_bad: bool = False,
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
) -> DecodedImages:
    """F's greedy report for every image of ``images`` (see :func:`image_items`), read from the image alone: a
    ``label_conditioned`` F reads its own label head's predictions. With ``out_dir``, the reports are written to
    ``<out_dir>/hypotheses.jsonl`` (``{"id", "report"}`` per line, in input order).

    F, its tokenizer and the image preprocessing come from ``parser``, F's training config as in
    :func:`decode_reports` (:func:`bundle.workflows.decoder_parser` without a dataset: the configured one's tokenizer
    and class names, else the files beside a released ``model.pt``). ``split`` picks a datalist's split (all when
    None); ``max_items``, ``batch_size``, ``device``, ``skip_bad``, ``seed`` and ``config`` as in
    :func:`decode_reports`.

    Raises:
        DataError: naming the checkpoint, or the input, manifest line or image file that is bad (unless skipped).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    source = str(checkpoint)
    state = read_checkpoint(source)  # before anything slow: a bad path fails at once
    skip = SkipCounter(skip_bad)
    items, origin = image_items(images, split, skip)
    items = subsample(items, max_items, np.random.default_rng(seed))
    if not items:
        raise DataError(origin, "no images to decode")

    transform, tokenizer, decoder = _decoder_and_preprocessing(parser, state, source, device)
    del state
    transform = _image_only(transform)
    hypotheses: dict[str, str] = {}
    for batch, tensors in _batches(items, transform, skip, batch_size):
        decoded = decoder.greedy_decode(tensors.to(device))
        texts = decode_report_tokens(tokenizer, decoded["tokens"].cpu(), decoded["num_sentences"].cpu())
        hypotheses.update((items[index]["id"], text) for index, text in zip(batch, texts))
    if not hypotheses:
        raise DataError(origin, "no loadable image to decode")
    logger.info("decoded %d reports for the images of %s with %s", len(hypotheses), origin, source)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_jsonl(hypotheses, out / HYPOTHESES)
    return DecodedImages(
        hypotheses=hypotheses,
        source=str(origin),
        checkpoint=source,
        config=dict(config or {}),
        skipped=skip.summary(),
    )
