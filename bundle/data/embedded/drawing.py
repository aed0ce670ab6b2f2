"""Raster primitives of the phantom: the patient frame, smooth noise, soft shapes and line splatting.

Coordinates: ``u`` is the horizontal patient-frame coordinate as a fraction of the image width (0 at the
patient midline, negative towards the patient's right, which is the image left), ``v`` the vertical one (0 at
the top). :class:`PatientFrame` maps between that frame and image pixels (the patient is rotated and shifted).
Everything is vectorised numpy / scipy.ndimage.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from .patient import Patient


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index of every pixel of a ``size x size`` image (float32)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    return rows, cols


@lru_cache(maxsize=32)
def _upsampling_matrix(size: int, cells: int) -> np.ndarray:
    """``size x (cells + 2)`` Gaussian interpolation weights: a smooth separable upsampling."""
    x = np.linspace(0.5, cells + 0.5, size)[:, None]
    w = np.exp(-0.5 * ((x - np.arange(cells + 2)[None, :]) / 0.6) ** 2)
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))  # unit variance for white coarse noise
    return w.astype(np.float32)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field (about unit variance) from a ``cells x cells`` grid upsampled to ``size``."""
    coarse = rng.standard_normal((cells + 2, cells + 2)).astype(np.float32)
    weights = _upsampling_matrix(size, cells)
    # einsum's own loops: a tiny BLAS product is slow when other processes compete for the cores
    return np.einsum("jk,lk->jl", np.einsum("ij,jk->ik", weights, coarse), weights)


def blur_large(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a large sigma, computed at a quarter of the resolution."""
    factor = 4 if image.shape[0] >= 64 else 1
    if factor == 1:
        return ndi.gaussian_filter(image, sigma)
    small = image.reshape(image.shape[0] // factor, factor, image.shape[1] // factor, factor).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, sigma / factor)
    return ndi.zoom(small, factor, order=1, grid_mode=True, mode="nearest")


def smoothstep(x: np.ndarray | float) -> np.ndarray:
    """0 below 0, 1 above 1, the cubic ``3x^2 - 2x^3`` between: a soft edge."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def cylinder_thickness(distance: np.ndarray, half_width: float) -> np.ndarray:
    """Projected thickness of a cylinder of radius ``half_width`` at ``distance`` from its axis (0..1)."""
    return np.sqrt(np.clip(1.0 - (distance / half_width) ** 2, 0.0, None))


def distance_to_segment(
    u: np.ndarray, v: np.ndarray, start: tuple[float, float], end: tuple[float, float]
) -> np.ndarray:
    """Distance of each point (u, v) to the segment from ``start`` to ``end``."""
    du, dv = end[0] - start[0], end[1] - start[1]
    t = np.clip(((u - start[0]) * du + (v - start[1]) * dv) / (du * du + dv * dv + 1e-12), 0.0, 1.0)
    return np.hypot(u - start[0] - t * du, v - start[1] - t * dv)


def bezier_curve(control_points: np.ndarray, count: int) -> np.ndarray:
    """``count`` points along the Bezier curve with ``control_points`` (n x 2)."""
    degree = len(control_points) - 1
    t = np.linspace(0.0, 1.0, count)[:, None]
    coeffs = [math.comb(degree, k) * t**k * (1 - t) ** (degree - k) for k in range(degree + 1)]
    return sum(c * p for c, p in zip(coeffs, control_points))


class PatientFrame:
    """Patient frame <-> image pixels (rotation about the image centre, then shift).

    ``u`` / ``v`` hold the patient-frame coordinates of every image pixel.
    """

    def __init__(self, size: int, patient: Patient) -> None:
        self.size = size
        angle = math.radians(patient.rotation_deg)
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self.centre = (size - 1) / 2
        self.shift_x, self.shift_y = patient.shift[0] * size, patient.shift[1] * size
        rows, cols = pixel_grid(size)
        x_centred, y_centred = cols - self.centre, rows - self.centre
        x_patient = self.cos * x_centred + self.sin * y_centred - self.shift_x
        y_patient = -self.sin * x_centred + self.cos * y_centred + self.centre - self.shift_y
        self.u = (x_patient / size).astype(np.float32)
        self.v = (y_patient / size).astype(np.float32)

    def to_pixels(self, uv: np.ndarray) -> np.ndarray:
        """(n, 2) patient (u, v) -> (n, 2) image (x, y) pixel coordinates."""
        x_patient = uv[:, 0] * self.size + self.shift_x
        y_patient = uv[:, 1] * self.size - self.centre + self.shift_y
        x = self.cos * x_patient - self.sin * y_patient + self.centre
        y = self.sin * x_patient + self.cos * y_patient + self.centre
        return np.stack([x, y], axis=1)


def splat_points(points: np.ndarray, weights: np.ndarray | float, size: int) -> np.ndarray:
    """Accumulate weighted points (x, y pixels) into a ``size x size`` image with bilinear weights."""
    x, y = points[:, 0], points[:, 1]
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), x.shape)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    out = np.zeros(size * size, dtype=np.float64)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
        out += np.bincount(yi[inside] * size + xi[inside], weights=(weights * w)[inside], minlength=size * size)
    return out.reshape(size, size).astype(np.float32)


def resample_polyline(curve: np.ndarray, spacing: float = 0.4) -> tuple[np.ndarray, float]:
    """Resample a dense curve (pixels) to about ``spacing`` px steps; returns points and the step length."""
    segment_lengths = np.hypot(*np.diff(curve, axis=0).T)
    length = float(segment_lengths.sum())
    count = max(2, int(length / spacing) + 1)
    arc_length = np.concatenate([[0.0], np.cumsum(segment_lengths)])
    t = np.linspace(0.0, length, count)
    points = np.stack([np.interp(t, arc_length, curve[:, 0]), np.interp(t, arc_length, curve[:, 1])], axis=1)
    return points, length / (count - 1)


def draw_polylines(points: list[np.ndarray], weights: list[np.ndarray], size: int, sigma: float) -> np.ndarray:
    """Splat resampled polylines and blur them by ``sigma`` px, scaled so a line's profile integrates to its
    weight per pixel of length (a line of constant density whatever the blur)."""
    canvas = splat_points(np.concatenate(points), np.concatenate(weights), size)
    return math.sqrt(2 * math.pi) * sigma * ndi.gaussian_filter(canvas, sigma)
