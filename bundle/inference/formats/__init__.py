"""The output formats of generated images (and the report text file), and the registry the dataset writer uses.

Image writers take one greyscale image ``[H, W]`` float in [0, 1] and store it as 8- or 16-bit integers so that
:func:`bundle.data.images.read_cxr` gives the same values back (within one grey level): :mod:`.png`, :mod:`.nifti`
and :mod:`.dicom` (with its check that a file is marked synthetic and identifies no one). A new format is a module
here with a ``write_<format>(image, path, bit_depth)`` function, and its entries in :data:`OUTPUT_FORMATS` (file
name ending), :data:`IMAGE_WRITERS` and :data:`HEADER_BYTES` (for the disk estimate).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bundle.inference.formats.common import SYNTHETIC_NOTE
from bundle.inference.formats.dicom import (
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    SYNTHETIC_PATIENT_NAME,
    check_dicom_synthetic,
    write_dicom,
)
from bundle.inference.formats.nifti import PIXEL_SPACING_MM, nifti_affine, write_nifti
from bundle.inference.formats.png import write_png
from bundle.inference.formats.report import write_report

__all__ = [
    "SYNTHETIC_NOTE",
    "SECONDARY_CAPTURE_IMAGE_STORAGE",
    "SYNTHETIC_PATIENT_NAME",
    "PIXEL_SPACING_MM",
    "OUTPUT_FORMATS",
    "IMAGE_WRITERS",
    "HEADER_BYTES",
    "normalise_format",
    "nifti_affine",
    "write_png",
    "write_nifti",
    "write_dicom",
    "check_dicom_synthetic",
    "write_report",
]

#: Output format -> file name ending.
OUTPUT_FORMATS: dict[str, str] = {"png": ".png", "nifti": ".nii.gz", "dicom": ".dcm"}
#: Output format -> ``write(image, path, bit_depth)``.
IMAGE_WRITERS: dict[str, Callable[..., Path]] = {"png": write_png, "nifti": write_nifti, "dicom": write_dicom}
#: Output format -> an upper bound of its header bytes beside the pixels.
HEADER_BYTES: dict[str, int] = {"png": 1024, "nifti": 1024, "dicom": 4096}
_FORMAT_ALIASES = {"png": "png", "nifti": "nifti", "nii": "nifti", "nii.gz": "nifti", "dicom": "dicom", "dcm": "dicom"}


def normalise_format(output_format: str) -> str:
    """The format name (a key of :data:`OUTPUT_FORMATS`) for a name or file ending such as ``"nii.gz"``, ``".dcm"``."""
    name = _FORMAT_ALIASES.get(str(output_format).strip().lower().lstrip("."))
    if name is None:
        raise ValueError(f"unknown output_format {output_format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    return name
