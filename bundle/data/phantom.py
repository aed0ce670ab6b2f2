"""Re-exports of the phantom renderer, which lives in :mod:`bundle.data.embedded` (kept for old import paths)."""

from .embedded.lung_shapes import (
    CANONICAL_SIZE,
    LungShape,
    load_real_lung_shapes,
    lung_shape_from_masks,
    procedural_lung_shape,
    real_lung_mask_path,
    real_masks_usable,
)
from .embedded.patient import Patient, sample_patient
from .embedded.render import render_phantom
from .embedded.spec import DEVICE_TYPES, FINDING_ATTRIBUTES, PHANTOM_FINDINGS, complete_spec, sample_devices

__all__ = [
    "CANONICAL_SIZE",
    "DEVICE_TYPES",
    "FINDING_ATTRIBUTES",
    "PHANTOM_FINDINGS",
    "LungShape",
    "Patient",
    "complete_spec",
    "load_real_lung_shapes",
    "lung_shape_from_masks",
    "procedural_lung_shape",
    "real_lung_mask_path",
    "real_masks_usable",
    "render_phantom",
    "sample_devices",
    "sample_patient",
]
