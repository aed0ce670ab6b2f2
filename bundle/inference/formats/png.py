"""PNG output: PIL mode ``L`` (8 bit) or ``I;16`` (16 bit), with a text chunk saying the image is synthetic."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from bundle.inference.formats.common import SYNTHETIC_NOTE, prepare_path, quantize

__all__ = ["write_png"]


def write_png(image: np.ndarray, path: str | PathLike, bit_depth: int = 8) -> Path:
    """Write ``image`` as a greyscale PNG (mode ``L`` for 8 bit, ``I;16`` for 16 bit) with a synthetic note."""
    from PIL import Image, PngImagePlugin

    pixels = quantize(image, bit_depth)
    picture = Image.fromarray(pixels)  # uint8 -> "L", uint16 -> "I;16"
    expected = "L" if bit_depth == 8 else "I;16"
    if picture.mode != expected:
        raise RuntimeError(f"PIL made a {picture.mode} image for {bit_depth}-bit data, expected {expected}")
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", SYNTHETIC_NOTE)
    info.add_text("Software", "EMIXER-CXR")
    path = prepare_path(path)
    picture.save(path, format="PNG", pnginfo=info)
    return path
