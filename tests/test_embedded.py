"""The embedded default dataset: phantom signs, report grammar vs labeler, MIMIC layout, determinism, learnability."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from bundle.benchmarks.embedded import run_benchmark
from bundle.data.embedded import (
    GROUND_TRUTH_CSV,
    PHANTOM_FINDINGS,
    complete_spec,
    compose_report,
    finding_attributes,
    iu_reports,
    iu_reports_available,
    load_real_lung_shapes,
    make_embedded_dataset,
    real_lung_mask_path,
    render_phantom,
    sample_grammar_spec,
    sample_patient,
    spec_labels,
)
from bundle.data.embedded.spec import PATHOLOGIES
from bundle.data.errors import DataError
from bundle.data.labeler import label_report
from bundle.data.labels import CHEXPERT_CLASSES, DEFAULT_CLASSES
from bundle.data.reports import normalise_report_text, xrv_iu_reports_path
from bundle.data.sources import read_mimic_cxr_jpg


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = Path(root) / name
            h.update(str(path.relative_to(folder)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _upright_patient(seed: int):
    return dataclasses.replace(sample_patient(np.random.default_rng(seed), use_real_masks=False), rotation_deg=0.0)


# ------------------------------------------------------------------------------------------------ phantom
def test_ctr_measured_from_rendered_masks():
    """Cardiomegaly: CTR > 0.55; otherwise 0.40-0.48; the drawn lungs and heart give the same ratio."""
    for seed in range(6):
        for cardiomegaly in (False, True):
            spec = {"Cardiomegaly": {}} if cardiomegaly else {}
            _, truth = render_phantom(
                spec, np.random.default_rng(seed), 96, patient=_upright_patient(seed), return_masks=True
            )
            ctr = truth["ctr"]
            assert (ctr > 0.55) if cardiomegaly else (0.40 <= ctr <= 0.48), (seed, ctr)
            masks = truth["masks"]
            lungs = (masks["right_lung"] + masks["left_lung"]) > 0.5
            heart = masks["heart"] > 0.5
            lung_cols, heart_cols = np.flatnonzero(lungs.any(axis=0)), np.flatnonzero(heart.any(axis=0))
            measured = (heart_cols[-1] - heart_cols[0] + 1) / (lung_cols[-1] - lung_cols[0] + 1)
            assert abs(measured - ctr) < 0.04, (seed, measured, ctr)
            # the lungs reach the heart border: the silhouette is the heart, not a gap left by the mask
            rows = np.flatnonzero(heart.any(axis=1) & (masks["right_lung"] > 0.5).any(axis=1))
            gaps = [heart[r].argmax() - np.flatnonzero(masks["right_lung"][r] > 0.5)[-1] for r in rows]
            assert min(gaps) <= 2


def _mean_in(image: np.ndarray, mask: np.ndarray) -> float:
    return float(image[mask].mean())


def test_each_finding_changes_its_region():
    """Same patient and seed with and without a finding: the sign appears where it should."""
    size = 96
    for seed in range(3):
        patient = _upright_patient(seed)
        base, truth = render_phantom({}, np.random.default_rng(100 + seed), size, patient=patient, return_masks=True)
        masks = truth["masks"]
        right, left = masks["right_lung"] > 0.5, masks["left_lung"] > 0.5
        rows = np.arange(size)[:, None]
        lower_right = right & (rows > np.flatnonzero(right.any(axis=1)).mean())

        def render(spec):
            return render_phantom(spec, np.random.default_rng(100 + seed), size, patient=patient)

        effusion, _ = render({"Pleural Effusion": {"side": "right", "severity": "large"}})
        assert _mean_in(effusion, lower_right) > _mean_in(base, lower_right) + 25
        assert abs(_mean_in(effusion, left) - _mean_in(base, left)) < 12  # the other side is untouched
        consolidation, _ = render({"Consolidation": {"side": "right", "zone": "lower"}})
        assert _mean_in(consolidation, lower_right) > _mean_in(base, lower_right) + 10
        edema, _ = render({"Edema": {"severity": "severe"}})
        assert _mean_in(edema, right) > _mean_in(base, right) + 8 and _mean_in(edema, left) > _mean_in(base, left) + 8
        ptx, truth_ptx = render({"Pneumothorax": {"side": "left", "severity": "large"}})
        assert truth_ptx["findings"]["Pneumothorax"]["measured"]["area_fraction"] > 0.15
        devices, truth_dev = render({"Support Devices": {"devices": ["endotracheal tube", "pacemaker"]}})
        assert (devices.astype(int) - base > 60).sum() > 20  # bright metal / tube pixels
        assert "tip_px" in truth_dev["findings"]["Support Devices"]["measured"]["endotracheal tube"]


def test_phantom_image_looks_like_a_radiograph():
    image, truth = render_phantom({}, np.random.default_rng(0), 128, patient=_upright_patient(0), return_masks=True)
    assert image.dtype == np.uint8 and image.shape == (128, 128)
    lungs = (truth["masks"]["right_lung"] + truth["masks"]["left_lung"]) > 0.5
    heart = truth["masks"]["heart"] > 0.5
    assert _mean_in(image, heart) > _mean_in(image, lungs) + 60  # mediastinum bright, lungs dark
    assert image[:, :3].mean() < _mean_in(image, heart)  # air outside the body darker than soft tissue


def test_complete_spec_rejects_unknown_values():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        complete_spec({"Atelectasis": {}}, rng)
    with pytest.raises(ValueError):
        complete_spec({"Pleural Effusion": {"side": "middle"}}, rng)
    spec = complete_spec({"Pleural Effusion": {"side": "left"}}, rng)
    assert spec["Pleural Effusion"]["side"] == "left" and spec["Pleural Effusion"]["severity"] in (
        "small",
        "moderate",
        "large",
    )


@pytest.mark.skipif(real_lung_mask_path() is None, reason="torchxrayvision's lung masks are not installed")
def test_real_lung_masks_shape_the_lungs():
    shapes = load_real_lung_shapes(limit=40)
    assert len(shapes) >= 10  # masks that are not a sensible pair of lungs are skipped, the others kept
    patient = sample_patient(np.random.default_rng(0), use_real_masks=True, max_masks=40)
    assert patient.shape.name != "procedural"
    image, truth = render_phantom({}, np.random.default_rng(0), 64, patient=patient, return_masks=True)
    assert truth["lung_shape"] == patient.shape.name
    assert (truth["masks"]["right_lung"] > 0.5).sum() > 100 and (truth["masks"]["left_lung"] > 0.5).sum() > 100


# ------------------------------------------------------------------------------------------------ reports
def test_grammar_reports_are_labelled_as_intended():
    """labeler(report) agrees with the specification on every default class in >= 97% of reports."""
    rng = np.random.default_rng(0)
    n, agree = 300, dict.fromkeys(DEFAULT_CLASSES, 0)
    for _ in range(n):
        names = [name for name in PHANTOM_FINDINGS if rng.random() < 0.3]
        spec = complete_spec(
            {name: {"uncertain": bool(rng.random() < 0.2 and name != "Support Devices")} for name in names}, rng
        )
        report = compose_report(spec, rng)
        assert report["findings"] and report["impression"]
        expected, got = spec_labels(spec), label_report(report["findings"] + " " + report["impression"])
        for name in DEFAULT_CLASSES:
            agree[name] += (got[name] == expected[name]) if expected[name] is not None else got[name] in (None, 0.0)
    for name, count in agree.items():
        assert count / n >= 0.97, (name, count / n)


def test_grammar_cooccurrence_model():
    rng = np.random.default_rng(1)
    specs = [sample_grammar_spec(rng, normal_fraction=0.4) for _ in range(600)]
    normal = np.mean([not any(n != "Support Devices" for n in s) for s in specs])
    assert 0.33 <= normal <= 0.47
    with_edema = [s for s in specs if "Edema" in s]
    assert np.mean(["Cardiomegaly" in s for s in with_edema]) > np.mean(["Cardiomegaly" in s for s in specs])


def test_finding_attributes_from_report_text():
    text = (
        "Small left pleural effusion. Large right pneumothorax. Right upper lobe consolidation. "
        "Moderate pulmonary edema. Mild cardiomegaly. Endotracheal tube and left PICC line in place."
    )
    spec = finding_attributes(text, label_report(text))
    assert spec["Pleural Effusion"] == {"uncertain": False, "side": "left", "severity": "small"}
    assert spec["Pneumothorax"]["side"] == "right" and spec["Pneumothorax"]["severity"] == "large"
    assert spec["Consolidation"]["side"] == "right" and spec["Consolidation"]["zone"] == "upper"
    assert spec["Edema"]["severity"] == "moderate" and spec["Cardiomegaly"]["severity"] == "mild"
    assert spec["Support Devices"]["devices"] == ["endotracheal tube", "picc"]
    hedged = "Possible bilateral pleural effusions."
    assert finding_attributes(hedged, label_report(hedged))["Pleural Effusion"] == {
        "uncertain": True,
        "side": "bilateral",
    }


# ------------------------------------------------------------------------------------------------ dataset
def test_dataset_layout_determinism_and_reader(tmp_path):
    kwargs = dict(num_items=24, image_size=48, report_source="grammar", use_real_masks=False)
    summary = make_embedded_dataset(tmp_path / "a", seed=5, **kwargs)
    make_embedded_dataset(tmp_path / "b", seed=5, **kwargs)
    make_embedded_dataset(tmp_path / "c", seed=6, **kwargs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")

    root = tmp_path / "a"
    assert summary["num_items"] == 24 and summary["lung_masks"] == "procedural"
    chexpert = _rows(root / "mimic-cxr-2.0.0-chexpert.csv")
    assert list(chexpert[0]) == ["subject_id", "study_id"] + list(CHEXPERT_CLASSES)
    assert all(row[c] in ("", "1.0", "0.0", "-1.0") for row in chexpert for c in CHEXPERT_CLASSES)
    split = _rows(root / "mimic-cxr-2.0.0-split.csv")
    assert list(split[0]) == ["dicom_id", "study_id", "subject_id", "split"] and len(split) == 24
    assert {row["split"] for row in split} <= {"train", "validate", "test"}
    split_of: dict[str, set] = {}
    for row in split:
        subject, study = row["subject_id"], row["study_id"]
        assert len(subject) == 8 and len(study) == 8 and len(row["dicom_id"].split("-")) == 5
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        assert (folder / f"s{study}" / f"{row['dicom_id']}.jpg").is_file()
        report = (folder / f"s{study}.txt").read_text()
        assert "FINAL REPORT" in report and "IMPRESSION:" in report and "EXAMINATION:" in report
        split_of.setdefault(subject, set()).add(row["split"])
    assert all(len(s) == 1 for s in split_of.values())  # patient-level splits
    assert len(split_of) < 24  # some subjects have two studies
    metadata = _rows(root / "mimic-cxr-2.0.0-metadata.csv")
    assert {"dicom_id", "subject_id", "study_id", "ViewPosition", "Rows", "Columns", "StudyDate"} <= set(metadata[0])
    assert {row["ViewPosition"] for row in metadata} <= {"PA", "AP"}
    truth = _rows(root / GROUND_TRUTH_CSV)
    assert [row["dicom_id"] for row in truth] == [row["dicom_id"] for row in split]
    for row in truth:  # the image was drawn with the CTR its label asks for
        ctr = float(row["ctr"])
        if row["Cardiomegaly"] == "1.0":
            assert ctr > 0.55
        elif row["Cardiomegaly"] == "0.0":
            assert 0.40 <= ctr <= 0.48
    # the real MIMIC-CXR-JPG reader loads every study
    records = read_mimic_cxr_jpg(root)
    assert len(records) == 24 and all(r["report"] for r in records)


def test_refuses_to_overwrite(tmp_path):
    user_data = tmp_path / "mimic"
    user_data.mkdir()
    (user_data / "notes.txt").write_text("a user's file")
    with pytest.raises(DataError, match="not empty"):
        make_embedded_dataset(user_data, num_items=2, image_size=32, report_source="grammar", use_real_masks=False)
    with pytest.raises(DataError, match="refusing"):
        make_embedded_dataset(
            user_data, num_items=2, image_size=32, report_source="grammar", use_real_masks=False, overwrite=True
        )
    assert (user_data / "notes.txt").read_text() == "a user's file"

    ours = tmp_path / "embedded"
    make_embedded_dataset(ours, num_items=4, image_size=32, report_source="grammar", use_real_masks=False)
    with pytest.raises(DataError, match="not empty"):
        make_embedded_dataset(ours, num_items=2, image_size=32, report_source="grammar", use_real_masks=False)
    make_embedded_dataset(
        ours, num_items=2, image_size=32, report_source="grammar", use_real_masks=False, overwrite=True
    )
    assert len(list(ours.rglob("*.jpg"))) == 2  # the old items are gone
    assert json.loads((ours / "embedded-summary.json").read_text())["num_items"] == 2


@pytest.mark.skipif(
    xrv_iu_reports_path() is None or real_lung_mask_path() is None,
    reason="torchxrayvision's IU reports / lung masks are not installed",
)
def test_iu_reports_and_real_masks(tmp_path):
    summary = make_embedded_dataset(
        tmp_path / "iu", num_items=12, image_size=32, report_source="auto", use_real_masks=True, max_masks=30
    )
    assert summary["report_source"] == "iu" and summary["lung_masks"] == "real"
    truth = {row["study_id"]: row for row in _rows(tmp_path / "iu" / GROUND_TRUTH_CSV)}
    assert all(row["report_id"].startswith("CXR") and row["lung_shape"] != "procedural" for row in truth.values())
    for row in _rows(tmp_path / "iu" / "mimic-cxr-2.0.0-chexpert.csv"):  # image drawn from the report's labels
        drawn = truth[row["study_id"]]
        for name in DEFAULT_CLASSES[1:]:
            assert float(row[name] or 0.0) == float(drawn[name]), (name, row, drawn)


# ------------------------------------------------------------------------------------------------ held-out text
def _split_texts(root: Path) -> dict[str, list[str]]:
    """Normalised report text of every study per official split, as the MIMIC reader reads it back."""
    texts: dict[str, list[str]] = defaultdict(list)
    for record in read_mimic_cxr_jpg(root):
        texts[record["split"]].append(normalise_report_text(record["report"]))
    return texts


def _assert_heldout_text_disjoint(root: Path, summary: dict) -> dict[str, list[str]]:
    texts = _split_texts(root)
    assert texts["validation"] and texts["test"] and texts["training"]
    training = set(texts["training"])
    assert not training & set(texts["validation"]) and not training & set(texts["test"])
    names = {"train": "training", "validate": "validation", "test": "test"}
    assert summary["distinct_reports"] == {short: len(set(texts[long])) for short, long in names.items()}
    stored = json.loads((root / "embedded-summary.json").read_text())
    assert stored["distinct_reports"] == summary["distinct_reports"]
    return texts


def test_grammar_heldout_text_is_not_training_text(tmp_path, monkeypatch):
    kwargs = dict(num_items=40, image_size=32, report_source="grammar", use_real_masks=False, test_fraction=0.2)
    summary = make_embedded_dataset(tmp_path / "grammar", seed=2, **kwargs)
    _assert_heldout_text_disjoint(tmp_path / "grammar", summary)
    assert summary["report_pool"] is None

    # a grammar with few wordings: held-out studies that drew a training text are rewritten, deterministically
    calls = []

    def few_wordings(spec: dict, rng: np.random.Generator) -> dict[str, str]:
        calls.append(1)
        k, shout = int(rng.integers(40)), rng.random() < 0.5  # the same wording in two spellings
        return {"findings": f"WORDING  number {k}" if shout else f"Wording number {k}.", "impression": "Normal."}

    monkeypatch.setattr("bundle.data.embedded.report_grammar.compose_report", few_wordings)
    summary = make_embedded_dataset(tmp_path / "a", seed=2, **kwargs)
    assert len(calls) > 40  # some held-out studies drew a training wording and were rewritten
    _assert_heldout_text_disjoint(tmp_path / "a", summary)
    make_embedded_dataset(tmp_path / "b", seed=2, **kwargs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")

    # one wording only: no held-out text can differ from training, and the generator says so
    monkeypatch.setattr(
        "bundle.data.embedded.report_grammar.compose_report",
        lambda spec, rng: {"findings": "The lungs are clear.", "impression": "Normal."},
    )
    with pytest.raises(DataError, match="only training text"):
        make_embedded_dataset(tmp_path / "c", seed=2, **kwargs)


@pytest.mark.skipif(not iu_reports_available(), reason="torchxrayvision's IU reports are not installed")
def test_iu_reports_belong_to_one_split(tmp_path):
    pool = iu_reports.iu_report_pool()
    assert len({r.key for r in pool}) == len(pool)  # one entry per distinct normalised text
    assignment = iu_reports.assign_report_splits(pool, 0, 0.1, 0.1)
    assert assignment == iu_reports.assign_report_splits(pool, 0, 0.1, 0.1)
    assert assignment != iu_reports.assign_report_splits(pool, 1, 0.1, 0.1)
    share = {split: assignment.count(split) / len(pool) for split in ("validate", "test")}
    assert all(0.08 < v < 0.12 for v in share.values()), share
    for split in ("validate", "test"):  # normal text and every finding, the rare ones too, in each held-out split
        held_out = [r for r, s in zip(pool, assignment) if s == split]
        assert any(not iu_reports.report_pathologies(r) for r in held_out)
        for finding in PATHOLOGIES:
            assert any(finding in r.spec for r in held_out), (split, finding)

    kwargs = dict(num_items=40, image_size=32, report_source="iu", use_real_masks=False, seed=3)
    summary = make_embedded_dataset(tmp_path / "a", **kwargs)
    texts = _assert_heldout_text_disjoint(tmp_path / "a", summary)
    assert not set(texts["validation"]) & set(texts["test"])  # IU text belongs to one split only
    report_splits = iu_reports.assign_report_splits(pool, 3, 0.1, 0.1)
    assert summary["report_pool"] == {s: report_splits.count(s) for s in ("train", "validate", "test")}
    split_of_report = {r.id: s for r, s in zip(pool, report_splits)}
    for row in _rows(tmp_path / "a" / GROUND_TRUTH_CSV):  # each study's report comes from its own split's pool
        assert split_of_report[row["report_id"]] == row["split"], row
    make_embedded_dataset(tmp_path / "b", **kwargs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


# ------------------------------------------------------------------------------------------------ learnability
def test_learnability_small_cnn():
    """A small CNN trained on 48 px images reads the drawn findings clearly above chance (about 20 s)."""
    result = run_benchmark(
        num_items=300,
        image_size=48,
        epochs=20,
        seed=0,
        test_fraction=0.3,
        report_source="grammar",
        use_real_masks=False,
        verbose=False,
    )
    assert result["mean_auroc"] >= 0.75, result
    assert result["auroc"]["Cardiomegaly"] >= 0.85 and result["auroc"]["Edema"] >= 0.85, result
    # every finding with enough test positives to measure is separated from its absence
    measurable = [name for name, n in result["test_positives"].items() if n >= 10]
    assert len(measurable) >= 5 and all(result["auroc"][name] >= 0.7 for name in measurable), result
