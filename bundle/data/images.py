"""Reading chest radiographs: :func:`read_cxr` reads PNG, JPEG, DICOM or NIfTI into float32 ``[H, W]`` in [0, 1]
(0 black, 1 white, bone bright), rows top to bottom as the image is displayed, with a meta dict.
:class:`bundle.transforms.LoadCXRImaged` wraps it as a MONAI transform.

Intensity conventions:

- PNG / JPEG: 8-bit images are divided by 255 and 16-bit PNGs by 65535 (the values are kept, not
  stretched: MIMIC-CXR-JPG images are already windowed); colour images become luma (PIL's "L"); the EXIF
  orientation is applied.
- DICOM: the modality LUT (Rescale Slope / Intercept or Modality LUT Sequence), then the VOI LUT (VOI LUT
  Sequence, else the first Window Center / Width), then [0, 1] over the output range of that step (the
  window's output range, the VOI LUT's value range, or without VOI the range ``Bits Stored`` allows through
  the modality LUT); MONOCHROME1 is inverted so that bone is bright.
- NIfTI: the header's display range (`cal_min`..`cal_max`) when set, else min-max to [0, 1].

NIfTI orientation: a radiograph has no anatomical 3D frame, so the NIfTI affine is ignored and the voxel
index convention of MONAI / ITK 2D images is used: voxel axis 0 is the image's horizontal axis (column,
left to right) and voxel axis 1 its vertical axis (row, top to bottom). That is how MONAI's ``LoadImage``
reads a PNG (``PILReader`` transposes to ``[width, height]``) and how ``SaveImage`` writes it to NIfTI, so
a PNG saved as NIfTI by MONAI loads here exactly as the PNG does. A 3-D NIfTI must have exactly two axes
longer than 1; the first of them is the column axis. Converters that reorder voxels to follow the affine
(dcm2niix stores rows bottom-up) give flipped images under this convention: read such data from its DICOM.

Every failure raises :class:`bundle.data.errors.DataError` naming the file; a constant image (blank or a
failed export) is refused too, as it carries nothing to learn, and so is an image that only becomes constant
through its display range or window (one outside the data would train on black).

Hostile files: the size each file declares (PNG / JPEG: width x height x bands; NIfTI: its header's shape x data
type, read before any data is inflated; DICOM: Rows x Columns x frames x Bits Allocated, see
:mod:`bundle.data.dicom`) is checked against :data:`MAX_IMAGE_BYTES` (or ``read_cxr(max_bytes=...)``) before
decoding, so a small compressed file cannot inflate into gigabytes. Truncated PNG / JPEG files are refused even
with an end marker appended or ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` set: libjpeg fills the missing blocks of
a sequential JPEG with flat grey (value 128), so a bottom MCU band that is exactly 128 is refused, and a
progressive JPEG must carry scans for every coefficient at full precision.
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import zlib
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from bundle.data.dicom import check_displayed, check_not_constant, read_dicom
from bundle.data.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_BYTES",
    "check_displayed",
    "check_not_constant",
    "has_dicom_preamble",
    "read_cxr",
]

#: File name endings the loader reads (case-insensitive). Files with another ending are read as DICOM when
#: they carry the DICOM "DICM" magic (PACS exports often have no extension).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".nii", ".nii.gz")

#: The most bytes of pixel data a file may declare (before decoding); ``read_cxr(max_bytes=...)`` overrides it.
#: 256 MiB is eight times a 4096 x 4096 16-bit radiograph.
MAX_IMAGE_BYTES: int = 256 * 2**20

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_EOI = b"\xff\xd9"


def has_dicom_preamble(path: str | PathLike) -> bool:
    """Whether the file carries the DICOM "DICM" magic after its 128-byte preamble (False if unreadable)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "NIfTI"
    if name.endswith((".dcm", ".dicom")):
        return "DICOM"
    if name.endswith(".png"):
        return "PNG"
    if name.endswith((".jpg", ".jpeg")):
        return "JPEG"
    if has_dicom_preamble(path):
        return "DICOM"
    suffix = path.suffix or "(none)"
    raise DataError(path, f"unsupported image format {suffix} (expected {', '.join(IMAGE_SUFFIXES)} or DICOM)")


def _check_complete(path: Path, data: bytes) -> None:
    """Refuse truncated PNG / JPEG files from their structure, whatever ``ImageFile.LOAD_TRUNCATED_IMAGES`` says."""
    if data.startswith(_PNG_SIGNATURE):
        pos = len(_PNG_SIGNATURE)
        while pos + 8 <= len(data):  # walk the chunks: length, type, data, CRC; the last one is IEND
            length, kind = struct.unpack(">I4s", data[pos : pos + 8])
            pos += 12 + length
            if pos > len(data):
                break
            if kind == b"IEND":
                return
        raise DataError(path, "truncated PNG image (file ends before its IEND chunk)")
    if data.startswith(b"\xff\xd8") and _JPEG_EOI not in data.rstrip(b"\x00")[-1024:]:
        raise DataError(path, "truncated JPEG image (no end-of-image marker)")


_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # a marker after entropy-coded data (not RSTn, stuffing)


def _jpeg_progressive_complete(data: bytes) -> bool:
    """False when a progressive JPEG lacks scans for some coefficient at full precision (its file was cut and an
    end marker appended); True for complete files, sequential JPEGs, and structures this walk does not know."""
    pos, progressive, components, final = 2, False, [], {}
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        if marker == 0xFF:
            pos += 1
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        body = data[pos + 4 : pos + 2 + length]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and len(body) >= 6:
            progressive = marker in (0xC2, 0xC6, 0xCA, 0xCE)
            components = [body[6 + 3 * i] for i in range(body[5]) if 6 + 3 * i < len(body)]
            final = {c: set() for c in components}
        pos += 2 + length
        if marker == 0xDA and body:  # start of scan: components, spectral range, successive approximation
            count = body[0]
            ss, se, al = body[1 + 2 * count], body[2 + 2 * count], body[3 + 2 * count] & 0x0F
            for i in range(count):
                if al == 0 and body[1 + 2 * i] in final:
                    final[body[1 + 2 * i]].update(range(ss, se + 1))
            found = _JPEG_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
    if not progressive or not components:
        return True
    return all(len(final[c]) == 64 for c in components)


def _png_stream_complete(data: bytes) -> bool:
    """Whether a PNG's IDAT chunks hold a complete zlib stream (checked when Pillow is told to load truncated files)."""
    pos, inflater = len(_PNG_SIGNATURE), zlib.decompressobj()
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            chunk = data[pos + 8 : pos + 8 + length]
            while chunk and not inflater.eof:
                inflater.decompress(chunk, 1 << 24)
                chunk = inflater.unconsumed_tail
        pos += 12 + length
    return inflater.eof


def _check_size(path: Path, declared: int, what: str, max_bytes: int) -> None:
    if declared > max_bytes:
        raise DataError(path, f"image too large: {what} declares {declared} bytes, over the {max_bytes} byte size cap")


def _read_pil(path: Path, max_bytes: int) -> tuple[np.ndarray, float | None, dict]:
    """PNG / JPEG pixels as a 2-D array and the value that means white (None: no nominal range, use min-max)."""
    from PIL import Image, ImageFile, ImageOps

    data = path.read_bytes()
    _check_complete(path, data)
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, DecompressionBombError...
        raise DataError(path, f"corrupt or truncated image: {type(err).__name__}: {err}") from err
    bands, mode = len(image.getbands()), image.mode
    sample = 2 if mode.startswith("I;16") else 4 if mode in ("I", "F") else 1
    width, height = image.size
    _check_size(path, width * height * bands * sample, f"{width} x {height} x {bands} band(s) ({mode})", max_bytes)
    try:
        image.load()  # decode now: a damaged file fails here rather than later in a worker
    except Exception as err:
        raise DataError(path, f"corrupt or truncated image: {type(err).__name__}: {err}") from err
    meta = {"format": str(image.format), "mode": image.mode}
    if meta["format"] == "PNG" and ImageFile.LOAD_TRUNCATED_IMAGES and not _png_stream_complete(data):
        raise DataError(path, "truncated PNG image (its compressed pixel stream ends early)")
    if meta["format"] == "JPEG":
        _check_jpeg_decoded(path, data, image)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as err:
        raise DataError(path, f"corrupt image metadata: {type(err).__name__}: {err}") from err
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.float32), 65535.0, meta
    if image.mode == "I" and meta["format"] == "PNG":  # 16-bit greyscale as older Pillow versions open it
        return np.asarray(image).astype(np.float32), 65535.0, meta
    if image.mode in ("I", "F"):
        return np.asarray(image).astype(np.float32), None, meta
    if image.mode != "L":
        image = image.convert("L")
    return np.asarray(image).astype(np.float32), 255.0, meta


def _check_jpeg_decoded(path: Path, data: bytes, image: Any) -> None:
    """Refuse a JPEG cut short and closed with an end marker: libjpeg decodes it without an error."""
    if not _jpeg_progressive_complete(data):
        raise DataError(path, "truncated JPEG image (progressive scans end before full precision)")
    if image.mode not in ("L", "RGB", "YCbCr"):
        return
    band = 8 * max([int(layer[2]) for layer in getattr(image, "layer", [])] or [1])
    pixels = np.asarray(image)
    if pixels.shape[0] > band and (pixels[-band:] == 128).all():
        raise DataError(path, f"truncated JPEG image (its last {band} rows are the decoder's flat grey fill)")


def _nifti_declared_bytes(path: Path) -> tuple[int, str] | None:
    """Bytes a NIfTI-1 / NIfTI-2 header declares (voxel offset + shape x bits per voxel) and its shape, read
    from the first 540 bytes only (a .nii.gz inflates no further); None when the header is not recognised."""
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as handle:
            head = handle.read(540)
    except (OSError, EOFError, zlib.error):
        return None
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:  # NIfTI-1
            dims = struct.unpack(order + "8h", head[40:56])
            bitpix, offset = struct.unpack(order + "h", head[72:74])[0], struct.unpack(order + "f", head[108:112])[0]
            break
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:  # NIfTI-2
            dims = struct.unpack(order + "8q", head[16:80])
            bitpix, offset = struct.unpack(order + "h", head[14:16])[0], struct.unpack(order + "q", head[168:176])[0]
            break
    else:
        return None
    shape = [max(int(n), 1) for n in dims[1 : min(max(int(dims[0]), 0), 7) + 1]]
    if not np.isfinite(offset):
        return None
    return int(max(offset, 0)) + int(np.prod(shape, dtype=object)) * max(int(bitpix), 8) // 8, " x ".join(
        map(str, shape)
    )


def _read_nifti(path: Path, max_bytes: int) -> tuple[np.ndarray, tuple[float, float] | None, dict]:
    """A 2-D (or 3-D with one singleton axis) NIfTI as ``[rows, columns]``: voxel axis 1 down, axis 0 across.

    Also returns the header's display range (``cal_min``, ``cal_max``) when it is set, else None. The size the
    header declares is checked against ``max_bytes`` before nibabel reads anything.
    """
    from monai.data import NibabelReader

    declared = _nifti_declared_bytes(path)
    if declared is not None:
        _check_size(path, declared[0], f"NIfTI shape {declared[1]} (with its voxel offset)", max_bytes)
    try:
        reader = NibabelReader(as_closest_canonical=False)
        nifti = reader.read(str(path))
        header = nifti.header
        declared_bytes = int(np.prod(header.get_data_shape(), dtype=object)) * header.get_data_dtype().itemsize
        _check_size(path, declared_bytes, f"NIfTI shape {header.get_data_shape()}", max_bytes)
        data, _ = reader.get_data(nifti)
    except DataError:
        raise
    except Exception as err:  # nibabel's ImageFileError, gzip EOFError / zlib errors for truncated files
        raise DataError(path, f"corrupt or unreadable NIfTI: {type(err).__name__}: {err}") from err
    data = np.asarray(data)
    if data.dtype.fields is not None:
        raise DataError(path, f"unsupported NIfTI data type {data.dtype} (expected a greyscale image)")
    axes = [a for a, n in enumerate(data.shape) if n > 1]
    if data.ndim not in (2, 3) or len(axes) != 2:
        raise DataError(path, f"NIfTI must be 2-D, or 3-D with one singleton axis; got shape {data.shape}")
    data = data.reshape(data.shape[axes[0]], data.shape[axes[1]])
    low, high = (float(header[key]) for key in ("cal_min", "cal_max"))
    display = (low, high) if np.isfinite([low, high]).all() and high > low else None
    return np.ascontiguousarray(data.T).astype(np.float32), display, {"format": "NIfTI", "mode": str(data.dtype)}


def read_cxr(path: str | PathLike, voi_lut: bool = True, max_bytes: int | None = None) -> tuple[np.ndarray, dict]:
    """Read a radiograph as float32 ``[H, W]`` in [0, 1] (bone bright) and a meta dict; see the module docs.

    ``voi_lut=False`` skips the DICOM VOI LUT / window and scales by ``Bits Stored`` instead. ``max_bytes``: the
    most pixel data a file may declare before it is decoded (None: :data:`MAX_IMAGE_BYTES`).
    """
    path = Path(path)
    max_bytes = MAX_IMAGE_BYTES if max_bytes is None else int(max_bytes)
    if not path.is_file():
        raise DataError(path, "missing image file")
    kind = _format_of(path)
    if kind == "DICOM":
        image, meta = read_dicom(path, voi_lut, max_bytes)
    else:
        display = None
        if kind == "NIfTI":
            pixels, display, meta = _read_nifti(path, max_bytes)
            white = None
        else:
            pixels, white, meta = _read_pil(path, max_bytes)
        if not np.all(np.isfinite(pixels)):
            raise DataError(path, "image has NaN or infinite values")
        check_not_constant(path, pixels)
        if display is not None:  # the header's cal_min..cal_max is the display range
            pixels, white = pixels - display[0], display[1] - display[0]
        elif white is None:  # no nominal range: stretch min..max
            pixels = pixels - pixels.min()
            white = float(pixels.max())
        image = np.clip(pixels / white, 0.0, 1.0).astype(np.float32)
        if display is not None:
            check_displayed(path, image, f"the NIfTI display range (cal_min {display[0]:g}, cal_max {display[1]:g})")
    if image.ndim != 2:
        raise DataError(path, f"expected a 2-D image, got shape {image.shape}")
    meta.update({"filename_or_obj": str(path), "spatial_shape": np.asarray(image.shape)})
    return image, meta
