"""A report grammar: FINDINGS and IMPRESSION sentences for a finding specification.

The embedded dataset writes these reports when no real reports are installed (and always in the tests).
Sentences vary in wording (synonyms, sentence frames), carry laterality and severity, negate a random
selection of the absent findings ("No pneumothorax."), hedge uncertain findings ("Possible small left pleural
effusion.", "... cannot be excluded.") and phrase normal studies in several ways. Every phrase is written so
that the project's report labeler (:mod:`bundle.data.labeler`) reads back the intended label; a test checks
that agreement on the default classes.

The specification is the phantom's (:func:`bundle.data.embedded.spec.complete_spec`): ``{finding: attributes}``
with ``side`` / ``severity`` / ``zone`` / ``devices`` / ``uncertain``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..labels import DEFAULT_CLASSES, POSITIVE, UNCERTAIN
from .spec import PATHOLOGIES

__all__ = ["compose_report", "spec_labels"]


def _pick_one(rng: np.random.Generator, options: Sequence[str]) -> str:
    """One of ``options``, uniformly (repeat an option to make it more likely)."""
    return options[int(rng.integers(len(options)))]


def _capitalise(text: str) -> str:
    """Whitespace collapsed, first letter upper case."""
    text = " ".join(text.split())
    return text[:1].upper() + text[1:] if text else text


def _as_sentence(text: str) -> str:
    """Capitalised, ending with a full stop."""
    text = _capitalise(text.strip())
    return text if text.endswith(".") else text + "."


def spec_labels(spec: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """The labels a report for ``spec`` should carry over the default classes (1 / -1 / None).

    Absent findings are None (the report may negate them, which reads 0.0); "No Finding" is 1.0 when no
    pathology is present or uncertain (support devices do not count, as in CheXpert).
    """
    out: dict[str, float | None] = {}
    for name in DEFAULT_CLASSES:
        if name == "No Finding":
            continue
        attrs = spec.get(name)
        out[name] = None if attrs is None else (UNCERTAIN if attrs.get("uncertain") else POSITIVE)
    abnormal = any(out[n] is not None for n in PATHOLOGIES)
    out["No Finding"] = None if abnormal else POSITIVE
    return {name: out[name] for name in DEFAULT_CLASSES}


# ------------------------------------------------------------------------------------------------ phrases
_SMALL_WORDS = ("small", "small", "trace", "minimal")
_EFFUSION_SIZE_WORDS = {"small": _SMALL_WORDS, "moderate": ("moderate", "moderate-sized"), "large": ("large", "large")}
_PNEUMOTHORAX_SIZE_WORDS = {"small": ("small", "small", "tiny"), "large": ("large", "moderate-to-large")}
_CARDIOMEGALY_DEGREE_WORDS = {"mild": ("mild", "mild"), "moderate": ("moderate",), "severe": ("marked", "severe")}
_CARDIOMEGALY_ADVERBS = {"mild": "mildly", "moderate": "moderately", "severe": "markedly"}
_EDEMA_DEGREE_WORDS = {"mild": ("mild",), "moderate": ("moderate",), "severe": ("severe", "marked")}
_HEDGES = ("possible", "questionable", "probable", "likely", "suspected")


def _effusion_sentences(attrs: Mapping[str, Any], rng: np.random.Generator) -> tuple[str, str]:
    side, severity = attrs["side"], attrs["severity"]
    size = _pick_one(rng, _EFFUSION_SIZE_WORDS[severity])
    if side == "bilateral":
        noun = _pick_one(
            rng, ("bilateral pleural effusions", "bilateral pleural effusions", "pleural effusions bilaterally")
        )
    else:
        noun = _pick_one(
            rng, (f"{side} pleural effusion", f"{side} pleural effusion", f"{side}-sided pleural effusion")
        )
    if attrs.get("uncertain"):
        frame = _pick_one(
            rng,
            (
                f"{_pick_one(rng, _HEDGES)} {size} {noun}",
                f"a {size} {noun} cannot be excluded",
                f"{size} {noun} is not excluded",
                f"{size} {noun} may be present",
            ),
        )
        return _as_sentence(frame), _as_sentence(f"{_pick_one(rng, _HEDGES)} {size} {noun}")
    frame = _pick_one(
        rng,
        (
            f"there is a {size} {noun}",
            f"{size} {noun}",
            f"{size} {noun} is present",
            f"{size} {noun} with blunting of the costophrenic angle" if side != "bilateral" else f"{size} {noun}",
        ),
    )
    return _as_sentence(frame), _as_sentence(f"{size} {noun}")


def _pneumothorax_sentences(attrs: Mapping[str, Any], rng: np.random.Generator) -> tuple[str, str]:
    side, severity = attrs["side"], attrs["severity"]
    size = _pick_one(rng, _PNEUMOTHORAX_SIZE_WORDS[severity])
    where = _pick_one(rng, (f"{side} apical", f"{side}", f"{side}-sided")) if severity == "small" else side
    noun = f"{where} pneumothorax"
    if attrs.get("uncertain"):
        frame = _pick_one(
            rng,
            (
                f"{_pick_one(rng, ('possible', 'questionable', 'suspected'))} {size} {noun}",
                f"a {size} {noun} cannot be excluded",
                f"cannot exclude a {size} {noun}",
            ),
        )
        return _as_sentence(frame), _as_sentence(f"{_pick_one(rng, ('possible', 'questionable'))} {size} {noun}")
    frame = _pick_one(
        rng, (f"there is a {size} {noun}", f"{size} {noun}", f"a {size} {noun} is present with a visible pleural line")
    )
    return _as_sentence(frame), _as_sentence(f"{size} {noun}")


def _consolidation_sentences(attrs: Mapping[str, Any], rng: np.random.Generator) -> tuple[str, str]:
    side, zone = attrs["side"], attrs["zone"]
    if zone == "upper":
        place = _pick_one(rng, (f"{side} upper lobe", f"{side} upper lobe", f"{side} upper lung"))
    else:
        place = _pick_one(rng, (f"{side} lower lobe", f"{side} lung base", f"{side} base", f"{side} lower lobe"))
    if attrs.get("uncertain"):
        frame = _pick_one(
            rng,
            (
                f"{_pick_one(rng, _HEDGES)} {place} consolidation",
                f"{_pick_one(rng, ('subtle', 'faint', 'patchy'))} opacity in the {place} may represent "
                f"early consolidation",
                f"{place} consolidation cannot be excluded",
                f"cannot exclude consolidation in the {place}",
            ),
        )
        return _as_sentence(frame), _as_sentence(f"{_pick_one(rng, _HEDGES)} {place} consolidation")
    frame = _pick_one(
        rng,
        (
            f"there is {_pick_one(rng, ('dense ', 'patchy ', 'focal ', ''))}consolidation in the {place}",
            f"{place} consolidation",
            f"{_pick_one(rng, ('dense', 'patchy', 'airspace'))} consolidation in the {place} with air bronchograms",
        ),
    )
    impression = _pick_one(rng, (f"{place} consolidation", f"{place} consolidation, compatible with pneumonia"))
    return _as_sentence(frame), _as_sentence(impression)


def _edema_sentences(attrs: Mapping[str, Any], rng: np.random.Generator) -> tuple[str, str]:
    degree = _pick_one(rng, _EDEMA_DEGREE_WORDS[attrs["severity"]])
    if attrs.get("uncertain"):
        frame = _pick_one(
            rng,
            (
                f"{_pick_one(rng, ('possible', 'probable', 'questionable'))} {degree} pulmonary edema",
                f"{degree} interstitial edema is not excluded",
                f"findings may represent {degree} pulmonary edema",
            ),
        )
        return _as_sentence(frame), _as_sentence(f"{_pick_one(rng, ('possible', 'probable'))} {degree} pulmonary edema")
    frame = _pick_one(
        rng,
        (
            f"there is {degree} pulmonary edema",
            f"{degree} pulmonary edema with perihilar predominance",
            f"{degree} interstitial edema with kerley b lines",
            f"{degree} pulmonary vascular congestion and interstitial edema",
        ),
    )
    return _as_sentence(frame), _as_sentence(f"{degree} pulmonary edema")


def _cardiomegaly_sentences(attrs: Mapping[str, Any], rng: np.random.Generator) -> tuple[str, str]:
    severity = attrs["severity"]
    degree = _pick_one(rng, _CARDIOMEGALY_DEGREE_WORDS[severity])
    if attrs.get("uncertain"):
        frame = _pick_one(
            rng,
            (
                "borderline heart size",
                "the heart size is borderline",
                "possible mild cardiomegaly",
                "borderline cardiomegaly",
            ),
        )
        return _as_sentence(frame), _as_sentence(
            _pick_one(rng, ("borderline heart size", "possible mild cardiomegaly"))
        )
    frame = _pick_one(
        rng,
        (
            f"{degree} cardiomegaly",
            f"the heart is {_CARDIOMEGALY_ADVERBS[severity]} enlarged",
            f"the cardiac silhouette is {_CARDIOMEGALY_ADVERBS[severity]} enlarged",
            f"there is {degree} enlargement of the cardiac silhouette",
        ),
    )
    return _as_sentence(frame), _as_sentence(f"{degree} cardiomegaly")


_DEVICE_SENTENCES = {
    "endotracheal tube": (
        "endotracheal tube terminates {d} cm above the carina",
        "the endotracheal tube tip is {d} cm above the carina",
        "ET tube in standard position, {d} cm above the carina",
    ),
    "nasogastric tube": (
        "nasogastric tube courses below the diaphragm with its tip in the stomach",
        "an enteric tube extends into the stomach",
        "NG tube tip projects over the stomach",
    ),
    "central line": (
        "right internal jugular central venous catheter with tip in the SVC",
        "right IJ central line terminates in the lower SVC",
        "a right internal jugular catheter ends at the cavoatrial junction",
    ),
    "picc": (
        "left PICC line with tip in the SVC",
        "left upper extremity PICC terminates in the lower SVC",
        "a left-sided PICC is in place with its tip in the SVC",
    ),
    "pacemaker": (
        "left chest wall pacemaker with leads in the right atrium and right ventricle",
        "a dual-chamber pacemaker is in place with leads in the right atrium and right ventricle",
        "left-sided pacemaker generator with two leads in standard position",
    ),
    "sternotomy wires": (
        "median sternotomy wires are intact",
        "intact median sternotomy wires",
        "sternotomy wires are in place",
    ),
}
_DEVICE_IMPRESSION = {
    "endotracheal tube": "endotracheal tube in satisfactory position",
    "nasogastric tube": "enteric tube in the stomach",
    "central line": "right IJ central venous catheter in the SVC",
    "picc": "left PICC line with tip in the SVC",
    "pacemaker": "pacemaker leads in standard position",
    "sternotomy wires": "median sternotomy wires",
}


def _device_sentences(attrs: Mapping[str, Any], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    findings, impression = [], []
    for device in attrs["devices"]:
        template = _pick_one(rng, _DEVICE_SENTENCES[device])
        findings.append(_as_sentence(template.format(d=int(rng.integers(3, 7)))))
        impression.append(_DEVICE_IMPRESSION[device])
    return findings, impression


_NEGATIONS = {
    "Cardiomegaly": (
        "the heart size is normal",
        "heart size is within normal limits",
        "normal heart size",
        "the cardiac silhouette is normal in size",
        "no cardiomegaly",
        "the cardiomediastinal silhouette is within normal limits",
    ),
    "Pleural Effusion": (
        "no pleural effusion",
        "there is no pleural effusion",
        "no evidence of pleural effusion",
        "the costophrenic angles are sharp",
    ),
    "Pneumothorax": ("no pneumothorax", "there is no pneumothorax", "no evidence of pneumothorax"),
    "Consolidation": (
        "no focal consolidation",
        "there is no focal consolidation",
        "no consolidation",
        "the lungs are clear",
    ),
    "Edema": (
        "no pulmonary edema",
        "there is no pulmonary edema",
        "no evidence of pulmonary edema",
        "the pulmonary vasculature is normal",
    ),
}
_COMBINED_NEGATIONS = (
    ("no pleural effusion or pneumothorax", ("Pleural Effusion", "Pneumothorax")),
    ("there is no pleural effusion or pneumothorax", ("Pleural Effusion", "Pneumothorax")),
    ("no focal consolidation, pleural effusion or pneumothorax", ("Consolidation", "Pleural Effusion", "Pneumothorax")),
    ("no pulmonary edema or focal consolidation", ("Edema", "Consolidation")),
)
_NORMAL_IMPRESSIONS = (
    "no acute cardiopulmonary process",
    "no acute cardiopulmonary abnormality",
    "no acute intrathoracic process",
    "normal chest radiograph",
    "no radiographic evidence of acute cardiopulmonary disease",
)
_OTHER_NORMAL_FINDINGS = (
    "the mediastinal contours are normal",
    "the visualized osseous structures are unremarkable",
    "no acute osseous abnormality",
    "the hilar contours are normal",
)


def compose_report(spec: Mapping[str, Mapping[str, Any]], rng: np.random.Generator) -> dict[str, str]:
    """FINDINGS and IMPRESSION text for a completed finding specification.

    Present findings come in the usual reading order (devices, lungs, pleura, heart); absent findings are
    negated with probability 0.75 each (sometimes two or three in one sentence); normal studies get one of
    several normal impressions.
    """
    present = {name: attrs for name, attrs in spec.items() if name in PATHOLOGIES or name == "Support Devices"}
    findings: list[str] = []
    impression: list[str] = []
    if "Support Devices" in present:
        device_findings, device_impression = _device_sentences(present["Support Devices"], rng)
        findings.extend(device_findings)
        impression.extend(device_impression)
    builders = {
        "Consolidation": _consolidation_sentences,
        "Edema": _edema_sentences,
        "Pleural Effusion": _effusion_sentences,
        "Pneumothorax": _pneumothorax_sentences,
        "Cardiomegaly": _cardiomegaly_sentences,
    }
    positive_impressions = []
    for name in ("Consolidation", "Edema", "Pleural Effusion", "Pneumothorax", "Cardiomegaly"):
        if name in present:
            sentence, summary = builders[name](present[name], rng)
            findings.append(sentence)
            positive_impressions.append(summary)

    # negations of absent findings ("lungs are clear" only when nothing is in the lungs)
    absent = [
        n
        for n in ("Consolidation", "Edema", "Pleural Effusion", "Pneumothorax", "Cardiomegaly")
        if n not in present and rng.random() < 0.75
    ]
    negations: list[str] = []
    combined = [c for c in _COMBINED_NEGATIONS if all(n in absent for n in c[1])]
    if combined and rng.random() < 0.5:
        text, covered = combined[int(rng.integers(len(combined)))]
        negations.append(_as_sentence(text))
        absent = [n for n in absent if n not in covered]
    lungs_abnormal = "Edema" in present or "Consolidation" in present
    for name in absent:
        options = [o for o in _NEGATIONS[name] if not (lungs_abnormal and o == "the lungs are clear")]
        if "Cardiomegaly" in present or "Edema" in present:
            options = [o for o in options if "cardiomediastinal" not in o]
        negations.append(_as_sentence(_pick_one(rng, options)))
    order = rng.permutation(len(negations))
    findings.extend(negations[i] for i in order)
    if rng.random() < 0.4:
        findings.append(_as_sentence(_pick_one(rng, _OTHER_NORMAL_FINDINGS)))

    if positive_impressions:
        impression = positive_impressions + impression
    elif not impression:
        impression = [_pick_one(rng, _NORMAL_IMPRESSIONS)]
    else:
        impression = impression + [_pick_one(rng, ("no acute cardiopulmonary process", "otherwise no acute findings"))]
    if not findings:
        findings.append(_as_sentence(_pick_one(rng, ("the lungs are clear", "the heart size is normal"))))
    return {"findings": " ".join(findings), "impression": " ".join(_as_sentence(s) for s in impression)}
