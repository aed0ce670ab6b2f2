"""Lung outlines for the phantom: real lung masks drawn on radiographs, or a procedural fallback.

Real outlines come from torchxrayvision's installed ``semantic_masks_v7labs_lungs.zip`` (read at run time and
never copied into the repository); masks that do not split into two sensible lungs are skipped. Without the
package, :func:`procedural_lung_shape` draws smooth lungs with apices, diaphragm domes and costophrenic angles.
Each outline becomes a :class:`LungShape` in a canonical square box with its per-row lateral / medial borders,
which the renderer warps onto the drawn heart and mediastinum.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..errors import DataError

#: torchxrayvision's archive of lung masks drawn on real radiographs (in its installed ``data`` folder).
LUNG_MASK_ARCHIVE = "semantic_masks_v7labs_lungs.zip"
#: Side of the square box the lung outlines are resampled to.
CANONICAL_SIZE = 128


@dataclass(frozen=True)
class LungShape:
    """A pair of lung outlines in a canonical ``C x C`` box (the box spans both lungs).

    ``right`` / ``left`` are binary float32 masks (right lung on the image left). Per canonical row,
    ``lateral_*`` is the lateral-most and ``medial_*`` the medial-most column of that lung (NaN where the row
    has no lung); ``midline`` is the column of the patient midline; ``aspect`` the box height / width;
    ``rows[side]`` = (apex row, lowest row = costophrenic angle, row of the top of the diaphragm dome).
    """

    name: str
    right: np.ndarray
    left: np.ndarray
    aspect: float
    midline: float
    lateral_right: np.ndarray
    medial_right: np.ndarray
    lateral_left: np.ndarray
    medial_left: np.ndarray
    rows: dict[str, tuple[int, int, int]]


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
    columns = np.flatnonzero(mask.any(axis=0))
    span = columns[-1] - columns[0]
    first, last = columns[0] + int(0.25 * span), columns[0] + int(0.75 * span)
    middle = mask[:, first : last + 1]
    lowest_row = middle.shape[0] - 1 - np.argmax(middle[::-1], axis=0)
    return int(lowest_row[middle.any(axis=0)].min())


def lung_shape_from_masks(right: np.ndarray, left: np.ndarray, name: str, aspect: float) -> LungShape:
    """Build a :class:`LungShape` from two canonical binary masks (right lung = image left)."""
    right, left = right.astype(bool), left.astype(bool)
    lateral_right, medial_right = _row_extents(right, lateral_is_min=True)
    lateral_left, medial_left = _row_extents(left, lateral_is_min=False)
    rows = {}
    for side, mask in (("right", right), ("left", left)):
        present = np.flatnonzero(mask.any(axis=1))
        rows[side] = (int(present[0]), int(present[-1]), _dome_row(mask))
    # the midline: halfway between the medial borders of the upper lungs (trachea level, above the heart)
    top = max(rows["right"][0], rows["left"][0])
    bottom = min(rows["right"][1], rows["left"][1])
    upper = np.zeros(len(medial_right), dtype=bool)
    upper[top + int(0.1 * (bottom - top)) : top + int(0.35 * (bottom - top)) + 1] = True
    both = ~np.isnan(medial_right) & ~np.isnan(medial_left)
    used = both & upper if (both & upper).any() else both
    midline = float(np.median((medial_right[used] + medial_left[used]) / 2)) if used.any() else right.shape[1] / 2
    return LungShape(
        name,
        right.astype(np.float32),
        left.astype(np.float32),
        float(aspect),
        midline,
        lateral_right,
        medial_right,
        lateral_left,
        medial_left,
        rows,
    )


def _resize_to_canonical(mask: np.ndarray, size: int) -> np.ndarray:
    """A cropped binary mask resampled to ``size x size``, holes filled."""
    zoom = (size / mask.shape[0], size / mask.shape[1])
    resized = ndi.zoom(mask.astype(np.float32), zoom, order=1, grid_mode=True, mode="nearest")
    return ndi.binary_fill_holes(resized[:size, :size] > 0.5)


def _shape_from_mask_image(mask: np.ndarray, name: str, size: int) -> LungShape | None:
    """Two-lung :class:`LungShape` from one binary mask image, or None when it is not a sensible pair."""
    labelled, count = ndi.label(mask)
    if count < 2:
        return None
    areas = ndi.sum_labels(mask, labelled, index=np.arange(1, count + 1))
    order = np.argsort(areas)[::-1]
    largest, second = areas[order[0]], areas[order[1]]
    if second < 0.4 * largest or largest + second < 0.9 * mask.sum() or second < 200:
        return None
    components = [labelled == order[0] + 1, labelled == order[1] + 1]
    boxes = [ndi.find_objects(c.astype(np.int32))[0] for c in components]
    # sorted by their left edge: the image-left component is the right lung
    components, boxes = zip(*sorted(zip(components, boxes), key=lambda pair: pair[1][1].start))
    (right_rows, right_cols), (left_rows, left_cols) = boxes
    height, width = mask.shape
    top, bottom = min(right_rows.start, left_rows.start), max(right_rows.stop, left_rows.stop)
    first_col, last_col = right_cols.start, left_cols.stop
    if top <= 1 or bottom >= height - 1 or first_col <= 1 or last_col >= width - 1:  # cut off by the image border
        return None
    if right_cols.stop > left_cols.start + 0.05 * (last_col - first_col):  # not side by side
        return None
    for box_rows, box_cols in boxes:
        if not 1.0 <= (box_rows.stop - box_rows.start) / (box_cols.stop - box_cols.start) <= 4.5:
            return None
    aspect = (bottom - top) / (last_col - first_col)
    if not 0.6 <= aspect <= 1.5:
        return None
    crop = (slice(top, bottom), slice(first_col, last_col))
    right = _resize_to_canonical(components[0][crop], size)
    left = _resize_to_canonical(components[1][crop], size)
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
    path = Path(torchxrayvision.__file__).parent / "data" / LUNG_MASK_ARCHIVE
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
        raise DataError(LUNG_MASK_ARCHIVE, "torchxrayvision's lung masks are not installed (use the procedural lungs)")
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
    size = canonical_size
    row, col = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    midline = rng.uniform(0.48, 0.52)
    masks = []
    for sign in (-1, 1):  # right lung (image left), then left lung
        # lateral coordinate: 0 at the midline, 1 at the lateral wall
        lateral = (midline - col) / midline if sign < 0 else (col - midline) / (1 - midline)
        top = rng.uniform(0.0, 0.04) + (0.02 if sign > 0 else 0.0)
        bottom = 1.0 - (rng.uniform(0.04, 0.09) if sign < 0 else rng.uniform(0.0, 0.03))
        apex_lateral = rng.uniform(0.45, 0.6)
        exponent = rng.uniform(2.2, 2.8)
        # upper / lateral outline: a super-ellipse quadrant centred below the apex
        height = bottom - top
        below_apex = np.clip((bottom - 0.15 * height - row) / (0.85 * height), 0, None)
        outline = np.where(
            lateral > apex_lateral,
            np.clip((lateral - apex_lateral) / (1.0 - apex_lateral), 0, None) ** exponent,
            np.clip((apex_lateral - lateral) / apex_lateral, 0, None) ** exponent,
        )
        outline = outline + below_apex**exponent
        # lower outline: the diaphragm dome (highest over the middle of the hemidiaphragm)
        dome_height = rng.uniform(0.12, 0.2) * height
        arc = np.clip(np.sin(np.pi * np.clip(1.0 - lateral, 0, 1) ** 0.8), 0, None)
        dome = bottom - dome_height * arc**0.7 - 0.25 * dome_height * np.clip(1 - lateral, 0, 1)
        masks.append((outline <= 1.0) & (row >= top) & (row <= dome) & (lateral >= 0) & (lateral <= 1))
    aspect = rng.uniform(0.85, 1.05)
    return lung_shape_from_masks(masks[0], masks[1], "procedural", aspect)


def real_masks_usable(use_real_masks: bool | str) -> bool:
    """Resolve ``use_real_masks`` (True / False / "auto") against what is installed."""
    if use_real_masks == "auto":
        return real_lung_mask_path() is not None
    if isinstance(use_real_masks, str):
        raise ValueError(f"use_real_masks must be True, False or 'auto', not {use_real_masks!r}")
    return bool(use_real_masks)
