"""MONAI dictionary transforms for chest X-ray images and their reports.

:class:`LoadCXRImaged` reads a radiograph (:func:`bundle.data.images.read_cxr`: PNG, JPEG, DICOM or NIfTI, with its
intensity and orientation conventions) into a float32 channel-first ``MetaTensor`` ``[1, H, W]`` in [0, 1]. When a
read fails, MONAI's ``apply_transform`` wraps the error as ``RuntimeError("applying transform <str(transform)>")``
(the last line a user sees, and the whole message of a one-line CLI error); the loaders' ``str`` therefore names
the file and problem of the last failed read in the calling thread.
:class:`TokenizeReportd` turns the report text into the ``[sentences, words]`` id matrix of the report decoder.
Resizing, padding, channel repetition and the [-1, 1] intensity range come from MONAI's own transforms in
``configs/train.json``.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from os import PathLike
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from bundle.data.errors import DataError
from bundle.data.images import read_cxr
from bundle.data.tokenizer import ReportTokenizer

__all__ = ["LoadCXRImage", "LoadCXRImaged", "TokenizeReportd"]


#: Per thread: id(loader) -> the DataError of its last failed read (so the wrapped MONAI error can name the file).
_FAILED = threading.local()


class _NamesFailedFile:
    """Mixin: ``str(self)`` names the file and problem of this loader's last failed read in this thread."""

    def _remember(self, error: DataError | None) -> None:
        failed = _FAILED.__dict__.setdefault("errors", {})
        if error is None:
            failed.pop(id(self), None)
        else:
            failed[id(self)] = error

    def __repr__(self) -> str:
        error = _FAILED.__dict__.get("errors", {}).get(id(self))
        name = type(self).__name__
        return f"{name} failed: {error}" if error is not None else f"<{type(self).__module__}.{name}>"


class LoadCXRImage(_NamesFailedFile, Transform):
    """Load a chest radiograph file into a float32 ``MetaTensor`` ``[1, H, W]`` in [0, 1] (see module docs).

    ``max_bytes``: the most pixel data a file may declare before decoding (None: ``images.MAX_IMAGE_BYTES``).
    """

    def __init__(self, voi_lut: bool = True, max_bytes: int | None = None) -> None:
        self.voi_lut, self.max_bytes = voi_lut, max_bytes

    def __call__(self, path: str | PathLike) -> MetaTensor:
        try:
            image, meta = read_cxr(path, voi_lut=self.voi_lut, max_bytes=self.max_bytes)
        except DataError as err:
            self._remember(err)
            raise
        self._remember(None)
        return MetaTensor(torch.from_numpy(image)[None], meta=meta)


class LoadCXRImaged(_NamesFailedFile, MapTransform):
    """Dictionary version of :class:`LoadCXRImage`: replaces each key's file path with the loaded image.

    Args:
        keys: keys holding image file paths.
        voi_lut: apply the DICOM VOI LUT / window when present (else scale by Bits Stored).
        allow_missing_keys: don't raise when a key is missing.
        max_bytes: the most pixel data a file may declare before decoding (None: ``images.MAX_IMAGE_BYTES``).
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        voi_lut: bool = True,
        allow_missing_keys: bool = False,
        max_bytes: int | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadCXRImage(voi_lut=voi_lut, max_bytes=max_bytes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        try:
            for key in self.key_iterator(d):
                d[key] = self.loader(d[key])
        except DataError as err:
            self._remember(err)
            raise
        self._remember(None)
        return d


def _item_name(d: Mapping[Hashable, Any]) -> str | None:
    """The item's image file, to name it in errors (a path, or a loaded image's filename_or_obj)."""
    image = d.get("image")
    if isinstance(image, MetaTensor):
        return image.meta.get("filename_or_obj")
    return str(image) if isinstance(image, (str, PathLike)) else None


class TokenizeReportd(MapTransform):
    """Report text -> ``{key}_tokens`` (long ``[max_sentences, max_words]``) and ``{key}_num_sentences`` (long).

    The text stays under ``key``. Rows follow the report tensor contract of docs/architecture.md (word ids,
    ``<end>``, ``<pad>``; all-``<pad>`` rows after the last sentence).

    Args:
        keys: keys holding report text.
        tokenizer: a :class:`~bundle.data.tokenizer.ReportTokenizer` or the path of its ``tokenizer.json``.
        max_sentences: rows of the id matrix; later sentences are dropped.
        max_words: columns; longer sentences are cut, keeping room for ``<end>``.
        tokens_postfix: the id matrix goes under ``key + tokens_postfix``.
        num_sentences_postfix: the sentence count goes under ``key + num_sentences_postfix``.
        allow_missing_keys: don't raise when a key is missing (e.g. at inference, without reports).
    """

    def __init__(
        self,
        keys: KeysCollection = "report",
        tokenizer: ReportTokenizer | str | PathLike | None = None,
        max_sentences: int = 8,
        max_words: int = 24,
        tokens_postfix: str = "_tokens",
        num_sentences_postfix: str = "_num_sentences",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if tokenizer is None:
            raise ValueError("TokenizeReportd needs a tokenizer (a ReportTokenizer or a tokenizer.json path)")
        self.tokenizer = tokenizer if isinstance(tokenizer, ReportTokenizer) else ReportTokenizer.load(tokenizer)
        if max_sentences < 1 or max_words < 2:
            raise ValueError(f"need max_sentences >= 1 and max_words >= 2, got {max_sentences} and {max_words}")
        self.max_sentences, self.max_words = max_sentences, max_words
        self.tokens_postfix, self.num_sentences_postfix = tokens_postfix, num_sentences_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            text = d[key]
            if not isinstance(text, str):
                raise DataError(_item_name(d), f"report under {key!r} is {type(text).__name__}, not text")
            ids, count = self.tokenizer.encode(text, self.max_sentences, self.max_words)
            d[f"{key}{self.tokens_postfix}"] = torch.from_numpy(ids)
            d[f"{key}{self.num_sentences_postfix}"] = torch.tensor(count, dtype=torch.long)
        return d
