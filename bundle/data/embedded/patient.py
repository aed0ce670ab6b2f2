"""One phantom patient: lung outline, anatomy proportions and acquisition settings.

A :class:`Patient` is drawn once per subject and reused for the subject's follow-up studies, so the same
anatomy appears with new findings. Lengths are fractions of the image width (vertical positions of the image
height) unless a field says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lung_shapes import CANONICAL_SIZE, LungShape, load_real_lung_shapes, procedural_lung_shape, real_masks_usable
from .spec import CARDIOTHORACIC_RATIO_RANGES


@dataclass
class Patient:
    """Anatomy and acquisition of one patient (reused for a subject's follow-up studies)."""

    shape: LungShape
    box_width: float  # lung box width as a fraction of the image width (= internal thoracic width)
    box_height: float
    box_top: float
    rotation_deg: float
    shift: tuple[float, float]  # (horizontal, vertical) shift of the patient in the image
    ctr: float  # the patient's own (normal) cardiothoracic ratio
    heart_right_fraction: float  # share of the heart width right of the midline
    heart_height: float  # the heart's vertical semi-axis (left side) as a fraction of the lung box height
    mediastinum: tuple[float, float]  # half-widths right / left as fractions of the thoracic width
    aortic_knob_radius: float  # as a fraction of the thoracic width
    body_width_factor: float  # torso width / thoracic width
    carina_level: float  # carina level as a fraction of lung height below the apex
    rib_count: int
    rib_phase: float
    rib_curve: float
    clavicle_level: float  # clavicle height relative to the lung apex
    spine_width: float  # vertebral half-width as a fraction of the thoracic width
    gastric_bubble: bool
    exposure: float  # detector response: image = 1 - exp(-exposure * density)
    gamma: float
    noise: float  # quantum noise amplitude
    blur: float  # detector blur in pixels at 256 px
    window: tuple[float, float]  # attenuation shown as black / white
    soft_tissue: float  # how much breast / pectoral soft tissue brightens the lower lateral lungs


def sample_patient(
    rng: np.random.Generator,
    use_real_masks: bool | str = "auto",
    max_masks: int | None = None,
) -> Patient:
    """Draw a patient: a lung outline (real or procedural) and the anatomy / acquisition parameters."""
    if real_masks_usable(use_real_masks):
        shapes = load_real_lung_shapes(CANONICAL_SIZE, max_masks)
        shape = shapes[int(rng.integers(len(shapes)))]
    else:
        shape = procedural_lung_shape(rng)
    width = rng.uniform(0.64, 0.76)
    # the archive's masks come from figures of mixed proportions: keep lungs about as tall as wide
    height = min(width * float(np.clip(shape.aspect, 0.88, 1.05)) * rng.uniform(0.96, 1.08), 0.8)
    return Patient(
        shape=shape,
        box_width=width,
        box_height=height,
        box_top=rng.uniform(0.06, max(0.06, 0.9 - height)),
        rotation_deg=rng.uniform(-4.0, 4.0),
        shift=(rng.uniform(-0.03, 0.03), rng.uniform(-0.02, 0.02)),
        ctr=rng.uniform(*CARDIOTHORACIC_RATIO_RANGES["normal"]),
        heart_right_fraction=rng.uniform(0.28, 0.36),
        heart_height=rng.uniform(0.32, 0.4),
        mediastinum=(rng.uniform(0.09, 0.12), rng.uniform(0.08, 0.11)),
        aortic_knob_radius=rng.uniform(0.045, 0.06),
        body_width_factor=rng.uniform(1.1, 1.22),
        carina_level=rng.uniform(0.3, 0.38),
        rib_count=int(rng.integers(9, 11)),
        rib_phase=rng.uniform(-0.1, 0.1),
        rib_curve=rng.uniform(0.3, 0.42),
        clavicle_level=rng.uniform(-0.02, 0.04),
        spine_width=rng.uniform(0.055, 0.07),
        gastric_bubble=bool(rng.random() < 0.7),
        exposure=rng.uniform(1.0, 1.5),
        gamma=rng.uniform(0.85, 1.15),
        noise=rng.uniform(0.008, 0.025),
        blur=rng.uniform(0.4, 0.8),
        window=(rng.uniform(0.0, 0.06), rng.uniform(1.5, 1.8)),
        soft_tissue=rng.uniform(0.05, 0.2),
    )
