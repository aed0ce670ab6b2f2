"""Inference resume is consistent: ``progress.jsonl`` records the run's settings (seed, labels, bit depth, format,
num_samples, report source, the checkpoint's SHA-256 ...), a resume with other settings is refused before anything
is written with the differences listed, and generated patient ids carry a per-run prefix."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pydicom
import pytest
import torch
from monai.bundle import ConfigWorkflow

from bundle.data.errors import DataError
from bundle.inference.checkpoints import checkpoint_sha256, latest_checkpoint
from bundle.inference.formats import check_dicom_synthetic
from bundle.inference.writer import PairedDatasetWriter
from tests.tiny import CONFIG_DIR, TINY

CLASSES = ["No Finding", "Cardiomegaly", "Pleural Effusion"]
SETTINGS = {"seed": 0, "labels": "train", "num_samples": 4, "checkpoint_sha256": "ab" * 32}
INFER_CONFIGS = [str(CONFIG_DIR / "inference.json"), str(CONFIG_DIR / "demo.json")]


def write(writer: PairedDatasetWriter, indices: list[int]) -> None:
    n = len(indices)
    images = torch.stack([torch.full((1, 16, 16), 0.1 * (i + 1)) for i in indices])
    labels = torch.zeros(n, len(CLASSES))
    writer.write_batch(images, ["Heart size is normal."] * n, labels, [100 + i for i in indices], indices)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------- the writer
def test_progress_records_the_settings_and_a_resume_with_the_same_ones_continues(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    writer = PairedDatasetWriter(out, CLASSES, bit_depth=16, report_source="image", run_settings=SETTINGS)
    write(writer, [0, 1])
    first = json.loads((out / "progress.jsonl").read_text().splitlines()[0])
    assert first["run_settings"] == {
        **SETTINGS,
        "class_names": CLASSES,
        "output_format": "png",
        "bit_depth": 16,
        "report_source": "image",
    }
    assert first["run_id"] == writer.run_id and re.fullmatch(r"[0-9A-F]{8}", writer.run_id)

    # Settings given as a tuple, or in another key order, are the same settings.
    same = {**dict(reversed(SETTINGS.items())), "labels": "train"}
    resumed = PairedDatasetWriter(out, CLASSES, bit_depth=16, report_source="image", run_settings=same, resume=True)
    assert resumed.done == {0, 1} and resumed.run_id == writer.run_id
    write(resumed, [2, 3])
    lines = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert sum("run_settings" in line for line in lines) == 1  # recorded once
    summary = resumed.finalize()
    assert summary["num_samples"] == 4
    datalist = json.loads((out / "datalist.json").read_text())
    assert datalist["run_settings"] == first["run_settings"] and datalist["run_id"] == writer.run_id


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"run_settings": {**SETTINGS, "seed": 1}}, ["seed: 0 -> 1"]),
        ({"bit_depth": 16}, ["bit_depth: 8 -> 16"]),
        ({"output_format": "nifti"}, ['output_format: "png" -> "nifti"']),
        ({"report_source": "labels"}, ['report_source: "image" -> "labels"']),
        (
            {"run_settings": {**SETTINGS, "labels": [["Cardiomegaly"]], "num_samples": 8}},
            ['labels: "train" -> [["Cardiomegaly"]]', "num_samples: 4 -> 8"],
        ),
        ({"run_settings": {**SETTINGS, "checkpoint_sha256": "cd" * 32}}, [f'"{"ab" * 32}" -> "{"cd" * 32}"']),
    ],
)
def test_a_resume_with_other_settings_is_refused_before_anything_is_written(
    tmp_path: Path, change: dict, expected: list[str]
) -> None:
    out = tmp_path / "gen"
    base = {"bit_depth": 8, "output_format": "png", "report_source": "image", "run_settings": SETTINGS}
    write(PairedDatasetWriter(out, CLASSES, **base), [0, 1])
    before = snapshot(out)
    with pytest.raises(DataError) as error:
        PairedDatasetWriter(out, CLASSES, **{**base, **change}, resume=True)
    message = str(error.value)
    assert message.startswith(f"{out}: cannot resume: progress.jsonl was written with other settings")
    assert all(text in message for text in expected), message
    assert "overwrite=True" in message
    assert snapshot(out) == before  # nothing written

    # overwrite still starts afresh, under the new settings
    fresh = PairedDatasetWriter(out, CLASSES, **{**base, **change}, overwrite=True)
    assert fresh.done == set() and not (out / "progress.jsonl").exists()


def test_a_progress_file_without_settings_is_refused_on_resume(tmp_path: Path) -> None:
    """A progress file with samples but no settings line (written before settings were recorded) cannot be checked:
    every setting shows as not recorded."""
    out = tmp_path / "gen"
    write(PairedDatasetWriter(out, CLASSES, run_settings=SETTINGS), [0, 1])
    lines = (out / "progress.jsonl").read_text().splitlines(keepends=True)
    (out / "progress.jsonl").write_text("".join(lines[1:]))
    with pytest.raises(
        DataError, match=r"other settings \(bit_depth: \(not recorded\) -> 8;.* seed: \(not recorded\) -> 0"
    ):
        PairedDatasetWriter(out, CLASSES, run_settings=SETTINGS, resume=True)


# ------------------------------------------------------------------------------------------------ patient ids
def test_dicom_patient_ids_carry_a_per_run_prefix(tmp_path: Path) -> None:
    ids = {}
    for name, settings in (("a", SETTINGS), ("b", {**SETTINGS, "seed": 1}), ("c", {**SETTINGS, "seed": 1})):
        writer = PairedDatasetWriter(tmp_path / name, CLASSES, output_format="dicom", run_settings=settings)
        write(writer, [0, 1])
        files = [tmp_path / name / "images" / f"syn_{i:06d}.dcm" for i in (0, 1)]
        ids[name] = [pydicom.dcmread(f).PatientID for f in files]
        assert ids[name] == [f"SYN-{writer.run_id}-{i:06d}" for i in (0, 1)]
        assert all(check_dicom_synthetic(f) == [] for f in files)
    assert not set(ids["a"]) & set(ids["b"])  # two runs' sets do not share patients
    assert ids["b"] == ids["c"]  # the same settings give the same ids

    # A resumed run keeps its recorded id; writers without settings get a random one.
    resumed = PairedDatasetWriter(tmp_path / "a", CLASSES, output_format="dicom", run_settings=SETTINGS, resume=True)
    write(resumed, [2])
    assert pydicom.dcmread(tmp_path / "a" / "images" / "syn_000002.dcm").PatientID == ids["a"][0][:-6] + "000002"
    assert PairedDatasetWriter(tmp_path / "d", CLASSES).run_id != PairedDatasetWriter(tmp_path / "e", CLASSES).run_id


# -------------------------------------------------------------------------------------------------- the bundle
def infer(dataset_dir: Path, output_dir: Path, **overrides: object) -> ConfigWorkflow:
    settings = {**TINY, "dataset_dir": str(dataset_dir), "output_dir": str(output_dir), "batch_size": 4, **overrides}
    flow = ConfigWorkflow(config_file=INFER_CONFIGS, logging_file=False, workflow_type="infer", **settings)
    flow.initialize()
    flow.run()
    flow.finalize()
    return flow


def causes(error: BaseException | None) -> str:
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__
    return "\n".join(messages)


def test_the_bundle_records_its_settings_and_refuses_a_resume_that_changes_them(
    dataset_dir: Path, trained: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gen"
    infer(dataset_dir, trained, num_samples=3, generated_dir=str(out))
    checkpoint = latest_checkpoint(trained / "models")
    recorded = json.loads((out / "progress.jsonl").read_text().splitlines()[0])["run_settings"]
    assert recorded["checkpoint_sha256"] == hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    assert recorded["checkpoint_sha256"] == checkpoint_sha256(checkpoint)
    assert {k: recorded[k] for k in ("seed", "labels", "num_samples", "bit_depth", "output_format")} == {
        "seed": 0,
        "labels": "train",
        "num_samples": 3,
        "bit_depth": 8,
        "output_format": "png",
    }
    before = {p: b for p, b in snapshot(out).items()}

    other = tmp_path / "other.pt"  # the same weights in another file: other bytes, another hash
    torch.save({**torch.load(checkpoint, weights_only=True), "note": torch.tensor(1)}, other)
    for change, expected in (
        ({"seed": 1}, "seed: 0 -> 1"),
        ({"bit_depth": 16}, "bit_depth: 8 -> 16"),
        ({"labels": "per_class", "num_samples": 1}, 'labels: "train" -> "per_class"'),
        ({"ckpt_path": str(other)}, "checkpoint_sha256: "),
    ):
        with pytest.raises(Exception) as error:
            infer(dataset_dir, trained, **{"num_samples": 3, **change}, generated_dir=str(out), resume=True)
        assert f"{out}: cannot resume: progress.jsonl was written with other settings" in causes(error.value)
        assert expected in causes(error.value)
        assert snapshot(out) == before
    infer(dataset_dir, trained, num_samples=3, generated_dir=str(out), resume=True)  # the same settings resume
