"""Support devices of the phantom: tubes, lines, a pacemaker and sternotomy wires, with their tip positions.

Endotracheal tube (tip above the carina), nasogastric tube (tip in the stomach), right internal jugular
central line and left arm PICC (tips in the lower SVC), pacemaker (generator and two leads into the right
atrium and ventricle), sternotomy wires. Curves are Bezier paths in the patient frame, resampled and splatted
as thin lines: radio-opaque wires and markers dense, plastic tube walls fainter.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .drawing import bezier_curve, resample_polyline, splat_points
from .geometry import ChestGeometry


class _DeviceLines:
    """Resampled line points and weights of the wires (radio-opaque) and the plastic tube walls."""

    def __init__(self, chest: ChestGeometry) -> None:
        self.chest = chest
        self.wire_points: list[np.ndarray] = []
        self.wire_weights: list[np.ndarray] = []
        self.plastic_points: list[np.ndarray] = []
        self.plastic_weights: list[np.ndarray] = []

    def add_curve(
        self, control_points: list[tuple[float, float]], amplitude: float, plastic: bool = False, offset: float = 0.0
    ) -> np.ndarray:
        """Add the Bezier curve through ``control_points`` (u, v), shifted sideways by ``offset``; returns its
        end point (u, v)."""
        curve = bezier_curve(np.asarray(control_points, dtype=np.float64), 200)
        if offset:
            tangent = np.gradient(curve, axis=0)
            normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
            normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
            curve = curve + offset * normal
        self.add_pixels(self.chest.frame.to_pixels(curve), amplitude, plastic)
        return curve[-1]

    def add_pixels(self, curve: np.ndarray, amplitude: float, plastic: bool = False) -> None:
        """Add a curve given in image pixels."""
        points, step = resample_polyline(curve)
        (self.plastic_points if plastic else self.wire_points).append(points)
        (self.plastic_weights if plastic else self.wire_weights).append(np.full(len(points), amplitude * step))

    def draw(self) -> np.ndarray:
        """Wires and tube walls blurred to their widths, as one density map."""
        chest = self.chest
        out = np.zeros_like(chest.u)
        for points, weights, amplitude, sigma in (
            (self.wire_points, self.wire_weights, 0.9, 0.55),
            (self.plastic_points, self.plastic_weights, 0.45, 0.6),
        ):
            if points:
                width = max(0.5, sigma * chest.size_scale)
                canvas = splat_points(np.concatenate(points), np.concatenate(weights), chest.size)
                out += amplitude * math.sqrt(2 * math.pi) * width * ndi.gaussian_filter(canvas, width)
        return out


def support_devices(
    chest: ChestGeometry, rng: np.random.Generator, attrs: dict
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Returns (wires / tubes density, solid metal density, truth entry with each device's tip positions)."""
    lines = _DeviceLines(chest)
    solid = np.zeros_like(chest.u)
    tips: dict[str, dict[str, Any]] = {}
    carina_v, apex_v, heart_centre_v = chest.carina_v, chest.apex_v, chest.heart_centre_v
    for device in attrs["devices"]:
        if device == "endotracheal tube":
            tip_v = carina_v - rng.uniform(0.03, 0.07)
            control = [(0.0, -0.02), (rng.uniform(-0.01, 0.01), 0.5 * tip_v), (0.0, tip_v)]
            radius = 0.011
            for offset in (-radius, radius):  # the tube walls
                lines.add_curve(control, 0.5, plastic=True, offset=offset)
            lines.add_curve(control, 1.0, offset=radius * 0.6)  # the radio-opaque marker stripe
            tips[device] = {"tip_uv": [0.0, round(tip_v, 4)], "tip_above_carina": round(carina_v - tip_v, 4)}
        elif device == "nasogastric tube":
            stomach_v = chest.dome_v["left"] + rng.uniform(0.06, 0.1)
            control = [
                (0.01, -0.02),
                (0.02, carina_v),
                (0.005, chest.dome_v["left"] + 0.02),
                (0.1, stomach_v + 0.03),
                (rng.uniform(0.12, 0.18), stomach_v),
            ]
            tip = lines.add_curve(control, 1.1)
            tips[device] = {
                "tip_uv": [round(float(tip[0]), 4), round(float(tip[1]), 4)],
                "tip_below_diaphragm": round(float(tip[1]) - chest.dome_v["left"], 4),
            }
        elif device in ("central line", "picc"):
            tip = (-rng.uniform(0.015, 0.03), carina_v + rng.uniform(0.02, 0.07))
            if device == "central line":  # right internal jugular
                control = [(-0.1, -0.02), (-0.06, apex_v), (-0.035, carina_v - 0.06), tip]
            else:  # left arm PICC through the axillary / subclavian veins
                control = [
                    (0.5, apex_v + 0.12),
                    (0.3, apex_v - 0.02),
                    (0.1, apex_v + 0.02),
                    (0.0, carina_v - 0.05),
                    tip,
                ]
            lines.add_curve(control, 1.0)
            tips[device] = {"tip_uv": [round(tip[0], 4), round(tip[1], 4)]}
        elif device == "pacemaker":
            generator_u, generator_v = rng.uniform(0.17, 0.25), apex_v + rng.uniform(0.04, 0.08)
            half_width, half_height = 0.045, 0.033
            distance = (np.abs(chest.u - generator_u) / half_width) ** 4 + (
                np.abs(chest.v - generator_v) / half_height
            ) ** 4
            solid += 2.2 * np.clip((1 - distance) * 6, 0, 1)
            right_atrium = (-chest.heart_right_width * 0.5, heart_centre_v - 0.6 * chest.heart_right_height)
            right_ventricle = (chest.heart_left_width * 0.55, heart_centre_v + 0.02)
            lines.add_curve(
                [
                    (generator_u - 0.03, generator_v),
                    (0.05, apex_v - 0.01),
                    (-0.03, carina_v),
                    (-0.05, right_atrium[1] + 0.05),
                    right_atrium,
                ],
                1.3,
            )
            lines.add_curve(
                [
                    (generator_u - 0.03, generator_v + 0.01),
                    (0.06, apex_v),
                    (-0.02, carina_v + 0.03),
                    (-0.02, heart_centre_v + 0.04),
                    right_ventricle,
                ],
                1.3,
            )
            tips[device] = {
                "generator_uv": [round(generator_u, 4), round(generator_v, 4)],
                "tip_uv": [
                    [round(right_atrium[0], 4), round(right_atrium[1], 4)],
                    [round(right_ventricle[0], 4), round(right_ventricle[1], 4)],
                ],
            }
        elif device == "sternotomy wires":  # twisted loops over the sternum
            count = int(rng.integers(5, 8))
            levels = np.linspace(carina_v - 0.03, heart_centre_v - 0.02, count)
            angle = np.linspace(0, 2 * np.pi, 40)
            for level in levels:
                centre_u = rng.normal(0.0, 0.006)
                loop = np.stack([centre_u + 0.014 * np.cos(angle), level + 0.006 * np.sin(angle)], axis=1)
                lines.add_pixels(chest.frame.to_pixels(loop), 1.4)
            tips[device] = {"tip_uv": [[0.0, round(float(levels[0]), 4)], [0.0, round(float(levels[-1]), 4)]]}
    out = lines.draw()
    for tip in tips.values():  # tip positions also in image pixels
        tip_uv = np.asarray(tip["tip_uv"], dtype=np.float64).reshape(-1, 2)
        tip["tip_px"] = np.round(chest.frame.to_pixels(tip_uv), 1).tolist()
    return out, solid, {**attrs, "measured": tips}
