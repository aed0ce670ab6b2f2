"""The lung and pleural findings of the phantom, each drawn with the sign a reader looks for.

- Pleural Effusion: dependent basal opacity with a meniscus, blunted costophrenic angle (side, severity);
- Pneumothorax: lucent rim without lung markings outside a visible visceral pleural line (side, size);
- Consolidation: dense patchy opacity in one lung zone, air bronchograms drawn by the renderer (side, zone);
- Edema: bilateral perihilar haze, reticular pattern and Kerley B lines (severity).

Each function takes the image's :class:`~bundle.data.embedded.geometry.ChestGeometry`, the study's generator
and the finding's completed attributes, and returns its maps on the image grid with the finding's ground-truth
entry (the attributes plus what was measured on the drawing). A finding marked ``uncertain`` is drawn mildly.
Cardiomegaly is drawn by the geometry itself (the heart width) and support devices by
:mod:`bundle.data.embedded.devices`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .drawing import draw_polylines, resample_polyline, smooth_noise, smoothstep
from .geometry import ChestGeometry, side_sign
from .spec import EDEMA_HAZE, EFFUSION_LEVELS, PNEUMOTHORAX_COLLAPSE_SCALE

#: Kerley B lines per lung at each edema severity.
KERLEY_LINES = {"mild": 5, "moderate": 8, "severe": 11}


def pleural_effusion(chest: ChestGeometry, rng: np.random.Generator, attrs: dict) -> tuple[np.ndarray, dict[str, Any]]:
    """Fluid density (0..1) at the base of one or both lungs, its surface rising laterally as a meniscus."""
    sides = ("right", "left") if attrs["side"] == "bilateral" else (attrs["side"],)
    severity = "small" if attrs["uncertain"] else attrs["severity"]
    fluid = np.zeros_like(chest.u)
    measured = {}
    for side in sides:
        sign = side_sign(side)
        top, bottom, _ = chest.side_levels(side)
        level = rng.uniform(*EFFUSION_LEVELS[severity])
        level_v = bottom - level * (bottom - top)
        lateral_u = abs(chest.lateral_border_u(side, level_v))
        lateral_fraction = np.clip(sign * chest.u / max(lateral_u, 1e-3), 0, 1.2)
        meniscus = rng.uniform(0.1, 0.16) * (bottom - top) * (0.6 if severity == "small" else 1.0)
        surface = level_v - meniscus * lateral_fraction**2.5
        # density rises below the meniscus (the fluid layer thins towards its upper edge)
        side_fluid = smoothstep((chest.v - surface) / (0.05 * (bottom - top))) * chest.opacity_region[side]
        fluid += side_fluid
        area = float(chest.lung[side].sum())
        measured[side] = {
            "level_fraction": round(level, 3),
            "area_fraction": round(float((side_fluid * chest.lung[side]).sum()) / max(area, 1.0), 3),
        }
    return np.clip(fluid, 0, 1), {**attrs, "severity_drawn": severity, "measured": measured}


def pneumothorax(
    chest: ChestGeometry, rng: np.random.Generator, attrs: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Returns (pleural air, visceral pleural line, the collapsed lung's parenchyma, truth entry).

    The lung shrinks towards an anchor at its lower medial border by the collapse scale; the air between the
    collapsed lung and the chest wall carries no lung markings.
    """
    side = attrs["side"]
    key = "uncertain" if attrs["uncertain"] else attrs["severity"]
    collapse_scale = rng.uniform(*PNEUMOTHORAX_COLLAPSE_SCALE[key])
    shape = chest.patient.shape
    top, bottom, _ = shape.rows[side]
    anchor_row = top + 0.88 * (bottom - top)
    anchor_v = chest.v_of_row(anchor_row)
    sign = side_sign(side)
    anchor_col = shape.midline + sign * chest.mediastinal_border(np.float32(anchor_v), side) / chest.thoracic_width * (
        chest.canonical_size - 1
    )
    box = chest.lung_box_slices
    canonical_row = anchor_row + (chest.canonical_row[box] - anchor_row) / collapse_scale
    canonical_col = anchor_col + (chest.canonical_col[box] - anchor_col) / collapse_scale
    collapsed = np.zeros_like(chest.u)
    collapsed[box] = chest.sample_lung(side, canonical_row, canonical_col)
    collapsed *= chest.lung[side]
    air = np.clip(chest.lung[side] - collapsed, 0, 1)
    near_air = ndi.gaussian_filter(air, 1.2 * chest.size_scale) > 0.08
    line = 4.0 * collapsed * (1.0 - collapsed) * near_air
    line = ndi.gaussian_filter(line, 0.5 * chest.size_scale)
    area = float(chest.lung[side].sum())
    measured = {"collapse_scale": round(collapse_scale, 3), "area_fraction": round(float(air.sum()) / area, 3)}
    return air, line, collapsed, {**attrs, "measured": measured}


def consolidation(chest: ChestGeometry, rng: np.random.Generator, attrs: dict) -> tuple[np.ndarray, dict[str, Any]]:
    """Patchy air-space opacity filling part of one lung zone (upper: sharp fissural lower border)."""
    side, zone = attrs["side"], attrs["zone"]
    sign = side_sign(side)
    top, _, dome = chest.side_levels(side)
    height = dome - top  # the lung above the diaphragm dome
    extent = rng.uniform(0.4, 0.55) * (0.7 if attrs["uncertain"] else 1.0)
    boundary = 0.03 * smooth_noise(rng, chest.size, 5)
    if zone == "upper":
        edge_v = top + extent * height + boundary
        sharpness = 1.5 if side == "right" else 4.0  # the minor fissure bounds a right upper lobe opacity
        in_zone = smoothstep((edge_v - chest.v) / (sharpness * chest.pixel * 4) + 0.5)
    else:
        edge_v = dome - extent * height + boundary
        in_zone = smoothstep((chest.v - edge_v) / (10 * chest.pixel) + 0.5)
    centre_v = top + (0.25 if zone == "upper" else 0.8) * height
    lateral_u = chest.lateral_border_u(side, centre_v)
    medial_u = sign * float(chest.mediastinal_border(np.float32(centre_v), side))
    centre_u = medial_u + rng.uniform(0.35, 0.65) * (lateral_u - medial_u)
    half_width = rng.uniform(0.6, 0.9) * abs(lateral_u - medial_u)
    across = smoothstep((1.0 - np.abs(chest.u - centre_u) / half_width) * 2.5)
    patchy = np.clip(0.9 + 0.3 * smooth_noise(rng, chest.size, 20), 0.45, 1)
    opacity = ndi.gaussian_filter(in_zone * across * patchy, 1.0 * chest.size_scale) * chest.opacity_region[side]
    density = rng.uniform(0.5, 0.6) if attrs["uncertain"] else rng.uniform(0.85, 1.0)
    area = float(chest.lung[side].sum())
    measured = {
        "area_fraction": round(float((opacity > 0.5).sum()) / area, 3),
        "density": round(density, 3),
        "centre_uv": [round(centre_u, 4), round(centre_v, 4)],
    }
    return opacity * density, {**attrs, "measured": measured}


def edema(chest: ChestGeometry, rng: np.random.Generator, attrs: dict) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Returns (perihilar bat-wing haze with a reticular interstitial pattern, Kerley B lines, truth entry)."""
    severity = attrs["severity"]
    amplitude = EDEMA_HAZE[severity] * (0.7 if attrs["uncertain"] else 1.0)
    haze = np.zeros_like(chest.u)
    v_hilum = chest.apex_v + 0.5 * chest.lung_height
    noise = 0.75 + 0.3 * smooth_noise(rng, chest.size, 12)
    points, weights = [], []
    count = KERLEY_LINES[severity]
    for side in ("right", "left"):
        sign = side_sign(side)
        perihilar_u = sign * (float(chest.mediastinal_border(np.float32(v_hilum), side)) + 0.05 * chest.thoracic_width)
        perihilar = np.exp(
            -0.5
            * (
                ((chest.u - perihilar_u) / (0.2 * chest.thoracic_width)) ** 2
                + ((chest.v - v_hilum) / (0.28 * chest.lung_height)) ** 2
            )
        )
        haze += amplitude * np.clip(1.3 * perihilar, 0, 1) * noise * chest.opacity_region[side]
        top, bottom, _ = chest.side_levels(side)
        # Kerley B lines: short horizontal lines at the lateral lung base, perpendicular to the pleura
        for line_v in rng.uniform(bottom - 0.35 * (bottom - top), bottom - 0.05 * (bottom - top), count):
            lateral_u = chest.lateral_border_u(side, float(line_v))
            length = rng.uniform(0.02, 0.04)
            segment = np.array([[lateral_u - sign * 0.004, line_v], [lateral_u - sign * (0.004 + length), line_v]])
            pixels, step = resample_polyline(chest.frame.to_pixels(segment))
            points.append(pixels)
            weights.append(np.full(len(pixels), step * min(1.0, 2 * chest.size_scale)))
    reticular = np.clip(smooth_noise(rng, chest.size, 40), 0, None)
    haze += 0.25 * amplitude * reticular * (chest.opacity_region["right"] + chest.opacity_region["left"])
    sigma = max(0.5, 0.6 * chest.size_scale)
    lines = draw_polylines(points, weights, chest.size, sigma)
    lines *= ndi.gaussian_filter(chest.lung["right"] + chest.lung["left"], 0.5)
    measured = {"haze_amplitude": round(amplitude, 3), "kerley_lines": 2 * count}
    return np.clip(haze, 0, 1), lines, {**attrs, "measured": measured}
