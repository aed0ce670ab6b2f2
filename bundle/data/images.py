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
failed export) is refused too, as it carries nothing to learn.
"""

from __future__ import annotations

import io
import struct
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from bundle.data.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "has_dicom_preamble", "read_cxr"]

#: File name endings the loader reads (case-insensitive). Files with another ending are read as DICOM when
#: they carry the DICOM "DICM" magic (PACS exports often have no extension).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".nii", ".nii.gz")

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


def _read_pil(path: Path) -> tuple[np.ndarray, float | None, dict]:
    """PNG / JPEG pixels as a 2-D array and the value that means white (None: no nominal range, use min-max)."""
    from PIL import Image, ImageOps

    data = path.read_bytes()
    _check_complete(path, data)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decode now: a damaged file fails here rather than later in a worker
        meta = {"format": str(image.format), "mode": image.mode}
        image = ImageOps.exif_transpose(image)
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, DecompressionBombError...
        raise DataError(path, f"corrupt or truncated image: {type(err).__name__}: {err}") from err
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.float32), 65535.0, meta
    if image.mode == "I" and meta["format"] == "PNG":  # 16-bit greyscale as older Pillow versions open it
        return np.asarray(image).astype(np.float32), 65535.0, meta
    if image.mode in ("I", "F"):
        return np.asarray(image).astype(np.float32), None, meta
    if image.mode != "L":
        image = image.convert("L")
    return np.asarray(image).astype(np.float32), 255.0, meta


def _stored_range(ds: Any) -> tuple[int, int]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _modality_range(ds: Any, low: float, high: float) -> tuple[float, float]:
    """Output range of the modality LUT for stored values in [low, high] (as pydicom's windowing assumes)."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        ends = (low * slope + intercept, high * slope + intercept)
        return min(ends), max(ends)
    return float(low), float(high)


def _voi_lut_item(ds: Any) -> Any | None:
    items = ds.get("VOILUTSequence")
    if items and items[0].get("LUTDescriptor") is not None and items[0].get("LUTData") is not None:
        return items[0]
    return None


def _read_dicom(path: Path, voi_lut: bool) -> tuple[np.ndarray, dict]:
    """DICOM pixels through the modality and VOI LUTs, scaled to [0, 1] with bone bright."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise DataError(path, f"not a DICOM file: {err}") from err
    except Exception as err:
        raise DataError(path, f"corrupt DICOM file: {type(err).__name__}: {err}") from err
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DataError(path, "DICOM without pixel data")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DataError(path, f"multi-frame DICOM ({frames} frames): expected one radiograph")
    try:
        pixels = ds.pixel_array
    except Exception as err:  # unsupported compression, wrong length, missing attributes...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        syntax = f" (transfer syntax {syntax.name})" if syntax is not None else ""
        raise DataError(path, f"cannot decode DICOM pixel data{syntax}: {type(err).__name__}: {err}") from err
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    meta = {"format": "DICOM", "mode": photometric}
    _check_not_constant(path, pixels)
    low, high = _stored_range(ds)
    if pixels.ndim == 3:  # colour (RGB after pydicom's YBR conversion): luma over the stored range
        if pixels.shape[-1] != 3:
            raise DataError(path, f"unexpected DICOM pixel array shape {pixels.shape}")
        gray = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.clip((gray - low) / (high - low), 0.0, 1.0).astype(np.float32), meta
    if pixels.ndim != 2:
        raise DataError(path, f"unexpected DICOM pixel array shape {pixels.shape}")
    values = apply_modality_lut(pixels, ds)
    out_low, out_high = _modality_range(ds, low, high)
    lut_item = _voi_lut_item(ds) if voi_lut else None
    if lut_item is not None:
        if not np.issubdtype(values.dtype, np.integer):
            values = np.rint(values).astype(np.int64)
        values = apply_voi(values, ds)
        descriptor = [int(v) for v in lut_item.LUTDescriptor]
        entries = apply_voi(np.arange(descriptor[1], descriptor[1] + (descriptor[0] or 2**16)), ds)
        out_low, out_high = float(entries.min()), float(entries.max())
        meta["mode"] += " VOI-LUT"
    elif voi_lut and ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        values = apply_windowing(values, ds)  # output spans the modality range computed above
        meta["mode"] += " window"
    if out_high <= out_low:
        raise DataError(path, f"DICOM display range is empty ({out_low} to {out_high})")
    image = np.clip((values.astype(np.float64) - out_low) / (out_high - out_low), 0.0, 1.0)
    if photometric == "MONOCHROME1":  # low values are white: invert so that bone is bright
        image = 1.0 - image
    return image.astype(np.float32), meta


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float] | None, dict]:
    """A 2-D (or 3-D with one singleton axis) NIfTI as ``[rows, columns]``: voxel axis 1 down, axis 0 across.

    Also returns the header's display range (``cal_min``, ``cal_max``) when it is set, else None.
    """
    from monai.data import NibabelReader

    try:
        reader = NibabelReader(as_closest_canonical=False)
        nifti = reader.read(str(path))
        header = nifti.header
        data, _ = reader.get_data(nifti)
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


def _check_not_constant(path: Path, pixels: np.ndarray) -> None:
    if pixels.size == 0:
        raise DataError(path, "empty image (no pixels)")
    low, high = np.min(pixels), np.max(pixels)
    if low == high:
        raise DataError(path, f"constant image (every pixel is {low}): blank or failed export")


def read_cxr(path: str | PathLike, voi_lut: bool = True) -> tuple[np.ndarray, dict]:
    """Read a radiograph as float32 ``[H, W]`` in [0, 1] (bone bright) and a meta dict; see the module docs.

    ``voi_lut=False`` skips the DICOM VOI LUT / window and scales by ``Bits Stored`` instead.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing image file")
    kind = _format_of(path)
    if kind == "DICOM":
        image, meta = _read_dicom(path, voi_lut)
    else:
        display = None
        if kind == "NIfTI":
            pixels, display, meta = _read_nifti(path)
            white = None
        else:
            pixels, white, meta = _read_pil(path)
        if not np.all(np.isfinite(pixels)):
            raise DataError(path, "image has NaN or infinite values")
        _check_not_constant(path, pixels)
        if display is not None:  # the header's cal_min..cal_max is the display range
            pixels, white = pixels - display[0], display[1] - display[0]
        elif white is None:  # no nominal range: stretch min..max
            pixels = pixels - pixels.min()
            white = float(pixels.max())
        image = np.clip(pixels / white, 0.0, 1.0).astype(np.float32)
    if image.ndim != 2:
        raise DataError(path, f"expected a 2-D image, got shape {image.shape}")
    meta.update({"filename_or_obj": str(path), "spatial_shape": np.asarray(image.shape)})
    return image, meta
