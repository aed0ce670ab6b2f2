"""Paired-output writers: image round trips, DICOM / NIfTI headers, reports, manifest load-back, resume."""

from __future__ import annotations

import csv
import json
import shutil
from collections import namedtuple
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.data import load_decathlon_datalist
from PIL import Image
from pydicom.uid import UID, ExplicitVRLittleEndian

from bundle.data.datalist import build_datalist
from bundle.data.images import read_cxr
from bundle.data.labeler import label_report
from bundle.data.labels import to_multi_hot
from bundle.data.prepare import prepare_data
from bundle.data.sources import read_table, report_from_file
from bundle.inference.disk import check_free_disk, estimate_bytes_per_sample
from bundle.inference.formats import (
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    check_dicom_synthetic,
    write_dicom,
    write_nifti,
    write_png,
    write_report,
)
from bundle.inference.writer import PairedDatasetWriter, escape_formula_cell
from bundle.transforms import LoadCXRImage


CLASSES = ["No Finding", "Cardiomegaly", "Pleural Effusion", "Pneumothorax"]
REPORTS = [
    "The heart is enlarged. There is a small right pleural effusion.",
    "Lungs are clear. No pleural effusion or pneumothorax. Heart size is normal.",
    "There is a large left pneumothorax. The heart size is normal.",
    "Moderate cardiomegaly. No pneumothorax.",
    "Heart size is normal. No focal consolidation, effusion or pneumothorax.",
    "Bilateral pleural effusions. Heart is normal in size.",
]
LABELS = [  # conditioning labels over CLASSES; item 0 and 3 disagree with their reports on purpose
    [0.0, 1.0, 0.0, 0.0],
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
    [0.0, 0.0, 1.0, 0.0],
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
]
WRITERS = {"png": write_png, "nifti": write_nifti, "dicom": write_dicom}
SUFFIX = {"png": ".png", "nifti": ".nii.gz", "dicom": ".dcm"}


def make_image(height: int = 40, width: int = 56, seed: int = 0, full_range: bool = True) -> np.ndarray:
    """A non-square image (so a transposition fails), with black and white pixels when ``full_range``."""
    image = np.random.default_rng(seed).random((height, width))
    image[:5, :] = 0.3  # a band at the top: orientation is visible
    if full_range:
        image[-1, :3], image[-1, -2:] = 0.0, 1.0
    else:
        image = 0.2 + 0.5 * image
    return image


def batch(indices: list[int], channels: int = 3, size: int = 32) -> tuple[torch.Tensor, list, torch.Tensor, list]:
    """Images [B, C, H, W] (equal channels), reports, labels and seeds for ``indices`` (items cycle)."""
    grey = torch.stack([torch.from_numpy(make_image(size, size, seed=i)).float() for i in indices])[:, None]
    images = grey.repeat(1, channels, 1, 1)
    reports = [REPORTS[i % len(REPORTS)] for i in indices]
    labels = torch.tensor([LABELS[i % len(LABELS)] for i in indices])
    return images, reports, labels, [1000 + i for i in indices]


# ------------------------------------------------------------------------------------------------ image files
@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("fmt", ["png", "nifti", "dicom"])
def test_image_round_trip_through_read_cxr(tmp_path, fmt, bit_depth):
    image = make_image()
    path = WRITERS[fmt](image, tmp_path / f"x{SUFFIX[fmt]}", bit_depth=bit_depth)
    back, meta = read_cxr(path)
    assert back.shape == image.shape and meta["format"] == {"png": "PNG", "nifti": "NIfTI", "dicom": "DICOM"}[fmt]
    assert np.abs(back - image).max() <= 1.0 / (2**bit_depth - 1)
    loaded = LoadCXRImage()(path)
    assert tuple(loaded.shape) == (1, *image.shape)
    assert torch.allclose(loaded[0], torch.from_numpy(back))


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("fmt", ["png", "nifti", "dicom"])
def test_every_format_keeps_values_of_an_image_that_does_not_span_the_range(tmp_path, fmt, bit_depth):
    image = make_image(full_range=False)
    back, _ = read_cxr(WRITERS[fmt](image, tmp_path / f"x{SUFFIX[fmt]}", bit_depth=bit_depth))
    assert np.abs(back - image).max() <= 1.0 / (2**bit_depth - 1)


@pytest.mark.parametrize("bit_depth, mode", [(8, "L"), (16, "I;16")])
def test_png_mode_and_synthetic_note(tmp_path, bit_depth, mode):
    path = write_png(make_image(), tmp_path / "a.png", bit_depth)
    with Image.open(path) as picture:
        assert picture.mode == mode
        assert "not a real patient" in picture.text["Description"]


@pytest.mark.parametrize("bit_depth, dtype", [(8, np.uint8), (16, np.uint16)])
def test_nifti_header_shape_and_affine(tmp_path, bit_depth, dtype):
    image = make_image(height=40, width=56, full_range=False)
    nifti = nib.load(write_nifti(image, tmp_path / "a.nii.gz", bit_depth))
    data = np.asarray(nifti.dataobj)
    assert data.shape == (56, 40) and data.dtype == dtype  # voxel axis 0 = column, axis 1 = row
    top = 2**bit_depth - 1
    np.testing.assert_array_equal(data.T, np.rint(image * top).astype(dtype))  # stored values exact
    header = nifti.header
    assert np.allclose(header.get_zooms()[:2], (0.5, 0.5))
    assert int(header["qform_code"]) == 2 and int(header["sform_code"]) == 2
    assert np.allclose(nifti.get_qform(), nifti.get_sform()) and np.allclose(nifti.affine, nifti.get_sform())
    assert nib.aff2axcodes(nifti.affine) == ("L", "I", "A")  # columns to patient left, rows to the feet
    assert b"Synthetic" in header["descrip"].item() and header.get_intent()[2] == "synthetic"
    assert float(header["cal_max"]) == top
    with pytest.raises(ValueError, match=r"\.nii"):
        write_nifti(image, tmp_path / "a.png")


def test_nan_image_and_bad_bit_depth_refused(tmp_path):
    image = make_image()
    image[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_png(image, tmp_path / "a.png")
    with pytest.raises(ValueError, match="bit_depth"):
        write_png(make_image(), tmp_path / "a.png", bit_depth=12)


# ------------------------------------------------------------------------------------------------------ DICOM
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_dicom_is_synthetic_secondary_capture(tmp_path, bit_depth):
    paths = [
        write_dicom(make_image(seed=i), tmp_path / f"{i}.dcm", bit_depth, patient_id=f"SYN-{i:06d}") for i in range(3)
    ]
    uids = []
    for path in paths:
        assert check_dicom_synthetic(path) == []
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == SECONDARY_CAPTURE_IMAGE_STORAGE
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.ConversionType == "SYN" and ds.Modality == "OT"
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.PixelRepresentation == 0
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (bit_depth, bit_depth, bit_depth - 1)
        assert (ds.Rows, ds.Columns) == (40, 56) and ds.pixel_array.dtype == (np.uint8 if bit_depth == 8 else np.uint16)
        assert ds.BurnedInAnnotation == "NO" and ds.PatientIdentityRemoved == "YES"
        assert "not a real patient" in ds.ImageComments and "not a real patient" in ds.DerivationDescription
        assert str(ds.PatientName) == "SYNTHETIC^EMIXER" and ds.PatientID.startswith("SYN-")
        assert ds.PatientBirthDate == "" and "InstitutionName" not in ds and "OtherPatientIDs" not in ds
        uids += [ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID]
    assert len(set(uids)) == len(uids) and all(UID(u).is_valid for u in uids)


def test_dicom_shared_study_and_series(tmp_path):
    a = pydicom.dcmread(write_dicom(make_image(), tmp_path / "a.dcm", study_uid="1.2.3.4", series_uid="1.2.3.5"))
    b = pydicom.dcmread(write_dicom(make_image(), tmp_path / "b.dcm", study_uid="1.2.3.4", series_uid="1.2.3.5"))
    assert a.StudyInstanceUID == b.StudyInstanceUID == "1.2.3.4" and a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    with pytest.raises(ValueError, match="synthetic"):
        write_dicom(make_image(), tmp_path / "c.dcm", patient_id="MRN12345")


def test_check_dicom_synthetic_finds_identity_and_missing_attributes(tmp_path):
    path = write_dicom(make_image(), tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "12345678"
    ds.PatientBirthDate = "19600101"
    ds.InstitutionName = "General Hospital"
    del ds.ConversionType
    ds.BurnedInAnnotation = "YES"
    ds.save_as(tmp_path / "bad.dcm")
    problems = "\n".join(check_dicom_synthetic(tmp_path / "bad.dcm"))
    for expected in (
        "PatientName 'DOE^JOHN'",
        "PatientID '12345678'",
        "PatientBirthDate",
        "InstitutionName",
        "missing required attribute ConversionType",
        "BurnedInAnnotation",
    ):
        assert expected in problems
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    assert check_dicom_synthetic(tmp_path / "junk.dcm")[0].startswith("not a readable DICOM file")


# ---------------------------------------------------------------------------------------------------- reports
def test_report_file_reads_back_by_section(tmp_path):
    path = write_report(tmp_path / "r" / "a.txt", "Heart is  enlarged.\nSmall effusion.", "Cardiomegaly.")
    assert path.read_text() == "FINDINGS: Heart is enlarged. Small effusion.\n\nIMPRESSION: Cardiomegaly.\n"
    assert report_from_file(path) == "Heart is enlarged. Small effusion. Cardiomegaly."
    assert report_from_file(path, sections=("impression",)) == "Cardiomegaly."
    only = write_report(tmp_path / "b.txt", "Lungs are clear.")
    assert "IMPRESSION" not in only.read_text()
    assert report_from_file(only) == "Lungs are clear."


# ------------------------------------------------------------------------------------------- dataset writer
def test_paired_writer_layout_manifest_and_datalist_load_back(tmp_path):
    out = tmp_path / "out"
    writer = PairedDatasetWriter(out, CLASSES, output_format="png", bit_depth=8)
    for indices in ([0, 1, 2], [3, 4, 5]):
        records = writer.write_batch(*batch(indices), sample_indices=torch.tensor(indices))
        assert [r["sample_index"] for r in records] == indices
    assert writer.done == set(range(6))
    progress = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert len(progress) == 7 and progress[0] == {"run_settings": writer.settings, "run_id": writer.run_id}
    summary = writer.finalize(metadata={"checkpoint": "model.pt"})
    assert summary["num_samples"] == 6
    assert sorted(p.name for p in out.iterdir()) == [
        "datalist.json",
        "images",
        "index.html",
        "manifest.csv",
        "progress.jsonl",
        "reports",
    ]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"syn_{i:06d}.png" for i in range(6)]

    # every record: files, seed, labels as given, report labels from the project's labeler
    for i, record in enumerate(writer.records()):
        assert record["id"] == record["subject"] == record["study"] == f"syn_{i:06d}" and record["seed"] == 1000 + i
        back, _ = read_cxr(out / record["image"])
        assert np.abs(back - make_image(32, 32, seed=i)).max() <= 1 / 255
        assert report_from_file(out / record["report_path"]) == record["report"] == REPORTS[i]
        assert [record[c] for c in CLASSES] == LABELS[i]
        assert [record[f"report_label/{c}"] for c in CLASSES] == to_multi_hot(label_report(REPORTS[i]), CLASSES)
    assert summary["label_agreement"]["Cardiomegaly"] < 1.0  # items 0 and 3 disagree on purpose

    # manifest -> read_table -> build_datalist
    table = read_table(out / "manifest.csv")
    assert [Path(r["image"]).name for r in table] == [f"syn_{i:06d}.png" for i in range(6)]
    assert [r["report"] for r in table] == REPORTS
    assert [[r["label_record"][c] for c in CLASSES] for r in table] == LABELS  # conditioning, not report labels
    datalist = build_datalist(table, class_names=CLASSES, verify_images=True, num_workers=1)
    items = datalist["training"] + datalist["validation"] + datalist["test"]
    assert sorted(item["labels"] for item in items) == sorted(LABELS)

    # datalist.json in the project's format, loaded by MONAI
    saved = json.loads((out / "datalist.json").read_text())
    assert saved["source"] == "emixer-synthetic" and saved["class_names"] == CLASSES
    assert saved["validation"] == [] and saved["test"] == [] and saved["generation"] == {"checkpoint": "model.pt"}
    loaded = load_decathlon_datalist(out / "datalist.json", is_segmentation=False, data_list_key="training")
    assert len(loaded) == 6 and all(Path(item["image"]).is_file() for item in loaded)
    assert {"image", "report", "labels", "subject", "study"} <= set(loaded[0])
    assert [item["labels"] for item in loaded] == LABELS and Path(loaded[0]["report_path"]).is_file()


def test_manifest_is_a_training_source_for_prepare_data(tmp_path):
    out = tmp_path / "gen"
    writer = PairedDatasetWriter(out, CLASSES, output_format="nifti", bit_depth=16)
    writer.write_batch(*batch([0, 1, 2, 3, 4, 5], channels=1), sample_indices=[0, 1, 2, 3, 4, 5])
    writer.finalize()
    prepare_data(
        source="csv",
        data_dir=str(out / "manifest.csv"),
        out_dir=str(tmp_path / "ds"),
        classes=",".join(CLASSES),
        min_count=1,
        quiet=True,
    )
    summary = json.loads((tmp_path / "ds" / "summary.json").read_text())
    assert sum(summary["counts"].values()) == 6 and summary["class_names"] == CLASSES
    prepared = json.loads((tmp_path / "ds" / "datalist.json").read_text())
    items = prepared["training"] + prepared["validation"] + prepared["test"]
    assert all(item["image"].endswith(".nii.gz") for item in items)
    assert sorted(item["labels"] for item in items) == sorted(LABELS)


def test_dicom_dataset_has_unique_uids_and_synthetic_ids(tmp_path):
    writer = PairedDatasetWriter(tmp_path / "d", CLASSES, output_format="dicom", bit_depth=16)
    writer.write_batch(*batch([7, 8, 9]), sample_indices=[7, 8, 9])
    writer.finalize()
    sets = [pydicom.dcmread(tmp_path / "d" / "images" / f"syn_{i:06d}.dcm") for i in (7, 8, 9)]
    assert [ds.PatientID for ds in sets] == [f"SYN-{writer.run_id}-{i:06d}" for i in (7, 8, 9)]
    uids = [u for ds in sets for u in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)]
    assert len(set(uids)) == len(uids)
    assert all(check_dicom_synthetic(tmp_path / "d" / "images" / f"syn_{i:06d}.dcm") == [] for i in (7, 8, 9))
    assert "data:image/png;base64," in (tmp_path / "d" / "index.html").read_text()  # previews of DICOM files


def test_never_overwrites_and_overwrite_clears_only_own_files(tmp_path):
    out = tmp_path / "out"
    writer = PairedDatasetWriter(out, CLASSES)
    writer.write_batch(*batch([0, 1]), sample_indices=[0, 1])
    writer.finalize()
    (out / "notes.txt").write_text("mine")
    (out / "images" / "keep.png").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="overwrite=True") as err:
        PairedDatasetWriter(out, CLASSES)
    assert str(out) in str(err.value) and "resume=True" in str(err.value)
    with pytest.raises(ValueError, match="not both"):
        PairedDatasetWriter(out, CLASSES, overwrite=True, resume=True)
    PairedDatasetWriter(out, CLASSES, overwrite=True)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == ["images", "images/keep.png", "notes.txt", "reports"]


def test_a_writer_that_never_wrote_leaves_a_folder_a_new_run_may_use(tmp_path):
    out = tmp_path / "out"
    PairedDatasetWriter(out, CLASSES)  # e.g. built by a config check, then the run never started
    writer = PairedDatasetWriter(out, CLASSES)
    writer.write_batch(*batch([0]), sample_indices=[0])
    with pytest.raises(FileExistsError, match="not empty"):
        PairedDatasetWriter(out, CLASSES)


def test_resume_after_interruption(tmp_path):
    out = tmp_path / "out"
    writer = PairedDatasetWriter(out, CLASSES)
    writer.write_batch(*batch([0, 1, 2]), sample_indices=[0, 1, 2])
    # the run dies while writing the next batch: its files exist, its progress line is cut short
    writer.write_batch(*batch([3]), sample_indices=[3])
    lines = (out / "progress.jsonl").read_text().splitlines(keepends=True)  # the settings line, then samples
    (out / "progress.jsonl").write_text("".join(lines[:4]) + lines[4][:40])

    resumed = PairedDatasetWriter(out, CLASSES, resume=True)
    assert resumed.done == {0, 1, 2} and resumed.run_id == writer.run_id
    assert (out / "progress.jsonl").read_text() == "".join(lines[:4])  # the cut line is removed
    written = resumed.write_batch(*batch([2, 3, 4, 5]), sample_indices=[2, 3, 4, 5])
    assert [r["sample_index"] for r in written] == [3, 4, 5]  # 2 was done already
    resumed.finalize()
    manifest = read_table(out / "manifest.csv")
    assert [Path(r["image"]).name for r in manifest] == [f"syn_{i:06d}.png" for i in range(6)]
    assert all(json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines())

    with pytest.raises(ValueError, match="other settings"):
        PairedDatasetWriter(out, CLASSES, output_format="dicom", resume=True)
    with pytest.raises(ValueError, match="other settings"):
        PairedDatasetWriter(out, ["Edema", *CLASSES], resume=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.csv").write_text("x")
    with pytest.raises(FileExistsError, match="no progress.jsonl"):
        PairedDatasetWriter(tmp_path / "other", CLASSES, resume=True)


def test_bad_batches_refused(tmp_path):
    writer = PairedDatasetWriter(tmp_path / "out", CLASSES)
    images, reports, labels, seeds = batch([0, 1])
    with pytest.raises(ValueError, match="batch sizes differ"):
        writer.write_batch(images, reports[:1], labels, seeds, [0, 1])
    with pytest.raises(ValueError, match=r"labels must be \[B, 4\]"):
        writer.write_batch(images, reports, labels[:, :2], seeds, [0, 1])
    with pytest.raises(ValueError, match="repeated sample indices"):
        writer.write_batch(images, reports, labels, seeds, [1, 1])
    with pytest.raises(ValueError, match="C = 1 or 3"):
        writer.write_batch(images[:, :2], reports, labels, seeds, [0, 1])
    with pytest.raises(ValueError, match="nothing to finalize"):
        writer.finalize()


def test_index_html_escapes_report_text(tmp_path):
    out = tmp_path / "out"
    writer = PairedDatasetWriter(out, CLASSES)
    images, _, labels, seeds = batch([0, 1])
    reports = ["<script>alert(1)</script> Heart is enlarged & effusion.", "Lungs are clear."]
    writer.write_batch(images, reports, labels, seeds, [0, 1])
    assert not (out / "index.html").exists()  # written by finalize
    writer.finalize()
    page = (out / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&amp; effusion" in page
    assert '<img src="images/syn_000000.png"' in page and '<img src="images/syn_000001.png"' in page
    assert page.count("<tr>") == 3  # header + 2 samples
    row0 = page.split("<tr>")[2]
    # conditioning: cardiomegaly only; the report reads as cardiomegaly and effusion
    assert "\u2713 Cardiomegaly" in row0 and "\u2717 Pleural Effusion" in row0 and "\u2713 Pneumothorax" in row0


def test_free_disk_check(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    assert check_free_disk(tmp_path / "not" / "yet", 10, 1000) == 10**6
    with pytest.raises(OSError, match="not enough disk space"):
        check_free_disk(tmp_path, 1000, 10**4)
    eight, sixteen = (estimate_bytes_per_sample("png", b, (3, 128, 128)) for b in (8, 16))
    assert sixteen - eight == 128 * 128
    writer = PairedDatasetWriter(tmp_path / "out", CLASSES, output_format="dicom", bit_depth=16)
    writer.check_disk(10, (1, 64, 64))
    with pytest.raises(OSError, match=str(tmp_path / "out")):
        writer.check_disk(100, (1, 64, 64))


FORMULA_REPORTS = [
    '=HYPERLINK("http://example.com", "Heart size is normal.")',
    "+1 heart is enlarged. There is a small right pleural effusion.",
    "-2 lungs are clear. No pneumothorax.",
    "@SUM(A1) there is a large left pneumothorax.",
    "'=already quoted. Moderate cardiomegaly.",
    "Heart size is normal. No effusion.",
]


def test_manifest_escapes_formula_cells_and_read_table_gives_the_text_back(tmp_path):
    out = tmp_path / "gen"
    writer = PairedDatasetWriter(out, CLASSES)
    images, _, labels, seeds = batch(list(range(6)))
    writer.write_batch(images, FORMULA_REPORTS, labels, [-5, *seeds[1:]], sample_indices=list(range(6)))
    writer.finalize()

    # What a spreadsheet sees: every formula-like text cell starts with ', numbers stay numbers; ids and image paths
    # (what bundle.evaluation.decode reads) are never escaped.
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [row["report"] for row in rows] == ["'" + r for r in FORMULA_REPORTS[:5]] + FORMULA_REPORTS[5:]
    assert all(not row[c][:1] in "=+-@\t\r" for row in rows for c in row if c != "seed")
    assert rows[0]["seed"] == "-5" and all(row["formula_escaped"] == "1" for row in rows)
    assert [(row["id"], row["image"]) for row in rows] == [
        (f"syn_{i:06d}", f"images/syn_{i:06d}.png") for i in range(6)
    ]
    assert [escape_formula_cell(v) for v in ("\tx", "\rx", "x=1", "'x", 3, -1.5)] == [
        "'\tx",
        "'\rx",
        "x=1",
        "'x",
        3,
        -1.5,
    ]

    # read_table and prepare_data get the generated text back, as from a plain table of the same reports.
    assert [r["report"] for r in read_table(out / "manifest.csv")] == [
        r["report"] for r in read_table(_plain_table(tmp_path / "plain.csv", out, FORMULA_REPORTS))
    ]
    prepared = {}
    for name, table in (("escaped", out / "manifest.csv"), ("plain", tmp_path / "plain.csv")):
        prepare_data(
            source="csv",
            data_dir=str(table),
            out_dir=str(tmp_path / name),
            classes=",".join(CLASSES),
            min_count=1,
            quiet=True,
        )
        datalist = json.loads((tmp_path / name / "datalist.json").read_text())
        items = datalist["training"] + datalist["validation"] + datalist["test"]
        prepared[name] = sorted((Path(i["image"]).name, i["report"]) for i in items)
    assert prepared["escaped"] == prepared["plain"] and len(prepared["plain"]) == 6
    assert any(report.startswith("=HYPERLINK") for _, report in prepared["escaped"])

    # A table not marked by the writer is read as written: a leading ' stays.
    assert (
        read_table(_plain_table(tmp_path / "quoted.csv", out, ["'" + r for r in FORMULA_REPORTS]))[0]["report"][0]
        == "'"
    )


def _plain_table(path: Path, generated: Path, reports: list[str]) -> Path:
    """A CSV over the generated images with the given report texts, written without escaping."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "report", "subject", *CLASSES])
        writer.writeheader()
        for i, report in enumerate(reports):
            row = {"image": str(generated / "images" / f"syn_{i:06d}.png"), "report": report, "subject": f"syn_{i:06d}"}
            writer.writerow({**row, **dict(zip(CLASSES, LABELS[i]))})
    return path
