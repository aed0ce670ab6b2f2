"""The targets the ``full`` setting is held to (:data:`bundle.experiments.settings.TARGETS`), the memorisation audit,
the limited-label settings against ``full``, and the rotation comparison of each limited-label setting with its
twin trained without rotation self-supervision; each with its Markdown table.

Targets are never lowered: a miss is stated with its size, in the measure's units and as a share of the target, and
the baselines are scored against the same thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bundle.experiments.settings import (
    BASELINE_KEYS,
    LIMITED_LABEL_KEYS,
    LIMITED_LABEL_TOLERANCE,
    NO_ROTATION_SUFFIX,
    ROTATION_KEYS,
    SETTINGS,
    TARGET_SETTING,
    TARGETS,
)
from bundle.experiments.tables import aggregate_baselines, by_setting, fmt, setting_stats


def _compare(value: float | None, op: str, threshold: float | None) -> dict[str, Any]:
    """``status`` (met / missed / n/a), ``margin`` (how far past the threshold, negative when missed, in the
    measure's units) and ``relative_margin`` (the margin as a share of the threshold)."""
    if value is None or threshold is None:
        return {"status": "n/a", "margin": None, "relative_margin": None}
    margin = value - threshold if op == ">=" else threshold - value
    relative = margin / abs(threshold) if threshold else None
    return {"status": "met" if margin >= 0 else "missed", "margin": margin, "relative_margin": relative}


def _skip_reasons(rows: Sequence[Mapping[str, Any]], *keys: str | None) -> list[str]:
    """The suite's reasons, without repeats, why ``keys`` are None in ``rows``."""
    reasons = [
        f"{key}: {row.get('summary_skipped', {}).get(key)}"
        for row in rows
        for key in keys
        if key is not None and row.get(key) is None and row.get("summary_skipped", {}).get(key)
    ]
    return list(dict.fromkeys(reasons))


def evaluate_targets(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every target of :data:`TARGETS` on the ``full`` setting's mean over seeds (its baselines beside it, scored
    against the same threshold), the memorisation audit over every run, and each limited-label setting against
    ``full`` (within :data:`LIMITED_LABEL_TOLERANCE` on :data:`LIMITED_LABEL_KEYS`).

    Each entry: ``setting``, ``measure``, ``wording``, ``op``, ``factor``, ``reference`` (key or None),
    ``reference_setting``, ``reference_value``, ``threshold``, ``value`` (mean over seeds), ``n_seeds``, ``status``
    (met / missed / n/a), ``margin`` and ``relative_margin`` (negative: the size of a miss), ``baselines`` and, for
    n/a, ``reasons``."""
    groups = by_setting(rows)
    means = {setting: setting_stats(group)[0] for setting, group in groups.items()}
    full_rows = groups.get(TARGET_SETTING, [])
    full = means.get(TARGET_SETTING, {})
    full_baselines = aggregate_baselines(full_rows)
    out: list[dict[str, Any]] = []
    for target in TARGETS:
        value = full.get(target.key)
        reference_value = full.get(target.reference) if target.reference else None
        if target.reference is None:
            threshold: float | None = target.factor
        else:
            threshold = target.factor * reference_value if reference_value is not None else None
        entry: dict[str, Any] = {
            "setting": TARGET_SETTING,
            "measure": target.key,
            "wording": target.wording,
            "op": target.op,
            "factor": target.factor,
            "reference": target.reference,
            "reference_setting": TARGET_SETTING if target.reference else None,
            "reference_value": reference_value,
            "threshold": threshold,
            "value": value,
            "n_seeds": len(full_rows),
            **_compare(value, target.op, threshold),
        }
        entry["baselines"] = {
            name: {
                "value": block["mean"].get(target.key),
                **_compare(block["mean"].get(target.key), target.op, threshold),
            }
            for name, block in full_baselines.items()
            if target.key in BASELINE_KEYS
        }
        if entry["status"] == "n/a":
            entry["reasons"] = (
                _skip_reasons(full_rows, target.key, target.reference) if full_rows else [f"no {TARGET_SETTING} run"]
            )
        out.append(entry)

    flagged = [f"{row['setting']} seed {row['seed']}" for row in rows if row.get("memorisation_flag") is True]
    unaudited = [
        f"{row['setting']} seed {row['seed']}" for row in rows if not isinstance(row.get("memorisation_flag"), bool)
    ]
    status = "missed" if flagged else ("n/a" if len(unaudited) == len(rows) else "met")
    out.append(
        {
            "setting": "every run",
            "measure": "memorisation_flag",
            "wording": "memorisation audit clean",
            "op": "==",
            "factor": None,
            "reference": None,
            "reference_setting": None,
            "reference_value": None,
            "threshold": 0,
            "value": len(flagged),
            "n_seeds": len(rows),
            "status": status,
            "margin": -len(flagged) if flagged else (0 if status == "met" else None),
            "relative_margin": None,
            "flagged": flagged,
            "unaudited": unaudited,
            "baselines": {},
        }
    )

    for setting, group in groups.items():
        if not setting.startswith("label_fraction"):
            continue
        for key in LIMITED_LABEL_KEYS:
            reference_value = full.get(key)
            threshold = (1 - LIMITED_LABEL_TOLERANCE) * reference_value if reference_value is not None else None
            value = means[setting].get(key)
            entry = {
                "setting": setting,
                "measure": key,
                "wording": f"within {LIMITED_LABEL_TOLERANCE:.0%} of full labels",
                "op": ">=",
                "factor": 1 - LIMITED_LABEL_TOLERANCE,
                "reference": key,
                "reference_setting": TARGET_SETTING,
                "reference_value": reference_value,
                "threshold": threshold,
                "value": value,
                "n_seeds": len(group),
                **_compare(value, ">=", threshold),
                "baselines": {},
            }
            if entry["status"] == "n/a":
                entry["reasons"] = _skip_reasons(group, key) + (
                    _skip_reasons(full_rows, key) if full_rows else [f"no {TARGET_SETTING} run"]
                )
            out.append(entry)
    return out


def _target_text(entry: Mapping[str, Any]) -> str:
    if entry["measure"] == "memorisation_flag":
        return "no flag in any run"
    if entry["reference"] is None:
        return f"{entry['op']} {entry['factor']:g}"
    where = f" of {entry['reference_setting']}" if entry["reference_setting"] != entry["setting"] else ""
    return (
        f"{entry['op']} {entry['factor']:g} x {entry['reference']}{where} ({fmt(entry['reference_value'])}) "
        f"= {fmt(entry['threshold'])}"
    )


def _status_text(entry: Mapping[str, Any]) -> str:
    """met (with its margin), missed by how much (in the measure's units and as a share of the target), or n/a."""
    status = entry["status"]
    if entry["measure"] == "memorisation_flag":
        if status == "missed":
            return f"missed: flagged in {', '.join(entry['flagged'])}"
        unaudited = f" ({len(entry['unaudited'])} run(s) not audited)" if entry.get("unaudited") else ""
        return ("met" if status == "met" else "n/a: no run audited") + (unaudited if status == "met" else "")
    if status == "n/a":
        reasons = entry.get("reasons") or []
        return "n/a" + (f" ({'; '.join(reasons)})" if reasons else " (not computed)")
    margin, relative = entry["margin"], entry.get("relative_margin")
    if status == "met":
        share = f", {abs(relative):.1%} of the target" if relative is not None else ""
        return f"met (margin {margin:.3f}{share})"
    share = f" ({abs(relative):.1%} of the target)" if relative is not None else ""
    return f"missed by {-margin:.3f}{share}"


def _baselines_text(entry: Mapping[str, Any]) -> str:
    parts = [f"{name} {fmt(block['value'])} ({block['status']})" for name, block in entry.get("baselines", {}).items()]
    return "; ".join(parts) or "-"


def targets_table(targets: Sequence[Mapping[str, Any]]) -> list[str]:
    """One row per target (from :func:`evaluate_targets`): setting, measure, target, reached, met or missed and by
    how much, and the baselines on the same runs against the same threshold."""
    lines = [
        "| setting | measure | target | reached (mean over seeds) | status | baselines, same runs and threshold |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for entry in targets:
        if entry["measure"] == "memorisation_flag":
            reached = f"{entry['value']} of {entry['n_seeds']} runs flagged"
        else:
            reached = f"{fmt(entry['value'])} (n={entry['n_seeds']})"
        lines.append(
            f"| {entry['setting']} | {entry['measure']} | {_target_text(entry)} | {reached} | {_status_text(entry)} "
            f"| {_baselines_text(entry)} |"
        )
    return lines


def rotation_comparison(rows: Sequence[Mapping[str, Any]], preset_rotation: Any) -> list[dict[str, Any]]:
    """Each limited-label setting beside its ``_no_rotation`` twin (means over seeds of :data:`ROTATION_KEYS`): does
    rotation self-supervision carry the limited-label setting, as EMIXER claims? ``use_rotation`` says what each
    side trained with (the setting's override, else the preset's ``preset_rotation``); when both are the same the
    pair differs by nothing but chance."""
    groups = by_setting(rows)
    means = {setting: setting_stats(group)[0] for setting, group in groups.items()}
    out = []
    for setting in groups:
        twin = setting + NO_ROTATION_SUFFIX
        if not setting.startswith("label_fraction") or setting.endswith(NO_ROTATION_SUFFIX) or twin not in groups:
            continue
        with_rotation = SETTINGS.get(setting, {}).get("use_rotation_loss", preset_rotation)
        without = SETTINGS.get(twin, {}).get("use_rotation_loss", preset_rotation)
        for key in ROTATION_KEYS:
            a, b = means[setting].get(key), means[twin].get(key)
            out.append(
                {
                    "setting": setting,
                    "twin": twin,
                    "use_rotation": [with_rotation, without],
                    "same_training_config": with_rotation == without,
                    "measure": key,
                    "with_rotation": a,
                    "without_rotation": b,
                    "difference": a - b if a is not None and b is not None else None,
                    "n_seeds": [len(groups[setting]), len(groups[twin])],
                }
            )
    return out


def rotation_table(comparison: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows of :func:`rotation_comparison` as a table, with a line where a pair trained the same config."""
    lines = [
        "| setting vs twin | use_rotation_loss (setting / twin) | measure | setting | twin | setting - twin |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    same = []
    for entry in comparison:
        flags = " / ".join(fmt(v) for v in entry["use_rotation"])
        lines.append(
            f"| {entry['setting']} vs {entry['twin']} | {flags} | {entry['measure']} | {fmt(entry['with_rotation'])} "
            f"| {fmt(entry['without_rotation'])} | {fmt(entry['difference'])} |"
        )
        if entry["same_training_config"]:
            same.append(f"{entry['setting']} / {entry['twin']}")
    for pair in dict.fromkeys(same):
        lines += [
            "",
            (
                f"{pair}: both trained with the same use_rotation_loss under this preset, so their difference is "
                "chance (seeds), not self-supervision."
            ),
        ]
    return lines
