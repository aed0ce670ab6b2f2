"""Reading a DICOM radiograph for :func:`bundle.data.images.read_cxr`: the header checked before any pixel data is
decoded, then the modality LUT, the VOI LUT or window, and [0, 1] with bone bright.

Before decoding: a deflated data set is inflated into nothing first, stopping at the size cap (a few hundred
kilobytes can inflate to gigabytes); the header is then read without its pixel data (``stop_before_pixels``) and
refused when it is no radiograph (a non-image modality such as RTDOSE, no Photometric Interpretation, PALETTE COLOR
indices), when Number of Frames is malformed, or when Rows x Columns x frames x samples x Bits Allocated declares
more than the cap. After windowing, an image that came out constant (a window or VOI LUT outside the data) is
refused naming the window: it would train on black. The two image checks here (``check_not_constant``,
``check_displayed``) serve :mod:`bundle.data.images` too.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from bundle.data.errors import DataError

__all__ = ["NON_IMAGE_MODALITIES", "check_displayed", "check_not_constant", "read_dicom"]

#: Modalities whose pixel data (if any) is no picture to display: dose grids, segmentations, structured reports...
NON_IMAGE_MODALITIES: frozenset[str] = frozenset(
    [
        "RTDOSE",
        "RTSTRUCT",
        "RTPLAN",
        "RTRECORD",
        "SEG",
        "SR",
        "PR",
        "KO",
        "REG",
        "RWV",
        "FID",
        "DOC",
        "ECG",
        "HD",
        "AU",
        "PLAN",
        "RESP",
        "EPS",
        "M3D",
    ]
)

_DEFLATED = "1.2.840.10008.1.2.1.99"


def check_not_constant(path: Path, pixels: np.ndarray) -> None:
    """Refuse an image without pixels or with one value only (blank, or a failed export)."""
    if pixels.size == 0:
        raise DataError(path, "empty image (no pixels)")
    low, high = np.min(pixels), np.max(pixels)
    if low == high:
        raise DataError(path, f"constant image (every pixel is {low}): blank or failed export")


def check_displayed(path: Path, image: np.ndarray, window: str) -> None:
    """Refuse an image that its display range or window made constant: the window lies outside the data."""
    low, high = float(np.min(image)), float(np.max(image))
    if low == high:
        shade = "black" if low == 0.0 else "white" if low == 1.0 else f"{low:g}"
        raise DataError(path, f"{window} lies outside the data: every displayed pixel is {shade}")


def _inflated_size_within(path: Path, max_bytes: int) -> None:
    """Refuse a deflated data set that inflates beyond ``max_bytes``, counting without keeping the output."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    with open(path, "rb") as handle:
        read_preamble(handle, force=True)
        _read_file_meta_info(handle)
        inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
        while chunk := handle.read(1 << 20):
            while chunk:
                total += len(inflater.decompress(chunk, 1 << 24))
                chunk = inflater.unconsumed_tail
                if total > max_bytes:
                    raise DataError(path, f"deflated DICOM data set inflates beyond the {max_bytes} byte size cap")


def _frames(path: Path, ds: Any) -> int:
    """Number of Frames as an integer >= 1 (absent or 0: one frame); anything else is a DataError."""
    raw = ds.get("NumberOfFrames", 1)
    try:
        frames = int(str(raw).strip() or 1)
        if frames < 0 or str(raw).strip() not in ("", str(frames)):
            raise ValueError(raw)
    except (TypeError, ValueError):
        raise DataError(path, f"malformed DICOM Number of Frames {str(raw)!r} (expected a whole number >= 1)") from None
    return max(frames, 1)


def _check_header(path: Path, ds: Any, max_bytes: int) -> int:
    """Refuse a header that is no radiograph or declares more pixel data than ``max_bytes``; returns the frames."""
    modality = str(ds.get("Modality", "") or "").upper()
    if modality in NON_IMAGE_MODALITIES:
        raise DataError(path, f"non-image DICOM (modality {modality}): expected a radiograph")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    if photometric == "PALETTE COLOR":
        raise DataError(path, "PALETTE COLOR DICOM (pixels are colour-table indices): expected a greyscale radiograph")
    frames = _frames(path, ds)
    try:
        sizes = [int(ds.get(key, 0) or 0) for key in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated")]
    except (TypeError, ValueError) as err:
        raise DataError(path, f"malformed DICOM image size: {err}") from None
    rows, columns, samples, bits = sizes
    declared = rows * columns * frames * max(samples, 1) * max(bits, 1) // 8
    if declared > max_bytes:
        raise DataError(
            path,
            f"image too large: {rows} x {columns} x {frames} frame(s) x {max(samples, 1)} sample(s) x {bits} bits "
            f"declares {declared} bytes, over the {max_bytes} byte size cap",
        )
    return frames


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


def _first(value: Any) -> Any:
    """The first of a multi-valued DICOM element (pydicom's windowing uses the first window too)."""
    return value[0] if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else value


def _read_dataset(path: Path, max_bytes: int) -> tuple[Any, int]:
    """The full data set, after the inflation and header checks; also the number of frames."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        meta = pydicom.filereader.read_file_meta_info(path)
        if str(meta.get("TransferSyntaxUID", "")) == _DEFLATED:
            _inflated_size_within(path, max_bytes)
        header = pydicom.dcmread(path, stop_before_pixels=True)
        frames = _check_header(path, header, max_bytes)
        ds = pydicom.dcmread(path)
    except DataError:
        raise
    except InvalidDicomError as err:
        raise DataError(path, f"not a DICOM file: {err}") from err
    except Exception as err:
        raise DataError(path, f"corrupt DICOM file: {type(err).__name__}: {err}") from err
    return ds, frames


def read_dicom(path: Path, voi_lut: bool, max_bytes: int) -> tuple[np.ndarray, dict]:
    """DICOM pixels through the modality and VOI LUTs, scaled to [0, 1] with bone bright, and a meta dict."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    ds, frames = _read_dataset(path, max_bytes)
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DataError(path, "DICOM without pixel data")
    if not str(ds.get("PhotometricInterpretation", "") or "").strip():
        raise DataError(path, "DICOM without Photometric Interpretation: not a displayable image")
    if frames > 1:
        raise DataError(path, f"multi-frame DICOM ({frames} frames): expected one radiograph")
    try:
        pixels = ds.pixel_array
    except Exception as err:  # unsupported compression, wrong length, missing attributes...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        syntax = f" (transfer syntax {syntax.name})" if syntax is not None else ""
        raise DataError(path, f"cannot decode DICOM pixel data{syntax}: {type(err).__name__}: {err}") from err
    photometric = str(ds.PhotometricInterpretation).upper()
    meta = {"format": "DICOM", "mode": photometric}
    check_not_constant(path, pixels)
    low, high = _stored_range(ds)
    if pixels.ndim == 3:  # colour (RGB after pydicom's YBR conversion): luma over the stored range
        if pixels.shape[-1] != 3:
            raise DataError(path, f"unexpected DICOM pixel array shape {pixels.shape}")
        gray = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.clip((gray - low) / (high - low), 0.0, 1.0).astype(np.float32), meta
    if pixels.ndim != 2:
        raise DataError(path, f"unexpected DICOM pixel array shape {pixels.shape}")
    try:
        values = apply_modality_lut(pixels, ds)
        out_low, out_high = _modality_range(ds, low, high)
    except Exception as err:
        raise DataError(path, f"cannot apply the DICOM modality LUT / rescale: {type(err).__name__}: {err}") from err
    lut_item = _voi_lut_item(ds) if voi_lut else None
    window = "the stored value range"
    if lut_item is not None:
        window = "the VOI LUT"
        try:
            if not np.issubdtype(values.dtype, np.integer):
                values = np.rint(values).astype(np.int64)
            values = apply_voi(values, ds)
            descriptor = [int(v) for v in lut_item.LUTDescriptor]
            entries = apply_voi(np.arange(descriptor[1], descriptor[1] + (descriptor[0] or 2**16)), ds)
        except Exception as err:
            raise DataError(path, f"cannot apply the DICOM VOI LUT: {type(err).__name__}: {err}") from err
        out_low, out_high = float(entries.min()), float(entries.max())
        meta["mode"] += " VOI-LUT"
    elif voi_lut and ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        window = f"the window (center {center}, width {width})"
        try:
            if float(width) <= 0:
                raise ValueError("Window Width must be positive")
            values = apply_windowing(values, ds)  # output spans the modality range computed above
        except Exception as err:
            raise DataError(path, f"unusable DICOM window (center {center}, width {width}): {err}") from err
        meta["mode"] += " window"
    if out_high <= out_low:
        raise DataError(path, f"DICOM display range is empty ({out_low} to {out_high})")
    image = np.clip((values.astype(np.float64) - out_low) / (out_high - out_low), 0.0, 1.0)
    check_displayed(path, image, f"DICOM {window}")
    if photometric == "MONOCHROME1":  # low values are white: invert so that bone is bright
        image = 1.0 - image
    return image.astype(np.float32), meta
