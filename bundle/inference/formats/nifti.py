"""NIfTI output (``.nii.gz``): voxel axis 0 is the column and axis 1 the row, the project's 2-D convention, so
:func:`bundle.data.images.read_cxr` returns the image as it was given.

The affine places the image in the coronal plane with 0.5 mm pixels (columns run towards the patient's left, rows
towards the feet, as a frontal radiograph is displayed); ``cal_min`` / ``cal_max`` hold the display range and
``descrip`` says the image is synthetic. ``read_cxr`` min-max scales NIfTI (a NIfTI has no nominal range), so values
come back unchanged only for an image that reaches both 0 and 1; the stored integers are always exact.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from bundle.inference.formats.common import SYNTHETIC_NOTE, prepare_path, quantize

__all__ = ["PIXEL_SPACING_MM", "nifti_affine", "write_nifti"]

PIXEL_SPACING_MM = 0.5


def nifti_affine(spacing_mm: float = PIXEL_SPACING_MM) -> np.ndarray:
    """Voxel -> RAS+ mm for a frontal radiograph: axis 0 (column) towards patient left (-x), axis 1 (row)
    towards the feet (-z), the third (singleton) axis anterior (+y)."""
    return np.array(
        [
            [-spacing_mm, 0.0, 0.0, 0.0],
            [0.0, 0.0, spacing_mm, 0.0],
            [0.0, -spacing_mm, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def write_nifti(image: np.ndarray, path: str | PathLike, bit_depth: int = 8) -> Path:
    """Write ``image`` as a 2-D NIfTI-1 (``.nii`` / ``.nii.gz``) that :func:`bundle.data.images.read_cxr` reads back
    in the same orientation: data ``[columns, rows]`` (voxel axis 0 across, axis 1 down)."""
    import nibabel as nib

    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    pixels = quantize(image, bit_depth)
    affine = nifti_affine()
    nifti = nib.Nifti1Image(np.ascontiguousarray(pixels.T), affine)
    header = nifti.header
    header.set_data_dtype(pixels.dtype)
    nifti.set_qform(affine, code=2)  # "aligned": a frame of the image itself, no scanner coordinates
    nifti.set_sform(affine, code=2)
    header.set_xyzt_units(xyz="mm")
    header.set_intent("none", name="synthetic")
    header["descrip"] = SYNTHETIC_NOTE.encode("ascii")[:79]
    header["cal_min"], header["cal_max"] = 0.0, float(2**bit_depth - 1)
    nib.save(nifti, prepare_path(path))
    return path
