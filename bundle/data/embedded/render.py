"""Render one phantom radiograph: anatomy and findings composed into a density map, then the detector.

:func:`render_phantom` completes the finding specification, places the chest geometry, draws the anatomy
layers (:mod:`~bundle.data.embedded.anatomy`) and the findings (:mod:`~bundle.data.embedded.findings`,
:mod:`~bundle.data.embedded.devices`), sums their attenuation and exposes it: exponential detector response,
exposure window, heel effect, gamma, quantum noise and blur. The steps draw from one generator in a fixed
order, so a seed gives the same image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from . import anatomy, findings
from .devices import support_devices
from .drawing import blur_large, smooth_noise, smoothstep
from .geometry import ChestGeometry, cardiothoracic_ratio
from .patient import Patient, sample_patient
from .spec import complete_spec

#: How much edema blurs the pulmonary vessels (indistinct vessels), per severity.
EDEMA_VESSEL_BLUR = {"mild": 0.5, "moderate": 0.7, "severe": 0.85}


@dataclass
class _FindingLayers:
    """The findings' maps on the image grid (zero where a finding is absent) and their truth entries."""

    lung_opacity: np.ndarray  # fluid / haze / consolidation replacing lung air (0..1)
    interstitial_lines: np.ndarray  # Kerley B lines
    pleural_air: np.ndarray
    pleural_line: np.ndarray
    consolidation: np.ndarray  # where air bronchograms show
    wires: np.ndarray
    metal: np.ndarray
    vessel_blur: float = 0.0
    truth: dict[str, Any] = field(default_factory=dict)


def _draw_findings(chest: ChestGeometry, rng: np.random.Generator, spec: dict[str, dict]) -> _FindingLayers:
    """Every finding of ``spec`` except cardiomegaly (drawn by the heart width); a pneumothorax also shrinks
    ``chest.parenchyma`` on its side."""
    zeros = np.zeros_like(chest.u)
    layers = _FindingLayers(*(zeros,) * 7)
    if "Pneumothorax" in spec:
        side = spec["Pneumothorax"]["side"]
        layers.pleural_air, layers.pleural_line, chest.parenchyma[side], truth = findings.pneumothorax(
            chest, rng, spec["Pneumothorax"]
        )
        layers.truth["Pneumothorax"] = truth
    if "Edema" in spec:
        layers.lung_opacity, layers.interstitial_lines, layers.truth["Edema"] = findings.edema(
            chest, rng, spec["Edema"]
        )
        layers.vessel_blur = EDEMA_VESSEL_BLUR[spec["Edema"]["severity"]]
    if "Consolidation" in spec:
        layers.consolidation, layers.truth["Consolidation"] = findings.consolidation(chest, rng, spec["Consolidation"])
        layers.lung_opacity = np.maximum(layers.lung_opacity, layers.consolidation)
    if "Pleural Effusion" in spec:
        fluid, layers.truth["Pleural Effusion"] = findings.pleural_effusion(chest, rng, spec["Pleural Effusion"])
        layers.lung_opacity = np.maximum(layers.lung_opacity, fluid)
    if "Support Devices" in spec:
        layers.wires, layers.metal, layers.truth["Support Devices"] = support_devices(
            chest, rng, spec["Support Devices"]
        )
    return layers


def _density(chest: ChestGeometry, rng: np.random.Generator, spec: dict[str, dict]) -> tuple[np.ndarray, dict]:
    """The attenuation map of the whole chest and the findings' truth entries."""
    patient, size, scale = chest.patient, chest.size, chest.size_scale
    lungs = np.clip(chest.lung["right"] + chest.lung["left"], 0, 1)
    soft_lungs = ndi.gaussian_filter(lungs, 0.7 * scale)
    # lungs are thinnest at their margins and overlap the domes / soft tissue at apices and bases
    lung_depth = soft_lungs * (0.7 + 0.3 * np.clip(blur_large(lungs, 10 * scale), 0, 1))
    # soft tissue over the lower and lateral lungs (breasts, pectorals, posterior recesses)
    lower = smoothstep((chest.v - chest.apex_v - 0.55 * chest.lung_height) / (0.45 * chest.lung_height))
    lateral = smoothstep((np.abs(chest.u) / (0.5 * chest.thoracic_width) - 0.55) / 0.45)
    lung_depth *= 1.0 - patient.soft_tissue * lower * (0.5 + 0.5 * lateral)
    vessels_thick, vessels_thin = anatomy.vessels(chest, rng)
    found = _draw_findings(chest, rng, spec)
    opacity = found.lung_opacity
    parenchyma = ndi.gaussian_filter(np.clip(chest.parenchyma["right"] + chest.parenchyma["left"], 0, 1), 0.6 * scale)

    vessels = 0.5 * vessels_thick + 0.35 * vessels_thin + anatomy.hila(chest)
    if found.vessel_blur:
        blur = found.vessel_blur
        vessels = (1 - blur) * vessels + blur * ndi.gaussian_filter(vessels, 1.5 * scale)
    texture = 0.03 * smooth_noise(rng, size, 28) + 0.02 * ndi.gaussian_filter(
        rng.standard_normal((size, size)).astype(np.float32), 0.8 * scale
    )
    heart = ndi.gaussian_filter(chest.heart, 1.0 * scale)
    heart *= 1 - smoothstep((chest.v - chest.dome_v["left"]) / 0.05)
    thin_vessels = vessels_thin / (vessels_thin.max() + 1e-6)

    density = anatomy.torso(chest)
    density -= 0.56 * lung_depth * (1 - opacity)
    density -= 0.08 * found.pleural_air * lung_depth
    density += (vessels * (1 - opacity) + texture * (1 - 0.5 * opacity)) * parenchyma
    density -= 0.12 * found.consolidation * thin_vessels * parenchyma  # air bronchograms
    density += 0.12 * found.interstitial_lines + 0.14 * found.pleural_line
    density += 0.06 * heart
    density -= anatomy.airways(chest) * (1 - lungs)
    if patient.gastric_bubble:
        width, dome_left = chest.thoracic_width, chest.dome_v["left"]
        bubble = ((chest.u - 0.22 * width) / (0.07 * width)) ** 2 + ((chest.v - dome_left - 0.045) / 0.022) ** 2
        density -= 0.25 * np.sqrt(np.clip(1 - bubble, 0, 1)) * (chest.v > dome_left + 0.015)
    density += anatomy.ribs(chest, rng) + anatomy.clavicles(chest) + anatomy.spine(chest) + anatomy.shoulders(chest)
    density += found.wires + found.metal
    return density, found.truth


def _expose(density: np.ndarray, chest: ChestGeometry, rng: np.random.Generator) -> np.ndarray:
    """Detector: exponential response, exposure window, heel effect, gamma, quantum noise, blur -> uint8."""
    patient, size = chest.patient, chest.size
    exposure = patient.exposure
    black, white = (1 - math.exp(-exposure * w) for w in patient.window)
    image = (1.0 - np.exp(-exposure * np.clip(density, 0, None)) - black) / (white - black)
    image *= 1.0 + 0.05 * (chest.v - 0.5)  # heel effect
    image = np.clip(image, 0, 1) ** patient.gamma
    image += patient.noise * rng.standard_normal((size, size)).astype(np.float32) * np.sqrt(np.clip(image, 0.05, 1))
    image = ndi.gaussian_filter(image, patient.blur * chest.size_scale)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_phantom(
    spec: Mapping[str, Any] | Iterable[str] | None,
    rng: np.random.Generator,
    image_size: int = 256,
    patient: Patient | None = None,
    use_real_masks: bool | str = "auto",
    return_masks: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render one frontal chest radiograph (uint8, ``image_size`` square) and its measured ground truth.

    ``spec`` is a finding specification (see :func:`~bundle.data.embedded.spec.complete_spec`); ``patient``
    fixes the anatomy (a new one is drawn from ``rng`` otherwise, with real or procedural lungs per
    ``use_real_masks``). The truth holds the cardiothoracic ratio (``ctr``), heart / thorax widths, the lung
    outline used and, under ``findings``, each drawn finding's attributes and measurements. ``return_masks``
    adds the lung and heart masks (float, image grid) under ``masks`` for checks. A finding marked
    ``uncertain`` is drawn mildly (borderline CTR 0.50-0.54, small effusion, tiny pneumothorax, faint smaller
    consolidation, milder edema).
    """
    if image_size < 16 or image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 and at least 16, not {image_size}")
    spec = complete_spec(spec, rng)
    if patient is None:
        patient = sample_patient(rng, use_real_masks)
    chest = ChestGeometry(image_size, patient, cardiothoracic_ratio(spec.get("Cardiomegaly"), patient, rng))
    finding_truth: dict[str, Any] = {}
    truth: dict[str, Any] = {"findings": finding_truth}
    density, drawn = _density(chest, rng, spec)
    finding_truth.update(drawn)
    image = _expose(density, chest, rng)
    truth.update(
        {
            "ctr": round(chest.ctr, 4),
            "heart_width_px": round((chest.heart_right_width + chest.heart_left_width) * image_size, 2),
            "thorax_width_px": round(chest.thoracic_width * image_size, 2),
            "rotation_deg": round(patient.rotation_deg, 2),
            "lung_shape": patient.shape.name,
        }
    )
    if "Cardiomegaly" in spec:
        finding_truth["Cardiomegaly"] = {**spec["Cardiomegaly"], "measured": {"ctr": round(chest.ctr, 4)}}
    truth["spec"] = spec
    if return_masks:
        truth["masks"] = {"right_lung": chest.lung["right"], "left_lung": chest.lung["left"], "heart": chest.heart}
    return image, truth
