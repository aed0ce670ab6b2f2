"""Finding attributes read from a report's words: laterality, severity, zone and device types.

Used for real (IU X-ray) reports: the phantom then draws what the report says where it says it, and draws the
attributes the report leaves open at random (:func:`bundle.data.embedded.spec.complete_spec`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from ..labels import NEGATIVE, POSITIVE, UNCERTAIN
from .spec import PHANTOM_FINDINGS

_SIDE_BILATERAL = re.compile(r"\b(?:bilateral\w*|both|bibasilar|bibasal|biapical)\b")
_SEVERITY_WORDS = {
    "Pleural Effusion": (
        ("large", r"\b(?:large|massive|extensive|big|sizable|substantial)\b"),
        ("moderate", r"\bmoderate\w*\b"),
        ("small", r"\b(?:small|trace|tiny|minimal|minimum|slight|mild)\b"),
    ),
    "Pneumothorax": (
        ("large", r"\b(?:large|moderate|sizable|significant|tension)\b"),
        ("small", r"\b(?:small|tiny|trace|minimal|apical|slight)\b"),
    ),
    "Edema": (
        ("severe", r"\b(?:severe|marked|extensive|florid|alveolar)\b"),
        ("moderate", r"\bmoderate\w*\b"),
        ("mild", r"\b(?:mild|minimal|slight|trace|subtle|early)\b"),
    ),
    "Cardiomegaly": (
        ("severe", r"\b(?:marked|markedly|severe|severely|massive\w*|significant\w*)\b"),
        ("moderate", r"\bmoderate\w*\b"),
        ("mild", r"\b(?:mild|mildly|slight|slightly|minimal|borderline)\b"),
    ),
}
_ZONE_WORDS = (
    ("upper", r"\b(?:upper|apical|apex|apices)\b"),
    ("lower", r"\b(?:lower|bases?|basilar|basal|bibasilar|middle|lingula\w*|retrocardiac|infrahilar)\b"),
)
_DEVICE_WORDS = (
    ("endotracheal tube", r"endotracheal|\bett?\b|\bet tube|tracheostomy"),
    ("nasogastric tube", r"nasogastric|\bng\b|enteric|feeding tube|orogastric|\bog\b|dobhoff"),
    ("picc", r"\bpicc"),
    ("central line", r"central (?:venous )?(?:line|catheter)|\bij\b|jugular|subclavian|\bport\b|dialysis|swan"),
    ("pacemaker", r"pacemaker|pacer|pacing|\b(?:a)?icd\b|defibrillator|\bleads?\b"),
    ("sternotomy wires", r"sternotomy|sternal|cerclage"),
)


def finding_attributes(
    text: str,
    labels: Mapping[str, float | None],
    mentions: Sequence[Any] | None = None,
) -> dict[str, dict]:
    """Phantom spec for a labelled report: laterality / severity / zone / devices read near the mentions.

    Only attributes the report states are set (:func:`bundle.data.embedded.spec.complete_spec` draws the others).
    ``mentions`` are the labeler's classified mentions of ``text`` (computed when not given).
    """
    if mentions is None:
        from ..labeler import mentions as find_mentions

        mentions = find_mentions(text)
    windows: dict[str, list[str]] = defaultdict(list)
    for m in mentions:
        if m.label != NEGATIVE:
            windows[m.observation].append(m.sentence[max(0, m.start - 45) : m.end + 30])
    spec: dict[str, dict] = {}
    for name in PHANTOM_FINDINGS:
        value = labels.get(name)
        if value not in (POSITIVE, UNCERTAIN):
            continue
        attrs: dict[str, Any] = {"uncertain": value == UNCERTAIN}
        context = " ".join(windows.get(name, []))
        if name in ("Pleural Effusion", "Pneumothorax", "Consolidation"):
            left, right = re.search(r"\bleft\b", context), re.search(r"\bright\b", context)
            if _SIDE_BILATERAL.search(context) or (left and right):
                if name == "Pleural Effusion":
                    attrs["side"] = "bilateral"
            elif left:
                attrs["side"] = "left"
            elif right:
                attrs["side"] = "right"
        for severity, pattern in _SEVERITY_WORDS.get(name, ()):
            if re.search(pattern, context):
                attrs["severity"] = severity
                break
        if name == "Consolidation":
            for zone, pattern in _ZONE_WORDS:
                if re.search(pattern, context):
                    attrs["zone"] = zone
                    break
        if name == "Support Devices":
            lower = text.lower()
            devices = [d for d, pattern in _DEVICE_WORDS if re.search(pattern, lower)]
            if devices:
                attrs["devices"] = devices[:2]
        spec[name] = attrs
    return spec
