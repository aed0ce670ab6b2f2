"""Finding specifications: which findings the phantom draws, their attributes, and how label sets are sampled.

A *finding specification* maps a finding name (:data:`PHANTOM_FINDINGS`) to its attributes: ``side``,
``severity``, ``zone``, ``devices`` (a list of :data:`DEVICE_TYPES`), ``uncertain`` (drawn mildly) and, for
cardiomegaly, an optional exact ``ctr``. :func:`complete_spec` draws the attributes a spec leaves open;
:func:`sample_grammar_spec` draws a whole label set for the report grammar. The sign sizes per severity
(cardiothoracic ratio, effusion level, pneumothorax collapse, edema haze) live here too, beside the attribute
values they refine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..labels import DEFAULT_CLASSES

#: Findings the phantom can draw (the DEFAULT_CLASSES without "No Finding").
PHANTOM_FINDINGS: tuple[str, ...] = tuple(name for name in DEFAULT_CLASSES if name != "No Finding")
#: The drawn findings that are pathologies (everything but support devices).
PATHOLOGIES: tuple[str, ...] = tuple(name for name in PHANTOM_FINDINGS if name != "Support Devices")
DEVICE_TYPES: tuple[str, ...] = (
    "endotracheal tube",
    "nasogastric tube",
    "central line",
    "picc",
    "pacemaker",
    "sternotomy wires",
)

#: Allowed attribute values per finding (first = most common default where a choice is random).
FINDING_ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    "Cardiomegaly": {"severity": ("mild", "moderate", "severe")},
    "Pleural Effusion": {"side": ("right", "left", "bilateral"), "severity": ("small", "moderate", "large")},
    "Pneumothorax": {"side": ("right", "left"), "severity": ("small", "large")},
    "Consolidation": {"side": ("right", "left"), "zone": ("lower", "upper")},
    "Edema": {"severity": ("mild", "moderate", "severe")},
    "Support Devices": {},
}
#: Sampling weights of the values in :data:`FINDING_ATTRIBUTES` when a spec leaves an attribute open.
ATTRIBUTE_WEIGHTS: dict[str, dict[str, tuple[float, ...]]] = {
    "Cardiomegaly": {"severity": (0.5, 0.35, 0.15)},
    "Pleural Effusion": {"side": (0.35, 0.3, 0.35), "severity": (0.5, 0.35, 0.15)},
    "Pneumothorax": {"side": (0.5, 0.5), "severity": (0.65, 0.35)},
    "Consolidation": {"side": (0.55, 0.45), "zone": (0.65, 0.35)},
    "Edema": {"severity": (0.45, 0.4, 0.15)},
}
#: Sampling weights of :data:`DEVICE_TYPES`.
DEVICE_WEIGHTS = (0.25, 0.15, 0.22, 0.14, 0.14, 0.1)

#: Cardiothoracic ratio ranges: a normal heart, a borderline (uncertain) one and the cardiomegaly severities.
CARDIOTHORACIC_RATIO_RANGES = {
    "normal": (0.40, 0.48),
    "uncertain": (0.50, 0.54),
    "mild": (0.56, 0.60),
    "moderate": (0.60, 0.65),
    "severe": (0.65, 0.70),
}
#: Effusion fluid level as a fraction of the lung height above the costophrenic angle, per severity.
EFFUSION_LEVELS = {"small": (0.12, 0.2), "moderate": (0.28, 0.38), "large": (0.45, 0.60)}
#: Pneumothorax: the collapsed lung's scale relative to the full lung (smaller = larger pneumothorax).
PNEUMOTHORAX_COLLAPSE_SCALE = {"uncertain": (0.9, 0.93), "small": (0.8, 0.87), "large": (0.6, 0.72)}
#: Edema: peak added density of the perihilar haze, per severity.
EDEMA_HAZE = {"mild": 0.3, "moderate": 0.45, "severe": 0.6}


def weighted_choice(rng: np.random.Generator, values: tuple[str, ...], weights: tuple[float, ...] | None = None) -> str:
    """One of ``values``, drawn with ``weights`` (uniform when None)."""
    p = None if weights is None else np.asarray(weights) / np.sum(weights)
    return str(values[int(rng.choice(len(values), p=p))])


def sample_devices(rng: np.random.Generator) -> list[str]:
    """One or two device types (an endotracheal tube often comes with a nasogastric tube)."""
    first = weighted_choice(rng, DEVICE_TYPES, DEVICE_WEIGHTS)
    devices = [first]
    if first == "endotracheal tube" and rng.random() < 0.6:
        devices.append("nasogastric tube")
    elif rng.random() < 0.3:
        second = weighted_choice(rng, DEVICE_TYPES, DEVICE_WEIGHTS)
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
                value = weighted_choice(rng, values, ATTRIBUTE_WEIGHTS[name][key])
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


def sample_grammar_spec(rng: np.random.Generator, normal_fraction: float = 0.4) -> dict[str, dict]:
    """A label set from a small co-occurrence model (uncompleted spec: attributes are drawn later).

    Normal studies (probability ``normal_fraction``) occasionally carry a device. Abnormal studies come from
    one of four clinical pictures so findings co-occur as they do in practice; each present pathology is
    uncertain with probability 0.1.
    """
    if rng.random() < normal_fraction:
        return {"Support Devices": {}} if rng.random() < 0.06 else {}
    picture = int(rng.integers(4))
    rates = [  # Cardiomegaly, Pleural Effusion, Pneumothorax, Consolidation, Edema, Support Devices
        (0.75, 0.55, 0.02, 0.05, 0.65, 0.2),  # heart failure
        (0.25, 0.4, 0.25, 0.3, 0.25, 0.95),  # intensive care
        (0.1, 0.3, 0.02, 0.9, 0.05, 0.1),  # infection
        (0.4, 0.3, 0.35, 0.2, 0.1, 0.15),  # isolated findings
    ][picture]
    present = [name for name, rate in zip(PHANTOM_FINDINGS, rates) if rng.random() < rate]
    if not any(name in PATHOLOGIES for name in present):
        present.append(PATHOLOGIES[int(rng.integers(len(PATHOLOGIES)))])
    spec: dict[str, dict] = {}
    for name in PHANTOM_FINDINGS:
        if name in present:
            spec[name] = {"uncertain": bool(name != "Support Devices" and rng.random() < 0.1)}
    if picture == 0 and "Pleural Effusion" in spec and rng.random() < 0.6:
        spec["Pleural Effusion"]["side"] = "bilateral"
    return spec
