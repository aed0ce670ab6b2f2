"""Normal anatomy layers of the phantom, as attenuation maps on the image grid (the mediastinum is about 1).

Each function takes the image's :class:`~bundle.data.embedded.geometry.ChestGeometry` (and the study's
generator where the layer has random detail) and returns a float32 map: the torso's soft tissue, posterior and
anterior ribs, clavicles, spine, shoulders, trachea and main bronchi, pulmonary vessel trees and hila. The
renderer (:mod:`bundle.data.embedded.render`) adds or subtracts them in a fixed order, which fixes the order
of the random draws.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from .drawing import cylinder_thickness, distance_to_segment, smooth_noise, smoothstep, splat_points
from .geometry import ChestGeometry, side_sign


def hilum_v(chest: ChestGeometry) -> float:
    """Height of the hila, where the vessel trees start."""
    return chest.apex_v + 0.45 * chest.lung_height


def torso(chest: ChestGeometry) -> np.ndarray:
    """Soft tissue: an elliptic torso section, wider at the shoulders, denser below the diaphragm."""
    u, v = chest.u, chest.v
    half_width = 0.5 * chest.thoracic_width * chest.patient.body_width_factor
    shoulder_v = chest.apex_v + 0.03
    half_width_at_v = half_width + (0.64 - half_width) * smoothstep((shoulder_v - v) / 0.14)
    neck = 0.5 * smoothstep((shoulder_v - 0.02 - v) / 0.1)  # the shoulders are thinner than the chest
    ratio = np.clip(np.abs(u) / half_width_at_v, 0, 1)
    thickness = (1 - ratio**2) ** 0.35 * (1 - neck * smoothstep((np.abs(u) - 0.1) / 0.1))
    abdomen = 0.15 * smoothstep((v - min(chest.dome_v.values())) / 0.06)
    return thickness * (0.92 + abdomen)


def ribs(chest: ChestGeometry, rng: np.random.Generator) -> np.ndarray:
    """Posterior ribs (arcs from the spine, falling at the lateral wall) and fainter anterior ribs."""
    u, v, patient = chest.u, chest.v, chest.patient
    lateral_fraction = np.abs(u) / (0.5 * chest.thoracic_width)  # 0 at the midline, 1 at the lateral wall
    origin_v = chest.apex_v - 0.1 * chest.lung_height
    span = 1.02 * chest.lung_height
    wobble = 0.06 * smooth_noise(rng, chest.size, 6)
    # posterior ribs: phase counts ribs down the chest; each arc drops towards the lateral wall
    drop = chest.lung_height * patient.rib_curve * (lateral_fraction - 0.3) ** 2
    depth = np.clip((v - origin_v - drop) / span, 0, None)
    phase = patient.rib_count * depth**0.82 + patient.rib_phase + wobble
    within = phase - np.floor(phase)
    rib_width = 0.4 + 0.06 * lateral_fraction
    inside = (within < rib_width) & (phase > 0.3) & (phase < patient.rib_count + 0.4)
    profile = np.where(inside, np.sin(np.pi * np.clip(within / rib_width, 0, 1)), 0.0)
    cortex = profile**0.3 * 0.6 + profile * 0.4  # dense cortical margins
    lateral = 1.0 - smoothstep((lateral_fraction - 1.0) / 0.12)
    medial = smoothstep((lateral_fraction - 0.07) / 0.1)
    below = 1.0 - 0.6 * smoothstep((v - min(chest.dome_v.values())) / 0.06)  # faint through the abdomen
    out = 0.085 * cortex * lateral * medial * below
    # anterior ribs: rising towards the lateral wall, fewer and fainter
    anterior_drop = chest.lung_height * 0.3 * (1.0 - lateral_fraction)
    anterior_depth = np.clip((v - origin_v + 0.05 * chest.lung_height - anterior_drop) / span, 0, None)
    anterior_phase = (patient.rib_count - 3) * anterior_depth**0.9 + patient.rib_phase + wobble
    anterior_within = anterior_phase - np.floor(anterior_phase)
    anterior_inside = (anterior_within < 0.35) & (anterior_phase > 0.5) & (anterior_phase < patient.rib_count - 3)
    anterior_profile = np.where(anterior_inside, np.sin(np.pi * np.clip(anterior_within / 0.35, 0, 1)), 0.0)
    return out + 0.03 * anterior_profile * smoothstep((lateral_fraction - 0.4) / 0.2) * lateral


def clavicles(chest: ChestGeometry) -> np.ndarray:
    """Both clavicles: S-curved bars rising from the sternum to the shoulders."""
    level = chest.apex_v + chest.patient.clavicle_level

    def draw(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        lateral_fraction = np.abs(u) / (0.5 * chest.thoracic_width)
        along = np.clip((lateral_fraction - 0.08) / 0.9, 0, 1)
        centre = level + 0.02 - 0.1 * along + 0.02 * np.sin(2 * np.pi * along)
        half_thickness = 0.012 + 0.006 * (1 - along) + 0.004 * along**4
        profile = cylinder_thickness(v - centre, half_thickness)
        ends = smoothstep((lateral_fraction - 0.07) / 0.05) * (1 - smoothstep((lateral_fraction - 1.0) / 0.06))
        return 0.22 * (profile**0.4 * 0.6 + profile * 0.4) * ends

    return chest.evaluate_in_box(draw, (-0.5, 0.5, level - 0.12, level + 0.06))


def spine(chest: ChestGeometry) -> np.ndarray:
    """Thoracic vertebrae: bodies with disc spaces and pedicle rings, faint behind the heart."""
    half_width = chest.patient.spine_width * chest.thoracic_width

    def draw(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        vertebral_body = cylinder_thickness(u, half_width)
        period = chest.lung_height / 11.5
        phase = (v - chest.apex_v) / period
        within = phase - np.floor(phase)
        disc = 1.0 - 0.5 * np.exp(-(((within - 0.5) / 0.07) ** 2))
        pedicles = np.zeros_like(u)
        for sign in (-1, 1):
            distance = np.hypot((u - sign * 0.7 * half_width) / (0.2 * half_width), (within - 0.3) / 0.18)
            pedicles += np.clip(1 - np.abs(distance - 0.8) / 0.3, 0, 1)
        return (0.07 * vertebral_body * disc + 0.05 * pedicles * vertebral_body) * smoothstep(
            (v - chest.apex_v + 0.12) / 0.05
        )

    return chest.evaluate_in_box(draw, (-half_width, half_width, -0.2, 1.2))


def shoulders(chest: ChestGeometry) -> np.ndarray:
    """Humeral heads and shafts at the upper corners, scapular necks."""
    half_width = 0.5 * chest.thoracic_width * chest.patient.body_width_factor

    def draw(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        out = np.zeros_like(u)
        for sign in (-1, 1):
            head_u, head_v, head_radius = sign * (half_width + 0.05), chest.apex_v - 0.05, 0.075
            head = cylinder_thickness(np.hypot(u - head_u, v - head_v), head_radius)
            out += 0.2 * (head**0.3 * 0.5 + head * 0.5)
            shaft_axis = distance_to_segment(
                u, v, (head_u + sign * 0.02, head_v), (sign * (half_width + 0.12), head_v + 0.35)
            )
            shaft = cylinder_thickness(shaft_axis, 0.04)
            out += 0.2 * (shaft**0.3 * 0.6 + shaft * 0.4)
            neck = distance_to_segment(
                u, v, (head_u - sign * 0.04, head_v + 0.03), (sign * half_width * 0.8, head_v + 0.22)
            )
            out += 0.05 * cylinder_thickness(neck, 0.025)
        return out

    return chest.evaluate_in_box(draw, (-0.7, 0.7, -0.2, chest.apex_v + 0.35))


def airways(chest: ChestGeometry) -> np.ndarray:
    """Trachea and main bronchi (air: subtracted from the mediastinum's density)."""
    carina_v = chest.carina_v

    def draw(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        tracheal_radius = 0.032 * chest.thoracic_width
        trachea = cylinder_thickness(distance_to_segment(u, v, (0.0, -0.05), (0.0, carina_v)), tracheal_radius)
        length = 0.09 * chest.lung_height
        bronchi = np.zeros_like(u)
        for sign, angle in ((-1, 30.0), (1, 42.0)):
            radians = math.radians(angle)
            end = (sign * length * math.sin(radians), carina_v + length * math.cos(radians))
            bronchus = cylinder_thickness(distance_to_segment(u, v, (0.0, carina_v), end), 0.7 * tracheal_radius)
            bronchi = np.maximum(bronchi, bronchus)
        return 0.2 * np.maximum(trachea, bronchi)

    return chest.evaluate_in_box(draw, (-0.12, 0.12, -0.1, carina_v + 0.12 * chest.lung_height))


def vessels(chest: ChestGeometry, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pulmonary vessel trees from the hila: (thick vessels, thin vessels), each already blurred.

    Monopodial branching: each segment bends a little, then continues (slightly narrower) and sends off
    a thinner side branch; more roots point to the lower zones, where the vessels are larger.
    """
    size = chest.size
    thick_points, thick_weights, thin_points, thin_weights = [], [], [], []
    v_hilum = hilum_v(chest)
    for side in ("right", "left"):
        sign = side_sign(side)
        start = np.array([sign * float(chest.mediastinal_border(np.float32(v_hilum), side)) * 0.95, v_hilum])
        angles = np.array([-70.0, -40.0, -10.0, 20.0, 45.0, 70.0]) + rng.uniform(-12, 12, 6)
        roots = len(angles)
        position = np.repeat(start[None], roots, axis=0) + rng.normal(0, 0.01, (roots, 2))
        heading = np.radians(angles)
        length = rng.uniform(0.075, 0.095, roots) * chest.thoracic_width
        width = np.full(roots, 1.0)
        for level in range(6):
            heading = heading + np.radians(rng.normal(0, 8, len(heading)))
            direction = np.stack([sign * np.cos(heading), np.sin(heading)], axis=1)
            end = position + direction * length[:, None]
            steps = np.linspace(0.0, 1.0, max(3, int(length.max() * size / 0.5)))
            points = (position[:, None, :] + steps[None, :, None] * (end - position)[:, None, :]).reshape(-1, 2)
            # line density ~ vessel diameter in pixels: thinner (partial volume) on smaller images
            weights = np.repeat(width * length / len(steps) * size * chest.size_scale, len(steps))
            (thick_points if level < 2 else thin_points).append(points)
            (thick_weights if level < 2 else thin_weights).append(weights)
            turn = rng.choice([-1.0, 1.0], len(heading))
            main = heading + np.radians(rng.normal(0, 6, len(heading)))
            branch = heading + turn * np.radians(rng.uniform(25, 50, len(heading)))
            heading = np.concatenate([main, branch])
            position = np.concatenate([end, end])
            length = np.concatenate(
                [length * rng.uniform(0.75, 0.9, len(length)), length * rng.uniform(0.55, 0.75, len(length))]
            )
            width = np.concatenate([width * 0.8, width * 0.55])
    out = []
    for points, weights, sigma in ((thick_points, thick_weights, 1.2), (thin_points, thin_weights, 0.7)):
        pixels = chest.frame.to_pixels(np.concatenate(points))
        canvas = splat_points(pixels, np.concatenate(weights), size)
        out.append(ndi.gaussian_filter(canvas, max(0.5, sigma * chest.size_scale)))
    return out[0], out[1]


def hila(chest: ChestGeometry) -> np.ndarray:
    """Hilar shadows: the pulmonary arteries where the vessel trees start."""
    v_hilum = hilum_v(chest)
    out = np.zeros_like(chest.u)
    for side in ("right", "left"):
        sign = side_sign(side)
        hilum_u = sign * (float(chest.mediastinal_border(np.float32(v_hilum), side)) + 0.015 * chest.thoracic_width)
        out += np.exp(
            -0.5 * (((chest.u - hilum_u) / (0.03 * chest.thoracic_width)) ** 2 + ((chest.v - v_hilum) / 0.05) ** 2)
        )
    return 0.12 * out
