"""Synthetic frontal chest radiographs whose findings have measurable signs (the embedded dataset's images).

One call of :func:`render_phantom` draws a PA/AP-like chest radiograph from a *finding specification* and a
numpy Generator: body soft tissue, two lung fields, mediastinum and heart, diaphragm domes, ribs, clavicles,
spine, trachea, pulmonary vessels; patient-to-patient variation in size, position, rotation, exposure and
noise. Each finding is drawn with the sign a reader would look for and returned with its measured value:

- Cardiomegaly: cardiothoracic ratio (heart width / internal thoracic width) above ~0.55 (normal 0.40-0.48);
- Pleural Effusion: dependent basal opacity with a meniscus, blunted costophrenic angle (side, severity);
- Pneumothorax: lucent rim without lung markings outside a visible visceral pleural line (side, size);
- Consolidation: dense patchy opacity with air bronchograms in one lung zone (side, upper / lower zone);
- Edema: bilateral perihilar haze, indistinct vessels and Kerley B lines (severity);
- Support Devices: endotracheal tube, nasogastric tube, central line, PICC, pacemaker with leads (tips).

Lung fields take their outline from real lung masks drawn on radiographs (torchxrayvision's installed
``semantic_masks_v7labs_lungs.zip``, read at run time and never copied) or from a procedural model when the
package is absent. The medial lung borders are then warped row by row onto the drawn mediastinum and heart,
so the cardiothoracic ratio is exactly the one asked for. Everything is vectorised numpy / scipy.ndimage.

Image convention: patient's right on the image left. ``u`` is the horizontal patient-frame coordinate as a
fraction of the image width (0 at the patient midline, negative towards the patient's right), ``v`` the
vertical one (0 at the top); "side sign" ``s`` is -1 for the right lung, +1 for the left.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .errors import DataError
from .labels import DEFAULT_CLASSES

#: Findings the phantom can draw (the DEFAULT_CLASSES without "No Finding").
PHANTOM_FINDINGS: tuple[str, ...] = tuple(name for name in DEFAULT_CLASSES if name != "No Finding")
DEVICE_TYPES: tuple[str, ...] = (
    "endotracheal tube", "nasogastric tube", "central line", "picc", "pacemaker", "sternotomy wires")

#: Allowed attribute values per finding (first = most common default where a choice is random).
FINDING_ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    "Cardiomegaly": {"severity": ("mild", "moderate", "severe")},
    "Pleural Effusion": {"side": ("right", "left", "bilateral"), "severity": ("small", "moderate", "large")},
    "Pneumothorax": {"side": ("right", "left"), "severity": ("small", "large")},
    "Consolidation": {"side": ("right", "left"), "zone": ("lower", "upper")},
    "Edema": {"severity": ("mild", "moderate", "severe")},
    "Support Devices": {},
}
_ATTRIBUTE_WEIGHTS: dict[str, dict[str, tuple[float, ...]]] = {
    "Cardiomegaly": {"severity": (0.5, 0.35, 0.15)},
    "Pleural Effusion": {"side": (0.35, 0.3, 0.35), "severity": (0.5, 0.35, 0.15)},
    "Pneumothorax": {"side": (0.5, 0.5), "severity": (0.65, 0.35)},
    "Consolidation": {"side": (0.55, 0.45), "zone": (0.65, 0.35)},
    "Edema": {"severity": (0.45, 0.4, 0.15)},
}
_DEVICE_WEIGHTS = (0.25, 0.15, 0.22, 0.14, 0.14, 0.1)

_CTR_RANGES = {"normal": (0.40, 0.48), "uncertain": (0.50, 0.54), "mild": (0.56, 0.60),
               "moderate": (0.60, 0.65), "severe": (0.65, 0.70)}
_EFFUSION_LEVELS = {"small": (0.12, 0.2), "moderate": (0.28, 0.38), "large": (0.45, 0.60)}
_PNEUMOTHORAX_SCALE = {"uncertain": (0.9, 0.93), "small": (0.8, 0.87), "large": (0.6, 0.72)}
_EDEMA_HAZE = {"mild": 0.3, "moderate": 0.45, "severe": 0.6}

_MASK_ZIP = "semantic_masks_v7labs_lungs.zip"
CANONICAL_SIZE = 128


# ------------------------------------------------------------------------------------------------ lung shapes
@dataclass(frozen=True)
class LungShape:
    """A pair of lung outlines in a canonical ``C x C`` box (the box spans both lungs).

    ``right`` / ``left`` are binary float32 masks (right lung on the image left). Per canonical row,
    ``lateral_*`` is the lateral-most and ``medial_*`` the medial-most column of that lung (NaN where the row
    has no lung); ``mid`` is the column of the patient midline; ``aspect`` the box height / width.
    """

    name: str
    right: np.ndarray
    left: np.ndarray
    aspect: float
    mid: float
    lateral_right: np.ndarray
    medial_right: np.ndarray
    lateral_left: np.ndarray
    medial_left: np.ndarray
    rows: dict[str, tuple[int, int, int]]  # side -> (apex row, lowest row = costophrenic angle, dome row)


def _row_extents(mask: np.ndarray, lateral_is_min: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lateral and medial column of each row of ``mask`` (NaN for empty rows)."""
    present = mask.any(axis=1)
    width = mask.shape[1]
    first = np.argmax(mask, axis=1).astype(np.float32)
    last = (width - 1 - np.argmax(mask[:, ::-1], axis=1)).astype(np.float32)
    first[~present], last[~present] = np.nan, np.nan
    return (first, last) if lateral_is_min else (last, first)


def _dome_row(mask: np.ndarray) -> int:
    """Row of the top of the diaphragm dome: the highest lower-border point over the middle of the lung."""
    cols = np.flatnonzero(mask.any(axis=0))
    lo, hi = cols[0] + int(0.25 * (cols[-1] - cols[0])), cols[0] + int(0.75 * (cols[-1] - cols[0]))
    sub = mask[:, lo : hi + 1]
    bottom = sub.shape[0] - 1 - np.argmax(sub[::-1], axis=0)
    return int(bottom[sub.any(axis=0)].min())


def lung_shape_from_masks(right: np.ndarray, left: np.ndarray, name: str, aspect: float) -> LungShape:
    """Build a :class:`LungShape` from two canonical binary masks (right lung = image left)."""
    right, left = right.astype(bool), left.astype(bool)
    lat_r, med_r = _row_extents(right, lateral_is_min=True)
    lat_l, med_l = _row_extents(left, lateral_is_min=False)
    rows = {}
    for side, mask in (("right", right), ("left", left)):
        present = np.flatnonzero(mask.any(axis=1))
        rows[side] = (int(present[0]), int(present[-1]), _dome_row(mask))
    # the midline: halfway between the medial borders of the upper lungs (trachea level, above the heart)
    top = max(rows["right"][0], rows["left"][0])
    bottom = min(rows["right"][1], rows["left"][1])
    upper = np.zeros(len(med_r), dtype=bool)
    upper[top + int(0.1 * (bottom - top)) : top + int(0.35 * (bottom - top)) + 1] = True
    both = ~np.isnan(med_r) & ~np.isnan(med_l)
    use = both & upper if (both & upper).any() else both
    mid = float(np.median((med_r[use] + med_l[use]) / 2)) if use.any() else right.shape[1] / 2
    return LungShape(name, right.astype(np.float32), left.astype(np.float32), float(aspect), mid,
                     lat_r, med_r, lat_l, med_l, rows)


def _canonical_from_crop(mask: np.ndarray, size: int) -> np.ndarray:
    zoom = (size / mask.shape[0], size / mask.shape[1])
    out = ndi.zoom(mask.astype(np.float32), zoom, order=1, grid_mode=True, mode="nearest")
    return ndi.binary_fill_holes(out[:size, :size] > 0.5)


def _shape_from_mask_image(mask: np.ndarray, name: str, size: int) -> LungShape | None:
    """Two-lung :class:`LungShape` from one binary mask image, or None when it is not a sensible pair."""
    lab, count = ndi.label(mask)
    if count < 2:
        return None
    areas = ndi.sum_labels(mask, lab, index=np.arange(1, count + 1))
    order = np.argsort(areas)[::-1]
    a1, a2 = areas[order[0]], areas[order[1]]
    if a2 < 0.4 * a1 or a1 + a2 < 0.9 * mask.sum() or a2 < 200:
        return None
    comps = [lab == order[0] + 1, lab == order[1] + 1]
    boxes = [ndi.find_objects(c.astype(np.int32))[0] for c in comps]
    comps, boxes = zip(*sorted(zip(comps, boxes), key=lambda cb: cb[1][1].start))  # image-left = right lung
    (ry, rx), (ly, lx) = boxes
    h, w = mask.shape
    top, bottom = min(ry.start, ly.start), max(ry.stop, ly.stop)
    x0, x1 = rx.start, lx.stop
    if top <= 1 or bottom >= h - 1 or x0 <= 1 or x1 >= w - 1:  # cut off by the image border
        return None
    if rx.stop > lx.start + 0.05 * (x1 - x0):  # not side by side
        return None
    for ys, xs in boxes:
        if not 1.0 <= (ys.stop - ys.start) / (xs.stop - xs.start) <= 4.5:
            return None
    aspect = (bottom - top) / (x1 - x0)
    if not 0.6 <= aspect <= 1.5:
        return None
    crop = (slice(top, bottom), slice(x0, x1))
    right = _canonical_from_crop(comps[0][crop], size)
    left = _canonical_from_crop(comps[1][crop], size)
    if right.sum() < 0.05 * size * size or left.sum() < 0.05 * size * size:
        return None
    disk = np.hypot(*np.mgrid[-3:4, -3:4]) <= 3.2
    for lung in (right, left):  # annotation arrows / spurs stick out of the outline: skip such masks
        if (lung & ~ndi.binary_opening(lung, structure=disk)).sum() > 0.012 * lung.sum():
            return None
    return lung_shape_from_masks(right, left, name, aspect)


def real_lung_mask_path() -> Path | None:
    """Path of torchxrayvision's installed lung-mask archive, or None when the package / file is absent."""
    try:
        import torchxrayvision
    except ImportError:
        return None
    path = Path(torchxrayvision.__file__).parent / "data" / _MASK_ZIP
    return path if path.is_file() else None


def load_real_lung_shapes(canonical_size: int = CANONICAL_SIZE, limit: int | None = None) -> tuple[LungShape, ...]:
    """Decode, check and cache the real lung masks (sorted by name; ``limit`` keeps the first ones read).

    Masks that do not split into two sensible lungs (empty, cropped, one blob, odd proportions, annotation
    arrows sticking out) are skipped. Raises :class:`DataError` when the archive is missing or yields no
    usable pair. Decoding all masks takes several seconds once per process.
    """
    return _load_real_lung_shapes(int(canonical_size), None if not limit else int(limit))


@lru_cache(maxsize=4)
def _load_real_lung_shapes(canonical_size: int, limit: int | None) -> tuple[LungShape, ...]:
    from PIL import Image

    path = real_lung_mask_path()
    if path is None:
        raise DataError(_MASK_ZIP, "torchxrayvision's lung masks are not installed (use the procedural lungs)")
    shapes: list[LungShape] = []
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if not n.endswith("/"))
        for name in names[:limit] if limit else names:
            try:
                with Image.open(io.BytesIO(archive.read(name))) as image:
                    image = image.convert("L")
                    factor = max(1, min(image.size) // 256)
                    mask = np.asarray(image.reduce(factor) if factor > 1 else image) > 200  # not grey arrows
            except (OSError, ValueError):
                continue
            shape = _shape_from_mask_image(mask, Path(name).stem, canonical_size)
            if shape is not None:
                shapes.append(shape)
    if not shapes:
        raise DataError(path, "no usable lung mask pair in the archive")
    return tuple(shapes)


def procedural_lung_shape(rng: np.random.Generator, canonical_size: int = CANONICAL_SIZE) -> LungShape:
    """A smooth, ellipse-like pair of lungs with apices, domes and costophrenic angles (the fallback)."""
    c = canonical_size
    y, x = np.mgrid[0:c, 0:c].astype(np.float32) / (c - 1)
    mid = rng.uniform(0.48, 0.52)
    masks = []
    for sign in (-1, 1):  # right lung (image left), then left lung
        # lateral coordinate t: 0 at the midline, 1 at the lateral wall
        t = (mid - x) / mid if sign < 0 else (x - mid) / (1 - mid)
        top = rng.uniform(0.0, 0.04) + (0.02 if sign > 0 else 0.0)
        bottom = 1.0 - (rng.uniform(0.04, 0.09) if sign < 0 else rng.uniform(0.0, 0.03))
        apex_t = rng.uniform(0.45, 0.6)
        p = rng.uniform(2.2, 2.8)
        # upper / lateral outline: a super-ellipse quadrant centred below the apex
        height = bottom - top
        ty = np.clip((bottom - 0.15 * height - y) / (0.85 * height), 0, None)
        outline = np.where(t > apex_t, np.clip((t - apex_t) / (1.0 - apex_t), 0, None) ** p,
                           np.clip((apex_t - t) / apex_t, 0, None) ** p)
        outline = outline + ty ** p
        # lower outline: the diaphragm dome (highest over the middle of the hemidiaphragm)
        dome_h = rng.uniform(0.12, 0.2) * height
        arc = np.clip(np.sin(np.pi * np.clip(1.0 - t, 0, 1) ** 0.8), 0, None)
        dome = bottom - dome_h * arc**0.7 - 0.25 * dome_h * np.clip(1 - t, 0, 1)
        masks.append((outline <= 1.0) & (y >= top) & (y <= dome) & (t >= 0) & (t <= 1))
    aspect = rng.uniform(0.85, 1.05)
    return lung_shape_from_masks(masks[0], masks[1], "procedural", aspect)


def real_masks_usable(use_real_masks: bool | str) -> bool:
    """Resolve ``use_real_masks`` (True / False / "auto") against what is installed."""
    if use_real_masks == "auto":
        return real_lung_mask_path() is not None
    if isinstance(use_real_masks, str):
        raise ValueError(f"use_real_masks must be True, False or 'auto', not {use_real_masks!r}")
    return bool(use_real_masks)


# ------------------------------------------------------------------------------------------------ patients
@dataclass
class Patient:
    """Anatomy and acquisition of one patient (reused for a subject's follow-up studies)."""

    shape: LungShape
    box_width: float  # lung box width as a fraction of the image width (= internal thoracic width)
    box_height: float
    box_top: float
    rotation_deg: float
    shift: tuple[float, float]
    ctr: float  # the patient's own (normal) cardiothoracic ratio
    heart_right_fraction: float
    heart_height: float
    mediastinum: tuple[float, float]  # half-widths right / left as fractions of the thoracic width
    knob_radius: float
    body_factor: float
    carina: float  # carina level as a fraction of lung height below the apex
    rib_count: int
    rib_phase: float
    rib_curve: float
    clavicle_level: float
    spine_width: float
    gastric_bubble: bool
    exposure: float
    gamma: float
    noise: float
    blur: float
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
        ctr=rng.uniform(*_CTR_RANGES["normal"]),
        heart_right_fraction=rng.uniform(0.28, 0.36),
        heart_height=rng.uniform(0.32, 0.4),
        mediastinum=(rng.uniform(0.09, 0.12), rng.uniform(0.08, 0.11)),
        knob_radius=rng.uniform(0.045, 0.06),
        body_factor=rng.uniform(1.1, 1.22),
        carina=rng.uniform(0.3, 0.38),
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


# ------------------------------------------------------------------------------------------------ finding spec
def _choice(rng: np.random.Generator, values: tuple[str, ...], weights: tuple[float, ...] | None = None) -> str:
    p = None if weights is None else np.asarray(weights) / np.sum(weights)
    return str(values[int(rng.choice(len(values), p=p))])


def sample_devices(rng: np.random.Generator) -> list[str]:
    """One or two device types (an endotracheal tube often comes with a nasogastric tube)."""
    first = _choice(rng, DEVICE_TYPES, _DEVICE_WEIGHTS)
    devices = [first]
    if first == "endotracheal tube" and rng.random() < 0.6:
        devices.append("nasogastric tube")
    elif rng.random() < 0.3:
        second = _choice(rng, DEVICE_TYPES, _DEVICE_WEIGHTS)
        if second != first:
            devices.append(second)
    return devices


def complete_spec(spec: Mapping[str, Any] | Iterable[str] | None, rng: np.random.Generator) -> dict[str, dict]:
    """Normalise a finding specification and draw the attributes it leaves open.

    ``spec`` maps finding names (:data:`PHANTOM_FINDINGS`) to attribute dicts, True, or None; an iterable of
    names is accepted too. Attributes: ``side``, ``severity``, ``zone``, ``devices`` (list of
    :data:`DEVICE_TYPES`), ``uncertain`` (bool; drawn mildly). "No Finding" is ignored (it is implied).
    """
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        spec = {name: {} for name in spec}
    out: dict[str, dict] = {}
    for name in PHANTOM_FINDINGS:  # fixed order keeps the random draws reproducible
        if name not in spec or spec[name] is None or spec[name] is False:
            continue
        given = dict(spec[name]) if isinstance(spec[name], Mapping) else {}
        attrs: dict[str, Any] = {"uncertain": bool(given.get("uncertain", False))}
        for key, values in FINDING_ATTRIBUTES[name].items():
            value = given.get(key)
            if value is None:
                value = _choice(rng, values, _ATTRIBUTE_WEIGHTS[name][key])
            elif value not in values:
                raise ValueError(f"{name}: {key} must be one of {values}, not {value!r}")
            attrs[key] = value
        if name == "Support Devices":
            devices = given.get("devices") or sample_devices(rng)
            unknown = [d for d in devices if d not in DEVICE_TYPES]
            if unknown:
                raise ValueError(f"unknown device types {unknown} (known: {DEVICE_TYPES})")
            attrs["devices"] = list(dict.fromkeys(devices))
        if name == "Cardiomegaly" and given.get("ctr") is not None:
            attrs["ctr"] = float(given["ctr"])
        out[name] = attrs
    unknown = [k for k in spec if k not in PHANTOM_FINDINGS and k != "No Finding"]
    if unknown:
        raise ValueError(f"the phantom cannot draw {unknown} (it draws {PHANTOM_FINDINGS})")
    return out


# ------------------------------------------------------------------------------------------------ helpers
@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


@lru_cache(maxsize=32)
def _upsampling_matrix(size: int, cells: int) -> np.ndarray:
    """``size x (cells + 2)`` Gaussian interpolation weights: a smooth separable upsampling."""
    x = np.linspace(0.5, cells + 0.5, size)[:, None]
    w = np.exp(-0.5 * ((x - np.arange(cells + 2)[None, :]) / 0.6) ** 2)
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))  # unit variance for white coarse noise
    return w.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field (about unit variance) from a ``cells x cells`` grid upsampled to ``size``."""
    coarse = rng.standard_normal((cells + 2, cells + 2)).astype(np.float32)
    w = _upsampling_matrix(size, cells)
    # einsum's own loops: a tiny BLAS product is slow when other processes compete for the cores
    return np.einsum("jk,lk->jl", np.einsum("ij,jk->ik", w, coarse), w)


def _blur_large(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a large sigma, computed at a quarter of the resolution."""
    factor = 4 if image.shape[0] >= 64 else 1
    if factor == 1:
        return ndi.gaussian_filter(image, sigma)
    small = image.reshape(image.shape[0] // factor, factor, image.shape[1] // factor, factor).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, sigma / factor)
    return ndi.zoom(small, factor, order=1, grid_mode=True, mode="nearest")


def _smoothstep(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _band(distance: np.ndarray, half_width: float) -> np.ndarray:
    """Projected thickness of a cylinder of radius ``half_width`` at ``distance`` from its axis (0..1)."""
    return np.sqrt(np.clip(1.0 - (distance / half_width) ** 2, 0.0, None))


def _segment_distance(u: np.ndarray, v: np.ndarray, p0: tuple[float, float], p1: tuple[float, float]) -> np.ndarray:
    du, dv = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * du + (v - p0[1]) * dv) / (du * du + dv * dv + 1e-12), 0.0, 1.0)
    return np.hypot(u - p0[0] - t * du, v - p0[1] - t * dv)


def _bezier(points: np.ndarray, count: int) -> np.ndarray:
    """Points along the Bezier curve with control ``points`` (n x 2)."""
    n = len(points) - 1
    t = np.linspace(0.0, 1.0, count)[:, None]
    coeffs = [math.comb(n, k) * t**k * (1 - t) ** (n - k) for k in range(n + 1)]
    return sum(c * p for c, p in zip(coeffs, points))


class _Frame:
    """Patient frame <-> image pixels (rotation about the image centre, then shift)."""

    def __init__(self, size: int, patient: Patient) -> None:
        self.size = size
        angle = math.radians(patient.rotation_deg)
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self.centre = (size - 1) / 2
        self.sx, self.sy = patient.shift[0] * size, patient.shift[1] * size
        yy, xx = _pixel_grid(size)
        xc, yc = xx - self.centre, yy - self.centre
        xp = self.cos * xc + self.sin * yc - self.sx
        yp = -self.sin * xc + self.cos * yc + self.centre - self.sy
        self.u = (xp / size).astype(np.float32)
        self.v = (yp / size).astype(np.float32)

    def to_pixels(self, uv: np.ndarray) -> np.ndarray:
        """(n, 2) patient (u, v) -> (n, 2) image (x, y) pixel coordinates."""
        a = uv[:, 0] * self.size + self.sx
        b = uv[:, 1] * self.size - self.centre + self.sy
        x = self.cos * a - self.sin * b + self.centre
        y = self.sin * a + self.cos * b + self.centre
        return np.stack([x, y], axis=1)


def _splat(points: np.ndarray, weights: np.ndarray | float, size: int) -> np.ndarray:
    """Accumulate weighted points (x, y pixels) into an image with bilinear weights."""
    x, y = points[:, 0], points[:, 1]
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), x.shape)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    out = np.zeros(size * size, dtype=np.float64)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
        out += np.bincount(yi[ok] * size + xi[ok], weights=(weights * w)[ok], minlength=size * size)
    return out.reshape(size, size).astype(np.float32)


def _polyline_points(curve: np.ndarray, spacing: float = 0.4) -> tuple[np.ndarray, float]:
    """Resample a dense curve (pixels) to about ``spacing`` px steps; returns points and the step length."""
    seg = np.hypot(*np.diff(curve, axis=0).T)
    length = float(seg.sum())
    count = max(2, int(length / spacing) + 1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, length, count)
    pts = np.stack([np.interp(t, s, curve[:, 0]), np.interp(t, s, curve[:, 1])], axis=1)
    return pts, length / (count - 1)


# ------------------------------------------------------------------------------------------------ renderer
class _Renderer:
    """Draws one image; an object only to share the frame, masks and geometry between the drawing steps."""

    def __init__(self, spec: dict[str, dict], rng: np.random.Generator, size: int, patient: Patient) -> None:
        self.spec, self.rng, self.size, self.p = spec, rng, size, patient
        self.px = 1.0 / size  # one pixel in normalised units
        self.scale = size / 256.0
        self.frame = _Frame(size, patient)
        self.u, self.v = self.frame.u, self.frame.v
        shape = patient.shape
        self.c = shape.right.shape[0]
        self.width = patient.box_width  # internal thoracic width (lateral lung extents)
        self.u0 = -shape.mid / (self.c - 1) * self.width  # u of canonical column 0
        self.cx = (self.u - self.u0) / self.width * (self.c - 1)
        self.cy = (self.v - patient.box_top) / patient.box_height * (self.c - 1)
        self.truth: dict[str, Any] = {"findings": {}}

    # -- geometry in normalised units
    def row_v(self, row: float) -> float:
        return self.p.box_top + row / (self.c - 1) * self.p.box_height

    def col_u(self, col: np.ndarray | float) -> np.ndarray | float:
        return self.u0 + np.asarray(col) / (self.c - 1) * self.width

    def roi(self, u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice]:
        """Image slices covering the patient-frame rectangle [u0, u1] x [v0, v1] (plus a margin)."""
        corners = self.frame.to_pixels(np.array([[u0, v0], [u1, v0], [u0, v1], [u1, v1]], dtype=np.float64))
        lo = np.clip(np.floor(corners.min(axis=0)) - 3, 0, self.size).astype(int)
        hi = np.clip(np.ceil(corners.max(axis=0)) + 4, 0, self.size).astype(int)
        return slice(lo[1], max(hi[1], lo[1])), slice(lo[0], max(hi[0], lo[0]))

    def on_roi(self, func: Any, box: tuple[float, float, float, float]) -> np.ndarray:
        """``func(u, v)`` evaluated only inside ``box`` (u0, u1, v0, v1); zero elsewhere."""
        out = np.zeros_like(self.u)
        sl = self.roi(*box)
        if sl[0].stop > sl[0].start and sl[1].stop > sl[1].start:
            out[sl] = func(self.u[sl], self.v[sl])
        return out

    def setup_heart(self) -> None:
        p, shape = self.p, self.p.shape
        card = self.spec.get("Cardiomegaly")
        if card is None:
            ctr = p.ctr
        elif "ctr" in card:
            ctr = card["ctr"]
        else:
            key = "uncertain" if card["uncertain"] else card["severity"]
            ctr = self.rng.uniform(*_CTR_RANGES[key])
        self.ctr = float(ctr)
        heart_width = ctr * self.width
        self.a_r = p.heart_right_fraction * heart_width
        self.a_l = heart_width - self.a_r
        self.b_l = p.heart_height * p.box_height * math.sqrt(max(ctr, 0.3) / 0.44)
        self.b_r = 0.75 * self.b_l
        domes = [self.row_v(shape.rows[s][2]) for s in ("right", "left")]
        self.v_hc = min(domes) - 0.12 * self.b_l
        self.dome = {"right": domes[0], "left": domes[1]}
        self.v_apex = self.row_v(min(shape.rows["right"][0], shape.rows["left"][0]))
        self.lung_height = self.p.box_height
        self.v_carina = self.v_apex + p.carina * self.lung_height
        self.mw_r, self.mw_l = p.mediastinum[0] * self.width, p.mediastinum[1] * self.width
        self.knob = (self.mw_l + 0.35 * p.knob_radius * self.width, self.v_hc - self.b_l - 0.2 * p.knob_radius,
                     p.knob_radius * self.width)

    def border(self, v: np.ndarray, side: str) -> np.ndarray:
        """Distance from the midline to the mediastinum / heart border at height ``v`` (normalised units)."""
        dv = v - self.v_hc
        if side == "right":
            heart = self.a_r * np.sqrt(np.clip(1 - np.minimum(dv, 0) ** 2 / self.b_r**2, 0, None))
            return np.maximum(heart, self.mw_r)
        heart = self.a_l * np.sqrt(np.clip(1 - np.minimum(dv, 0) ** 2 / self.b_l**2, 0, None))
        ku, kv, kr = self.knob
        knob = ku + np.sqrt(np.clip(kr**2 - (v - kv) ** 2, 0, None)) - kr
        return np.maximum(np.maximum(heart, self.mw_l), np.where(np.abs(v - kv) < kr, knob, 0))

    def heart_mask(self) -> np.ndarray:
        du, dv = self.u, self.v - self.v_hc
        a = np.where(du < 0, self.a_r, self.a_l)
        b = np.where(du < 0, self.b_r, self.b_l)
        r = np.sqrt((du / a) ** 2 + (np.minimum(dv, 0) / b) ** 2)
        return np.clip((1.0 - r) * a / (1.5 * self.px), 0.0, 1.0)

    def sample_lung(self, side: str, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
        """The lung of ``side`` at canonical coordinates, medial border warped onto the drawn heart."""
        shape = self.p.shape
        if side == "right":
            mask, lateral, medial, sign = shape.right, shape.lateral_right, shape.medial_right, -1
        else:
            mask, lateral, medial, sign = shape.left, shape.lateral_left, shape.medial_left, 1
        top, bottom, dome = shape.rows[side]
        rows = np.arange(self.c, dtype=np.float32)
        border = self.border(self.row_v(rows), side)
        target = shape.mid + sign * border / self.width * (self.c - 1)
        # near the apex the real mask keeps its own medial border (the superior mediastinum)
        blend = _smoothstep((rows - top) / max(bottom - top, 1) / 0.2 - 0.6)
        target = np.where(np.isnan(medial), np.nan, medial + blend * (target - medial))
        span = target - lateral
        span = -sign * np.maximum(-sign * span, 1.0)  # a heart wider than the row: keep a sliver
        ratio = np.where(np.abs(medial - lateral) < 1.0, 1.0, (medial - lateral) / span)
        # below the top of the dome a row's medial edge is the diaphragm, not the heart: keep the dome's stretch
        ratio[dome + 1 :] = ratio[dome]
        row = np.clip(np.rint(cy), 0, self.c - 1).astype(np.int64)
        lat, rat = lateral[row], ratio[row]
        sx = lat + (cx - lat) * rat
        sx = np.where(np.isnan(sx) | (cy < 0) | (cy > self.c - 1), -10.0, sx)
        return ndi.map_coordinates(mask, [cy, sx], order=1, cval=0.0, prefilter=False)

    def lungs(self) -> None:
        self.lung_box = self.roi(self.u0, self.u0 + self.width, self.p.box_top, self.p.box_top + self.p.box_height)
        self.lung = {}
        for side in ("right", "left"):
            self.lung[side] = np.zeros_like(self.u)
            self.lung[side][self.lung_box] = self.sample_lung(side, self.cy[self.lung_box], self.cx[self.lung_box])
        self.heart = self.heart_mask()
        for side in ("right", "left"):
            self.lung[side] *= 1.0 - self.heart
        self.parenchyma = {side: m.copy() for side, m in self.lung.items()}  # pneumothorax shrinks these
        # each lung slightly dilated: opacities fill the lung up to its blurred margin (no dark outline)
        self.region = {side: np.clip(2.0 * ndi.gaussian_filter(m, 1.0 * self.scale), 0, 1)
                       for side, m in self.lung.items()}

    # -- anatomy layers (attenuation; the mediastinum is about 1)
    def body(self) -> np.ndarray:
        """Soft tissue: an elliptic torso section, wider at the shoulders, denser below the diaphragm."""
        u, v, p = self.u, self.v, self.p
        half = 0.5 * self.width * p.body_factor
        shoulder = self.v_apex + 0.03
        half_v = half + (0.64 - half) * _smoothstep((shoulder - v) / 0.14)
        neck = 0.5 * _smoothstep((shoulder - 0.02 - v) / 0.1)  # the shoulders are thinner than the chest
        ratio = np.clip(np.abs(u) / half_v, 0, 1)
        thickness = (1 - ratio**2) ** 0.35 * (1 - neck * _smoothstep((np.abs(u) - 0.1) / 0.1))
        abdomen = 0.15 * _smoothstep((v - min(self.dome.values())) / 0.06)
        return thickness * (0.92 + abdomen)

    def ribs(self) -> np.ndarray:
        """Posterior ribs (arcs from the spine, falling at the lateral wall) and fainter anterior ribs."""
        u, v, p = self.u, self.v, self.p
        half = 0.5 * self.width
        t = np.abs(u) / half
        q0 = self.v_apex - 0.1 * self.lung_height
        span = 1.02 * self.lung_height
        wobble = 0.06 * _smooth_noise(self.rng, self.size, 6)
        g = self.lung_height * p.rib_curve * (t - 0.3) ** 2
        z = np.clip((v - q0 - g) / span, 0, None)
        phase = p.rib_count * z**0.82 + p.rib_phase + wobble
        frac = phase - np.floor(phase)
        width = 0.4 + 0.06 * t
        inside = (frac < width) & (phase > 0.3) & (phase < p.rib_count + 0.4)
        prof = np.where(inside, np.sin(np.pi * np.clip(frac / width, 0, 1)), 0.0)
        cortex = prof**0.3 * 0.6 + prof * 0.4  # dense cortical margins
        lateral = 1.0 - _smoothstep((t - 1.0) / 0.12)
        medial = _smoothstep((t - 0.07) / 0.1)
        below = 1.0 - 0.6 * _smoothstep((v - min(self.dome.values())) / 0.06)  # faint through the abdomen
        out = 0.085 * cortex * lateral * medial * below
        ga = self.lung_height * 0.3 * (1.0 - t)
        za = np.clip((v - q0 + 0.05 * self.lung_height - ga) / span, 0, None)
        pa = (p.rib_count - 3) * za**0.9 + p.rib_phase + wobble
        fa = pa - np.floor(pa)
        ina = (fa < 0.35) & (pa > 0.5) & (pa < p.rib_count - 3)
        profa = np.where(ina, np.sin(np.pi * np.clip(fa / 0.35, 0, 1)), 0.0)
        return out + 0.03 * profa * _smoothstep((t - 0.4) / 0.2) * lateral

    def clavicles(self) -> np.ndarray:
        v0 = self.v_apex + self.p.clavicle_level
        return self.on_roi(self._clavicles, (-0.5, 0.5, v0 - 0.12, v0 + 0.06))

    def _clavicles(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        p = self.p
        t = np.abs(u) / (0.5 * self.width)
        tt = np.clip((t - 0.08) / 0.9, 0, 1)
        centre = self.v_apex + p.clavicle_level + 0.02 - 0.1 * tt + 0.02 * np.sin(2 * np.pi * tt)
        thick = 0.012 + 0.006 * (1 - tt) + 0.004 * tt**4
        prof = _band(v - centre, thick)
        ends = _smoothstep((t - 0.07) / 0.05) * (1 - _smoothstep((t - 1.0) / 0.06))
        return 0.22 * (prof**0.4 * 0.6 + prof * 0.4) * ends

    def spine(self) -> np.ndarray:
        """Thoracic vertebrae: bodies with disc spaces and pedicle rings, faint behind the heart."""
        sw = self.p.spine_width * self.width
        return self.on_roi(self._spine, (-sw, sw, -0.2, 1.2))

    def _spine(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        sw = self.p.spine_width * self.width
        body = _band(u, sw)
        period = self.lung_height / 11.5
        phase = (v - self.v_apex) / period
        frac = phase - np.floor(phase)
        disc = 1.0 - 0.5 * np.exp(-(((frac - 0.5) / 0.07) ** 2))
        ped = np.zeros_like(u)
        for sign in (-1, 1):
            d = np.hypot((u - sign * 0.7 * sw) / (0.2 * sw), (frac - 0.3) / 0.18)
            ped += np.clip(1 - np.abs(d - 0.8) / 0.3, 0, 1)
        return (0.07 * body * disc + 0.05 * ped * body) * _smoothstep((v - self.v_apex + 0.12) / 0.05)

    def shoulders(self) -> np.ndarray:
        """Humeral heads and shafts at the upper corners, scapular necks."""
        return self.on_roi(self._shoulders, (-0.7, 0.7, -0.2, self.v_apex + 0.35))

    def _shoulders(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        out = np.zeros_like(u)
        half = 0.5 * self.width * self.p.body_factor
        for sign in (-1, 1):
            cu, cv, r = sign * (half + 0.05), self.v_apex - 0.05, 0.075
            head = _band(np.hypot(u - cu, v - cv), r)
            out += 0.2 * (head**0.3 * 0.5 + head * 0.5)
            shaft = _band(_segment_distance(u, v, (cu + sign * 0.02, cv), (sign * (half + 0.12), cv + 0.35)), 0.04)
            out += 0.2 * (shaft**0.3 * 0.6 + shaft * 0.4)
            neck = _segment_distance(u, v, (cu - sign * 0.04, cv + 0.03), (sign * half * 0.8, cv + 0.22))
            out += 0.05 * _band(neck, 0.025)
        return out

    def airways(self) -> np.ndarray:
        return self.on_roi(self._airways, (-0.12, 0.12, -0.1, self.v_carina + 0.12 * self.lung_height))

    def _airways(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        tw = 0.032 * self.width
        trachea = _band(_segment_distance(u, v, (0.0, -0.05), (0.0, self.v_carina)), tw)
        length = 0.09 * self.lung_height
        bronchi = np.zeros_like(u)
        for sign, angle in ((-1, 30.0), (1, 42.0)):
            a = math.radians(angle)
            end = (sign * length * math.sin(a), self.v_carina + length * math.cos(a))
            bronchi = np.maximum(bronchi, _band(_segment_distance(u, v, (0.0, self.v_carina), end), 0.7 * tw))
        return 0.2 * np.maximum(trachea, bronchi)

    def vessels(self) -> tuple[np.ndarray, np.ndarray]:
        """Pulmonary vessel trees from the hila: (thick vessels, thin vessels), each already blurred.

        Monopodial branching: each segment bends a little, then continues (slightly narrower) and sends off
        a thinner side branch; more roots point to the lower zones, where the vessels are larger.
        """
        rng, size = self.rng, self.size
        thick_pts, thick_w, thin_pts, thin_w = [], [], [], []
        v_hilum = self.v_apex + 0.45 * self.lung_height
        for side, sign in (("right", -1), ("left", 1)):
            start = np.array([sign * float(self.border(np.float32(v_hilum), side)) * 0.95, v_hilum])
            angles = np.array([-70.0, -40.0, -10.0, 20.0, 45.0, 70.0]) + rng.uniform(-12, 12, 6)
            n = len(angles)
            pos = np.repeat(start[None], n, axis=0) + rng.normal(0, 0.01, (n, 2))
            dirs = np.radians(angles)
            length = rng.uniform(0.075, 0.095, n) * self.width
            width = np.full(n, 1.0)
            for level in range(6):
                dirs = dirs + np.radians(rng.normal(0, 8, len(dirs)))
                direction = np.stack([sign * np.cos(dirs), np.sin(dirs)], axis=1)
                end = pos + direction * length[:, None]
                steps = np.linspace(0.0, 1.0, max(3, int(length.max() * size / 0.5)))
                pts = (pos[:, None, :] + steps[None, :, None] * (end - pos)[:, None, :]).reshape(-1, 2)
                # line density ~ vessel diameter in pixels: thinner (partial volume) on smaller images
                w = np.repeat(width * length / len(steps) * size * self.scale, len(steps))
                (thick_pts if level < 2 else thin_pts).append(pts)
                (thick_w if level < 2 else thin_w).append(w)
                turn = rng.choice([-1.0, 1.0], len(dirs))
                main = dirs + np.radians(rng.normal(0, 6, len(dirs)))
                branch = dirs + turn * np.radians(rng.uniform(25, 50, len(dirs)))
                dirs = np.concatenate([main, branch])
                pos = np.concatenate([end, end])
                length = np.concatenate([length * rng.uniform(0.75, 0.9, len(length)),
                                         length * rng.uniform(0.55, 0.75, len(length))])
                width = np.concatenate([width * 0.8, width * 0.55])
        out = []
        for pts, w, sigma in ((thick_pts, thick_w, 1.2), (thin_pts, thin_w, 0.7)):
            pix = self.frame.to_pixels(np.concatenate(pts))
            canvas = _splat(pix, np.concatenate(w), size)
            out.append(ndi.gaussian_filter(canvas, max(0.5, sigma * self.scale)))
        return out[0], out[1]

    def hila(self) -> np.ndarray:
        """Hilar shadows: the pulmonary arteries where the vessel trees start."""
        v_hilum = self.v_apex + 0.45 * self.lung_height
        out = np.zeros_like(self.u)
        for side, sign in (("right", -1), ("left", 1)):
            hu = sign * (float(self.border(np.float32(v_hilum), side)) + 0.015 * self.width)
            out += np.exp(-0.5 * (((self.u - hu) / (0.03 * self.width)) ** 2 + ((self.v - v_hilum) / 0.05) ** 2))
        return 0.12 * out

    # -- findings
    def side_rows(self, side: str) -> tuple[float, float, float]:
        top, bottom, dome = self.p.shape.rows[side]
        return self.row_v(top), self.row_v(bottom), self.row_v(dome)

    def lateral_u(self, side: str, v: float) -> float:
        shape = self.p.shape
        row = int(np.clip(round((v - self.p.box_top) / self.p.box_height * (self.c - 1)), 0, self.c - 1))
        lateral = shape.lateral_right if side == "right" else shape.lateral_left
        valid = np.flatnonzero(~np.isnan(lateral))
        row = valid[np.argmin(np.abs(valid - row))]
        return float(self.col_u(lateral[row]))

    def effusion(self, attrs: dict) -> np.ndarray:
        sides = ("right", "left") if attrs["side"] == "bilateral" else (attrs["side"],)
        severity = "small" if attrs["uncertain"] else attrs["severity"]
        fluid = np.zeros_like(self.u)
        measured = {}
        for side in sides:
            sign = -1 if side == "right" else 1
            top, bottom, _ = self.side_rows(side)
            level = self.rng.uniform(*_EFFUSION_LEVELS[severity])
            v_level = bottom - level * (bottom - top)
            lat = abs(self.lateral_u(side, v_level))
            t = np.clip(sign * self.u / max(lat, 1e-3), 0, 1.2)
            meniscus = self.rng.uniform(0.1, 0.16) * (bottom - top) * (0.6 if severity == "small" else 1.0)
            surface = v_level - meniscus * t**2.5
            # density rises below the meniscus (the fluid layer thins towards its upper edge)
            f = _smoothstep((self.v - surface) / (0.05 * (bottom - top))) * self.region[side]
            fluid += f
            area = float(self.lung[side].sum())
            measured[side] = {"level_fraction": round(level, 3),
                              "area_fraction": round(float((f * self.lung[side]).sum()) / max(area, 1.0), 3)}
        self.truth["findings"]["Pleural Effusion"] = {**attrs, "severity_drawn": severity, "measured": measured}
        return np.clip(fluid, 0, 1)

    def pneumothorax(self, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
        side = attrs["side"]
        key = "uncertain" if attrs["uncertain"] else attrs["severity"]
        k = self.rng.uniform(*_PNEUMOTHORAX_SCALE[key])
        top, bottom, _ = self.p.shape.rows[side]
        anchor_row = top + 0.88 * (bottom - top)
        v_anchor = self.row_v(anchor_row)
        sign = -1 if side == "right" else 1
        anchor_col = self.p.shape.mid + sign * self.border(np.float32(v_anchor), side) / self.width * (self.c - 1)
        box = self.lung_box
        cy = anchor_row + (self.cy[box] - anchor_row) / k
        cx = anchor_col + (self.cx[box] - anchor_col) / k
        collapsed = np.zeros_like(self.u)
        collapsed[box] = self.sample_lung(side, cy, cx)
        collapsed *= self.lung[side]
        air = np.clip(self.lung[side] - collapsed, 0, 1)
        self.parenchyma[side] = collapsed
        near_air = ndi.gaussian_filter(air, 1.2 * self.scale) > 0.08
        line = 4.0 * collapsed * (1.0 - collapsed) * near_air
        line = ndi.gaussian_filter(line, 0.5 * self.scale)
        area = float(self.lung[side].sum())
        self.truth["findings"]["Pneumothorax"] = {
            **attrs, "measured": {"collapse_scale": round(k, 3), "area_fraction": round(float(air.sum()) / area, 3)}}
        return air, line

    def consolidation(self, attrs: dict) -> np.ndarray:
        """Patchy air-space opacity filling part of one lung zone (upper: sharp fissural lower border)."""
        rng = self.rng
        side, zone = attrs["side"], attrs["zone"]
        sign = -1 if side == "right" else 1
        top, _, dome = self.side_rows(side)
        height = dome - top  # the lung above the diaphragm dome
        extent = rng.uniform(0.4, 0.55) * (0.7 if attrs["uncertain"] else 1.0)
        boundary = 0.03 * _smooth_noise(rng, self.size, 5)
        if zone == "upper":
            v_edge = top + extent * height + boundary
            sharp = 1.5 if side == "right" else 4.0  # the minor fissure bounds a right upper lobe opacity
            in_zone = _smoothstep((v_edge - self.v) / (sharp * self.px * 4) + 0.5)
        else:
            v_edge = dome - extent * height + boundary
            in_zone = _smoothstep((self.v - v_edge) / (10 * self.px) + 0.5)
        vc = top + (0.25 if zone == "upper" else 0.8) * height
        lat = self.lateral_u(side, vc)
        med = sign * float(self.border(np.float32(vc), side))
        uc = med + rng.uniform(0.35, 0.65) * (lat - med)
        ru = rng.uniform(0.6, 0.9) * abs(lat - med)
        across = _smoothstep((1.0 - np.abs(self.u - uc) / ru) * 2.5)
        patchy = np.clip(0.9 + 0.3 * _smooth_noise(rng, self.size, 20), 0.45, 1)
        opacity = ndi.gaussian_filter(in_zone * across * patchy, 1.0 * self.scale) * self.region[side]
        density = rng.uniform(0.5, 0.6) if attrs["uncertain"] else rng.uniform(0.85, 1.0)
        area = float(self.lung[side].sum())
        self.truth["findings"]["Consolidation"] = {
            **attrs, "measured": {"area_fraction": round(float((opacity > 0.5).sum()) / area, 3),
                                  "density": round(density, 3), "centre_uv": [round(uc, 4), round(vc, 4)]}}
        return opacity * density

    def edema(self, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
        """Perihilar (bat-wing) haze, reticular interstitial pattern and Kerley B lines, both lungs."""
        severity = attrs["severity"]
        amp = _EDEMA_HAZE[severity] * (0.7 if attrs["uncertain"] else 1.0)
        haze = np.zeros_like(self.u)
        v_hilum = self.v_apex + 0.5 * self.lung_height
        noise = 0.75 + 0.3 * _smooth_noise(self.rng, self.size, 12)
        points, weights = [], []
        count = {"mild": 5, "moderate": 8, "severe": 11}[severity]
        for side, sign in (("right", -1), ("left", 1)):
            hu = sign * (float(self.border(np.float32(v_hilum), side)) + 0.05 * self.width)
            g = np.exp(-0.5 * (((self.u - hu) / (0.2 * self.width)) ** 2
                               + ((self.v - v_hilum) / (0.28 * self.lung_height)) ** 2))
            haze += amp * np.clip(1.3 * g, 0, 1) * noise * self.region[side]
            top, bottom, _ = self.side_rows(side)
            for v_line in self.rng.uniform(bottom - 0.35 * (bottom - top), bottom - 0.05 * (bottom - top), count):
                lat = self.lateral_u(side, float(v_line))
                length = self.rng.uniform(0.02, 0.04)
                seg = np.array([[lat - sign * 0.004, v_line], [lat - sign * (0.004 + length), v_line]])
                pix, step = _polyline_points(self.frame.to_pixels(seg))
                points.append(pix)
                weights.append(np.full(len(pix), step * min(1.0, 2 * self.scale)))
        reticular = np.clip(_smooth_noise(self.rng, self.size, 40), 0, None)
        haze += 0.25 * amp * reticular * (self.region["right"] + self.region["left"])
        s = max(0.5, 0.6 * self.scale)
        lines = _splat(np.concatenate(points), np.concatenate(weights), self.size)
        lines = math.sqrt(2 * math.pi) * s * ndi.gaussian_filter(lines, s)
        lines *= ndi.gaussian_filter(self.lung["right"] + self.lung["left"], 0.5)
        measured = {"haze_amplitude": round(amp, 3), "kerley_lines": 2 * count}
        self.truth["findings"]["Edema"] = {**attrs, "measured": measured}
        return np.clip(haze, 0, 1), lines

    def devices(self, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
        """Returns (wires/tubes density, solid metal density) and records the tips."""
        rng, size = self.rng, self.size
        wires_pts, wires_w, plastic_pts, plastic_w = [], [], [], []
        solid = np.zeros_like(self.u)
        tips = {}

        def add(ctrl: list[tuple[float, float]], amp: float, plastic: bool = False, offset: float = 0.0) -> np.ndarray:
            curve = _bezier(np.asarray(ctrl, dtype=np.float64), 200)
            if offset:
                tangent = np.gradient(curve, axis=0)
                normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
                normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
                curve = curve + offset * normal
            pix, step = _polyline_points(self.frame.to_pixels(curve))
            (plastic_pts if plastic else wires_pts).append(pix)
            (plastic_w if plastic else wires_w).append(np.full(len(pix), amp * step))
            return curve[-1]

        for device in attrs["devices"]:
            if device == "endotracheal tube":
                tip_v = self.v_carina - rng.uniform(0.03, 0.07)
                ctrl = [(0.0, -0.02), (rng.uniform(-0.01, 0.01), 0.5 * tip_v), (0.0, tip_v)]
                r = 0.011
                for off in (-r, r):
                    add(ctrl, 0.5, plastic=True, offset=off)
                tip = add(ctrl, 1.0, offset=r * 0.6)
                tips[device] = {"tip_uv": [0.0, round(tip_v, 4)],
                                "tip_above_carina": round(self.v_carina - tip_v, 4)}
            elif device == "nasogastric tube":
                stomach_v = self.dome["left"] + rng.uniform(0.06, 0.1)
                ctrl = [(0.01, -0.02), (0.02, self.v_carina), (0.005, self.dome["left"] + 0.02),
                        (0.1, stomach_v + 0.03), (rng.uniform(0.12, 0.18), stomach_v)]
                tip = add(ctrl, 1.1)
                tips[device] = {"tip_uv": [round(float(tip[0]), 4), round(float(tip[1]), 4)],
                                "tip_below_diaphragm": round(float(tip[1]) - self.dome["left"], 4)}
            elif device in ("central line", "picc"):
                tip = (-rng.uniform(0.015, 0.03), self.v_carina + rng.uniform(0.02, 0.07))
                if device == "central line":  # right internal jugular
                    ctrl = [(-0.1, -0.02), (-0.06, self.v_apex), (-0.035, self.v_carina - 0.06), tip]
                else:  # left arm PICC through the axillary / subclavian veins
                    ctrl = [(0.5, self.v_apex + 0.12), (0.3, self.v_apex - 0.02), (0.1, self.v_apex + 0.02),
                            (0.0, self.v_carina - 0.05), tip]
                add(ctrl, 1.0)
                tips[device] = {"tip_uv": [round(tip[0], 4), round(tip[1], 4)]}
            elif device == "pacemaker":
                gu, gv = rng.uniform(0.17, 0.25), self.v_apex + rng.uniform(0.04, 0.08)
                gw, gh = 0.045, 0.033
                d = (np.abs(self.u - gu) / gw) ** 4 + (np.abs(self.v - gv) / gh) ** 4
                solid += 2.2 * np.clip((1 - d) * 6, 0, 1)
                ra = (-self.a_r * 0.5, self.v_hc - 0.6 * self.b_r)
                rv = (self.a_l * 0.55, self.v_hc + 0.02)
                add([(gu - 0.03, gv), (0.05, self.v_apex - 0.01), (-0.03, self.v_carina), (-0.05, ra[1] + 0.05), ra],
                    1.3)
                add([(gu - 0.03, gv + 0.01), (0.06, self.v_apex), (-0.02, self.v_carina + 0.03),
                     (-0.02, self.v_hc + 0.04), rv], 1.3)
                tips[device] = {"generator_uv": [round(gu, 4), round(gv, 4)],
                                "tip_uv": [[round(ra[0], 4), round(ra[1], 4)], [round(rv[0], 4), round(rv[1], 4)]]}
            elif device == "sternotomy wires":  # twisted loops over the sternum
                count = int(rng.integers(5, 8))
                levels = np.linspace(self.v_carina - 0.03, self.v_hc - 0.02, count)
                angle = np.linspace(0, 2 * np.pi, 40)
                for level in levels:
                    cu = rng.normal(0.0, 0.006)
                    loop = np.stack([cu + 0.014 * np.cos(angle), level + 0.006 * np.sin(angle)], axis=1)
                    pix, step = _polyline_points(self.frame.to_pixels(loop))
                    wires_pts.append(pix)
                    wires_w.append(np.full(len(pix), 1.4 * step))
                tips[device] = {"tip_uv": [[0.0, round(float(levels[0]), 4)], [0.0, round(float(levels[-1]), 4)]]}
        out = np.zeros_like(self.u)
        for pts, w, amp, sigma in ((wires_pts, wires_w, 0.9, 0.55), (plastic_pts, plastic_w, 0.45, 0.6)):
            if pts:
                s = max(0.5, sigma * self.scale)
                canvas = _splat(np.concatenate(pts), np.concatenate(w), size)
                out += amp * math.sqrt(2 * math.pi) * s * ndi.gaussian_filter(canvas, s)
        for tip in tips.values():  # tip positions also in image pixels
            tip_uv = np.asarray(tip["tip_uv"], dtype=np.float64).reshape(-1, 2)
            tip["tip_px"] = np.round(self.frame.to_pixels(tip_uv), 1).tolist()
        self.truth["findings"]["Support Devices"] = {**attrs, "measured": tips}
        return out, solid

    # -- composition
    def render(self) -> np.ndarray:
        p, rng, size, spec = self.p, self.rng, self.size, self.spec
        self.setup_heart()
        self.lungs()
        lungs = np.clip(self.lung["right"] + self.lung["left"], 0, 1)
        soft = ndi.gaussian_filter(lungs, 0.7 * self.scale)
        # lungs are thinnest at their margins and overlap the domes / soft tissue at apices and bases
        depth = soft * (0.7 + 0.3 * np.clip(_blur_large(lungs, 10 * self.scale), 0, 1))
        # soft tissue over the lower and lateral lungs (breasts, pectorals, posterior recesses)
        lower = _smoothstep((self.v - self.v_apex - 0.55 * self.lung_height) / (0.45 * self.lung_height))
        lateral = _smoothstep((np.abs(self.u) / (0.5 * self.width) - 0.55) / 0.45)
        depth *= 1.0 - p.soft_tissue * lower * (0.5 + 0.5 * lateral)
        vessels_thick, vessels_thin = self.vessels()
        zeros = np.zeros_like(depth)
        air, lines, pleural_air, pleural_line, bronchogram, wires, metal = (zeros,) * 7
        vessel_blur = 0.0
        if "Pneumothorax" in spec:
            pleural_air, pleural_line = self.pneumothorax(spec["Pneumothorax"])
        if "Edema" in spec:
            air, lines = self.edema(spec["Edema"])
            vessel_blur = {"mild": 0.5, "moderate": 0.7, "severe": 0.85}[spec["Edema"]["severity"]]
        if "Consolidation" in spec:
            bronchogram = self.consolidation(spec["Consolidation"])
            air = np.maximum(air, bronchogram)
        if "Pleural Effusion" in spec:
            air = np.maximum(air, self.effusion(spec["Pleural Effusion"]))
        if "Support Devices" in spec:
            wires, metal = self.devices(spec["Support Devices"])
        parenchyma = ndi.gaussian_filter(np.clip(self.parenchyma["right"] + self.parenchyma["left"], 0, 1),
                                         0.6 * self.scale)

        vessels = 0.5 * vessels_thick + 0.35 * vessels_thin + self.hila()
        if vessel_blur:
            vessels = (1 - vessel_blur) * vessels + vessel_blur * ndi.gaussian_filter(vessels, 1.5 * self.scale)
        texture = 0.03 * _smooth_noise(rng, size, 28) + 0.02 * ndi.gaussian_filter(
            rng.standard_normal((size, size)).astype(np.float32), 0.8 * self.scale)
        heart = ndi.gaussian_filter(self.heart, 1.0 * self.scale)
        heart *= 1 - _smoothstep((self.v - self.dome["left"]) / 0.05)
        thin = vessels_thin / (vessels_thin.max() + 1e-6)

        density = self.body()
        density -= 0.56 * depth * (1 - air)
        density -= 0.08 * pleural_air * depth
        density += (vessels * (1 - air) + texture * (1 - 0.5 * air)) * parenchyma
        density -= 0.12 * bronchogram * thin * parenchyma  # air bronchograms
        density += 0.12 * lines + 0.14 * pleural_line
        density += 0.06 * heart
        density -= self.airways() * (1 - lungs)
        if p.gastric_bubble:
            d = (((self.u - 0.22 * self.width) / (0.07 * self.width)) ** 2
                 + ((self.v - self.dome["left"] - 0.045) / 0.022) ** 2)
            density -= 0.25 * np.sqrt(np.clip(1 - d, 0, 1)) * (self.v > self.dome["left"] + 0.015)
        density += self.ribs() + self.clavicles() + self.spine() + self.shoulders()
        density += wires + metal
        self.density = density

        # detector: exponential response, exposure window, heel effect, gamma, quantum noise, blur
        k = p.exposure
        lo, hi = (1 - math.exp(-k * w) for w in p.window)
        image = (1.0 - np.exp(-k * np.clip(density, 0, None)) - lo) / (hi - lo)
        image *= 1.0 + 0.05 * (self.v - 0.5)
        image = np.clip(image, 0, 1) ** p.gamma
        image += p.noise * rng.standard_normal((size, size)).astype(np.float32) * np.sqrt(np.clip(image, 0.05, 1))
        image = ndi.gaussian_filter(image, p.blur * self.scale)
        self.truth.update({
            "ctr": round(self.ctr, 4),
            "heart_width_px": round((self.a_r + self.a_l) * size, 2),
            "thorax_width_px": round(self.width * size, 2),
            "rotation_deg": round(p.rotation_deg, 2),
            "lung_shape": p.shape.name,
        })
        if "Cardiomegaly" in spec:
            self.truth["findings"]["Cardiomegaly"] = {**spec["Cardiomegaly"], "measured": {"ctr": round(self.ctr, 4)}}
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

    ``spec`` is a finding specification (see :func:`complete_spec`); ``patient`` fixes the anatomy (a new
    one is drawn from ``rng`` otherwise, with real or procedural lungs per ``use_real_masks``). The truth
    holds the cardiothoracic ratio (``ctr``), heart / thorax widths, the lung outline used and, under
    ``findings``, each drawn finding's attributes and measurements. ``return_masks`` adds the lung and heart
    masks (float, image grid) under ``masks`` for checks. A finding marked ``uncertain`` is drawn mildly
    (borderline CTR 0.50-0.54, small effusion, tiny pneumothorax, faint smaller consolidation, milder edema).
    """
    if image_size < 16 or image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 and at least 16, not {image_size}")
    spec = complete_spec(spec, rng)
    if patient is None:
        patient = sample_patient(rng, use_real_masks)
    renderer = _Renderer(spec, rng, image_size, patient)
    image = renderer.render()
    truth = renderer.truth
    truth["spec"] = spec
    if return_masks:
        truth["masks"] = {"right_lung": renderer.lung["right"], "left_lung": renderer.lung["left"],
                          "heart": renderer.heart}
    return image, truth
