"""Disk budgeting before a generation run: an upper estimate of the bytes per sample and a check that the output
folder's file system has room, so a long run fails at its start rather than part way."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from bundle.inference.formats import HEADER_BYTES, normalise_format

__all__ = ["estimate_bytes_per_sample", "check_free_disk"]


def estimate_bytes_per_sample(output_format: str, bit_depth: int, image_shape: Sequence[int]) -> int:
    """Upper estimate of the disk bytes one sample takes: the uncompressed image (PNG and gzip can only do
    better on generated images), the format's header, the report and its progress / manifest / datalist lines."""
    output_format = normalise_format(output_format)
    height, width = (int(n) for n in tuple(image_shape)[-2:])
    header = HEADER_BYTES[output_format]
    return height * width * (bit_depth // 8) + header + 8192


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_disk(out_dir: str | PathLike, num_samples: int, bytes_per_sample: int) -> int:
    """Raise :class:`OSError` when the file system of ``out_dir`` has less free space than ``num_samples`` x
    ``bytes_per_sample``; return the free bytes otherwise."""
    free = shutil.disk_usage(_existing_ancestor(Path(out_dir))).free
    needed = int(num_samples) * int(bytes_per_sample)
    if free < needed:
        raise OSError(
            f"not enough disk space in {out_dir}: {num_samples} samples need about {needed / 2**20:.1f} MiB "
            f"({bytes_per_sample} bytes each) but only {free / 2**20:.1f} MiB are free; "
            "free some space, choose another output folder, or write fewer samples"
        )
    return free
