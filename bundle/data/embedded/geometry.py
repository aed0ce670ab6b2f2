"""The chest geometry of one image: patient frame, heart and mediastinum, and the lung fields warped onto them.

:class:`ChestGeometry` places the heart for a given cardiothoracic ratio, then samples the patient's lung
outline (:class:`~bundle.data.embedded.lung_shapes.LungShape`) with each row's medial border moved onto the
drawn mediastinum / heart border, so the ratio measured on the image is the one asked for. The anatomy layers
and the findings read their positions from it. Positions are in patient-frame units (see
:mod:`bundle.data.embedded.drawing`); "side sign" is -1 for the right lung, +1 for the left.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from .drawing import PatientFrame, smoothstep
from .patient import Patient
from .spec import CARDIOTHORACIC_RATIO_RANGES

SIDES = ("right", "left")


def side_sign(side: str) -> int:
    """-1 for the right lung (image left), +1 for the left lung."""
    return -1 if side == "right" else 1


def cardiothoracic_ratio(cardiomegaly: dict | None, patient: Patient, rng: np.random.Generator) -> float:
    """The ratio to draw: the patient's own without cardiomegaly, else the spec's ``ctr`` or one drawn for its
    severity (a borderline one when uncertain)."""
    if cardiomegaly is None:
        return patient.ctr
    if "ctr" in cardiomegaly:
        return cardiomegaly["ctr"]
    key = "uncertain" if cardiomegaly["uncertain"] else cardiomegaly["severity"]
    return rng.uniform(*CARDIOTHORACIC_RATIO_RANGES[key])


class ChestGeometry:
    """Frame, heart, mediastinum and lung masks of one image (``size`` px square) of ``patient``.

    Attributes read by the drawing steps: ``u`` / ``v`` (patient-frame coordinates of each pixel),
    ``thoracic_width`` (internal thoracic width = lateral lung extents), ``apex_v``, ``carina_v``,
    ``lung_height``, ``dome_v[side]``, the heart (``heart_centre_v``, its half-widths right / left of the
    midline and vertical semi-axes) and the masks ``lung[side]``, ``parenchyma[side]`` (the aerated lung a
    pneumothorax shrinks), ``opacity_region[side]`` (the lung slightly dilated, where opacities are drawn) and
    ``heart``. ``size_scale`` is size / 256: blur widths are given in pixels of a 256 px image.
    """

    def __init__(self, size: int, patient: Patient, ctr: float) -> None:
        self.size, self.patient = size, patient
        self.pixel = 1.0 / size  # one pixel in normalised units
        self.size_scale = size / 256.0
        self.frame = PatientFrame(size, patient)
        self.u, self.v = self.frame.u, self.frame.v
        shape = patient.shape
        self.canonical_size = shape.right.shape[0]
        self.thoracic_width = patient.box_width
        self.canonical_left_u = -shape.midline / (self.canonical_size - 1) * self.thoracic_width
        self.canonical_col = (self.u - self.canonical_left_u) / self.thoracic_width * (self.canonical_size - 1)
        self.canonical_row = (self.v - patient.box_top) / patient.box_height * (self.canonical_size - 1)
        self._place_heart(ctr)
        self._draw_lungs()

    # -- canonical lung box <-> patient frame
    def v_of_row(self, row: float) -> float:
        """Patient-frame ``v`` of a canonical lung-box row."""
        return self.patient.box_top + row / (self.canonical_size - 1) * self.patient.box_height

    def u_of_column(self, col: np.ndarray | float) -> np.ndarray | float:
        """Patient-frame ``u`` of a canonical lung-box column."""
        return self.canonical_left_u + np.asarray(col) / (self.canonical_size - 1) * self.thoracic_width

    def side_levels(self, side: str) -> tuple[float, float, float]:
        """``v`` of the lung's apex, costophrenic angle and diaphragm dome on ``side``."""
        top, bottom, dome = self.patient.shape.rows[side]
        return self.v_of_row(top), self.v_of_row(bottom), self.v_of_row(dome)

    def lateral_border_u(self, side: str, v: float) -> float:
        """``u`` of the lateral lung border on ``side`` at height ``v`` (the nearest row that has lung)."""
        shape = self.patient.shape
        last = self.canonical_size - 1
        row = int(np.clip(round((v - self.patient.box_top) / self.patient.box_height * last), 0, last))
        lateral = shape.lateral_right if side == "right" else shape.lateral_left
        valid = np.flatnonzero(~np.isnan(lateral))
        row = valid[np.argmin(np.abs(valid - row))]
        return float(self.u_of_column(lateral[row]))

    # -- evaluating a layer only where it can be non-zero
    def pixel_slices(self, u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice]:
        """Image slices covering the patient-frame rectangle [u0, u1] x [v0, v1] (plus a margin)."""
        corners = self.frame.to_pixels(np.array([[u0, v0], [u1, v0], [u0, v1], [u1, v1]], dtype=np.float64))
        low = np.clip(np.floor(corners.min(axis=0)) - 3, 0, self.size).astype(int)
        high = np.clip(np.ceil(corners.max(axis=0)) + 4, 0, self.size).astype(int)
        return slice(low[1], max(high[1], low[1])), slice(low[0], max(high[0], low[0]))

    def evaluate_in_box(
        self, func: Callable[[np.ndarray, np.ndarray], np.ndarray], box: tuple[float, float, float, float]
    ) -> np.ndarray:
        """``func(u, v)`` evaluated only inside ``box`` (u0, u1, v0, v1); zero elsewhere."""
        out = np.zeros_like(self.u)
        slices = self.pixel_slices(*box)
        if slices[0].stop > slices[0].start and slices[1].stop > slices[1].start:
            out[slices] = func(self.u[slices], self.v[slices])
        return out

    # -- heart and mediastinum
    def _place_heart(self, ctr: float) -> None:
        """Heart ellipses (wider below their centre), mediastinum, aortic knob and the vertical landmarks."""
        patient, shape = self.patient, self.patient.shape
        self.ctr = float(ctr)
        heart_width = ctr * self.thoracic_width
        self.heart_right_width = patient.heart_right_fraction * heart_width
        self.heart_left_width = heart_width - self.heart_right_width
        self.heart_left_height = patient.heart_height * patient.box_height * math.sqrt(max(ctr, 0.3) / 0.44)
        self.heart_right_height = 0.75 * self.heart_left_height
        domes = [self.v_of_row(shape.rows[side][2]) for side in SIDES]
        self.heart_centre_v = min(domes) - 0.12 * self.heart_left_height
        self.dome_v = {"right": domes[0], "left": domes[1]}
        self.apex_v = self.v_of_row(min(shape.rows["right"][0], shape.rows["left"][0]))
        self.lung_height = self.patient.box_height
        self.carina_v = self.apex_v + patient.carina_level * self.lung_height
        self.mediastinum_right = patient.mediastinum[0] * self.thoracic_width
        self.mediastinum_left = patient.mediastinum[1] * self.thoracic_width
        knob_radius = patient.aortic_knob_radius
        self.aortic_knob = (
            self.mediastinum_left + 0.35 * knob_radius * self.thoracic_width,
            self.heart_centre_v - self.heart_left_height - 0.2 * knob_radius,
            knob_radius * self.thoracic_width,
        )

    def mediastinal_border(self, v: np.ndarray, side: str) -> np.ndarray:
        """Distance from the midline to the mediastinum / heart border at height ``v`` (normalised units)."""
        below_centre = v - self.heart_centre_v
        if side == "right":
            heart = self.heart_right_width * np.sqrt(
                np.clip(1 - np.minimum(below_centre, 0) ** 2 / self.heart_right_height**2, 0, None)
            )
            return np.maximum(heart, self.mediastinum_right)
        heart = self.heart_left_width * np.sqrt(
            np.clip(1 - np.minimum(below_centre, 0) ** 2 / self.heart_left_height**2, 0, None)
        )
        knob_u, knob_v, knob_radius = self.aortic_knob
        knob = knob_u + np.sqrt(np.clip(knob_radius**2 - (v - knob_v) ** 2, 0, None)) - knob_radius
        return np.maximum(np.maximum(heart, self.mediastinum_left), np.where(np.abs(v - knob_v) < knob_radius, knob, 0))

    def _heart_mask(self) -> np.ndarray:
        """The heart silhouette with a 1.5 px soft edge."""
        du, dv = self.u, self.v - self.heart_centre_v
        half_width = np.where(du < 0, self.heart_right_width, self.heart_left_width)
        half_height = np.where(du < 0, self.heart_right_height, self.heart_left_height)
        radius = np.sqrt((du / half_width) ** 2 + (np.minimum(dv, 0) / half_height) ** 2)
        return np.clip((1.0 - radius) * half_width / (1.5 * self.pixel), 0.0, 1.0)

    # -- lungs
    def sample_lung(self, side: str, canonical_row: np.ndarray, canonical_col: np.ndarray) -> np.ndarray:
        """The lung of ``side`` at canonical coordinates, medial border warped onto the drawn heart."""
        shape = self.patient.shape
        if side == "right":
            mask, lateral, medial, sign = shape.right, shape.lateral_right, shape.medial_right, -1
        else:
            mask, lateral, medial, sign = shape.left, shape.lateral_left, shape.medial_left, 1
        top, bottom, dome = shape.rows[side]
        last = self.canonical_size - 1
        rows = np.arange(self.canonical_size, dtype=np.float32)
        border = self.mediastinal_border(self.v_of_row(rows), side)
        target = shape.midline + sign * border / self.thoracic_width * last
        # near the apex the real mask keeps its own medial border (the superior mediastinum)
        blend = smoothstep((rows - top) / max(bottom - top, 1) / 0.2 - 0.6)
        target = np.where(np.isnan(medial), np.nan, medial + blend * (target - medial))
        span = target - lateral
        span = -sign * np.maximum(-sign * span, 1.0)  # a heart wider than the row: keep a sliver
        stretch = np.where(np.abs(medial - lateral) < 1.0, 1.0, (medial - lateral) / span)
        # below the top of the dome a row's medial edge is the diaphragm, not the heart: keep the dome's stretch
        stretch[dome + 1 :] = stretch[dome]
        row = np.clip(np.rint(canonical_row), 0, last).astype(np.int64)
        row_lateral, row_stretch = lateral[row], stretch[row]
        source_col = row_lateral + (canonical_col - row_lateral) * row_stretch
        source_col = np.where(np.isnan(source_col) | (canonical_row < 0) | (canonical_row > last), -10.0, source_col)
        return ndi.map_coordinates(mask, [canonical_row, source_col], order=1, cval=0.0, prefilter=False)

    def _draw_lungs(self) -> None:
        """Lung masks on the image grid, cut by the heart; the aerated parenchyma and the opacity regions."""
        patient = self.patient
        self.lung_box_slices = self.pixel_slices(
            self.canonical_left_u,
            self.canonical_left_u + self.thoracic_width,
            patient.box_top,
            patient.box_top + patient.box_height,
        )
        box = self.lung_box_slices
        self.lung = {}
        for side in SIDES:
            self.lung[side] = np.zeros_like(self.u)
            self.lung[side][box] = self.sample_lung(side, self.canonical_row[box], self.canonical_col[box])
        self.heart = self._heart_mask()
        for side in SIDES:
            self.lung[side] *= 1.0 - self.heart
        self.parenchyma = {side: mask.copy() for side, mask in self.lung.items()}  # pneumothorax shrinks these
        # each lung slightly dilated: opacities fill the lung up to its blurred margin (no dark outline)
        self.opacity_region = {
            side: np.clip(2.0 * ndi.gaussian_filter(mask, 1.0 * self.size_scale), 0, 1)
            for side, mask in self.lung.items()
        }
