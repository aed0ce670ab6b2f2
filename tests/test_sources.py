"""Dataset source readers on small files written here: MIMIC-CXR-JPG, IU X-ray, R2Gen, CSV/JSONL, DICOM, NIfTI."""

from __future__ import annotations

import csv
import gzip
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bundle.data.errors import DataError, SkipCounter
from bundle.data.sources import (
    SOURCES,
    get_source,
    read_dicom_dir,
    read_iu_xray,
    read_mimic_cxr_jpg,
    read_nifti_dir,
    read_r2gen_annotation,
    read_table,
)

NORMAL = (
    "FINAL REPORT\nEXAMINATION: CHEST (PA AND LAT)\nINDICATION: Cough.\n\n"
    "FINDINGS: The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.\n\n"
    "IMPRESSION: No acute cardiopulmonary process.\n"
)
EFFUSION = (
    "FINAL REPORT\nINDICATION: Dyspnea.\n\nFINDINGS: There is a large right pleural effusion. The heart is "
    "enlarged.\n\nIMPRESSION: Large right pleural effusion. Cardiomegaly.\n"
)
ONLY_FINDINGS = "FINAL REPORT\nINDICATION: Fever.\n\nFINDINGS: Mild pulmonary edema.\n"


def write_image(path: Path, seed: int, size: int = 32) -> Path:
    """A small random grayscale image (distinct bytes per seed) as JPEG or PNG, by the path's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return path


def write_table(path: Path, rows: list[dict]) -> Path:
    """rows as CSV (``.csv``, ``.csv.gz``) or JSON Lines (``.jsonl``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path
    fields = list(dict.fromkeys(k for r in rows for k in r))
    opener = gzip.open(path, "wt", newline="") if path.name.endswith(".gz") else path.open("w", newline="")
    with opener as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


#: (subject, study, [(dicom_id, view)], official split, chexpert row or None, report text or None)
MIMIC_STUDIES = [
    (
        "10000001",
        "50000001",
        [("c-lat", "LATERAL"), ("b-ap", "AP"), ("d-pa", "PA")],
        "train",
        {"No Finding": "1.0"},
        NORMAL,
    ),
    (
        "10000002",
        "50000002",
        [("e-ap", "AP"), ("a-ap", "AP"), ("f-lat", "LL")],
        "train",
        {"Pleural Effusion": "1.0", "Cardiomegaly": "-1.0"},
        EFFUSION,
    ),
    ("11000003", "50000003", [("g-pa", "PA")], "validate", None, NORMAL),
    ("12000004", "50000004", [("h-lat", "LATERAL")], "test", {"No Finding": "1.0"}, NORMAL),
    ("12000004", "50000005", [("i-pa", "PA")], "test", {"Edema": "0.0", "Pneumothorax": ""}, EFFUSION),
]


def make_mimic_layout(
    root: Path, studies=MIMIC_STUDIES, reports_root: Path | None = None, gzip_split: bool = False
) -> Path:
    """A hand-made MIMIC-CXR-JPG folder: files/pNN/pSUBJECT/sSTUDY/DICOM_ID.jpg, sSTUDY.txt and the 3 CSVs."""
    reports_root = reports_root or root
    metadata, splits, chexpert = [], [], []
    seed = 0
    for subject, study, images, split, labels, report in studies:
        study_dir = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        for dicom_id, view in images:
            seed += 1
            write_image(study_dir / f"{dicom_id}.jpg", seed)
            metadata.append({"dicom_id": dicom_id, "subject_id": subject, "study_id": study, "ViewPosition": view})
            splits.append({"dicom_id": dicom_id, "study_id": study, "subject_id": subject, "split": split})
        if labels is not None:
            chexpert.append({"subject_id": subject, "study_id": study, **labels})
        if report is not None:
            txt = reports_root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_text(report)
    write_table(root / "mimic-cxr-2.0.0-metadata.csv", metadata)
    write_table(root / ("mimic-cxr-2.0.0-split.csv" + (".gz" if gzip_split else "")), splits)
    columns = ["subject_id", "study_id", "Cardiomegaly", "Edema", "No Finding", "Pleural Effusion", "Pneumothorax"]
    with (root / "mimic-cxr-2.0.0-chexpert.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(chexpert)
    return root


# ------------------------------------------------------------------------------------------------------ MIMIC
def test_mimic_reader_joins_csvs_picks_one_frontal_image_per_study(tmp_path):
    make_mimic_layout(tmp_path, gzip_split=True)
    records = read_mimic_cxr_jpg(tmp_path)
    by_study = {r["study"]: r for r in records}
    # the lateral-only study is dropped; PA preferred over AP; lowest dicom_id among equals
    assert sorted(by_study) == ["50000001", "50000002", "50000003", "50000005"]
    assert Path(by_study["50000001"]["image"]).name == "d-pa.jpg" and by_study["50000001"]["view"] == "PA"
    assert Path(by_study["50000002"]["image"]).name == "a-ap.jpg"
    assert all(Path(r["image"]).is_absolute() and Path(r["image"]).is_file() for r in records)
    assert by_study["50000001"]["split"] == "training" and by_study["50000003"]["split"] == "validation"
    assert by_study["50000005"]["split"] == "test" and by_study["50000005"]["subject"] == "12000004"
    # labels from chexpert.csv in the CheXpert convention; a study without a row is labelled later
    assert by_study["50000002"]["label_record"]["Pleural Effusion"] == 1.0
    assert by_study["50000002"]["label_record"]["Cardiomegaly"] == -1.0
    assert by_study["50000005"]["label_record"]["Pneumothorax"] is None
    assert by_study["50000003"]["label_record"] is None
    # the report holds the chosen sections only
    report = by_study["50000002"]["report"]
    assert "pleural effusion" in report.lower() and "dyspnea" not in report.lower()


def test_mimic_reader_view_order_all_images_and_reports_dir(tmp_path):
    data, reports = tmp_path / "jpg", tmp_path / "reports"
    make_mimic_layout(data, reports_root=reports)
    with pytest.raises(DataError, match="missing report"):
        read_mimic_cxr_jpg(data)  # MIMIC-CXR-JPG ships no reports: they live in reports_dir
    records = read_mimic_cxr_jpg(data, reports_dir=reports, views=("AP", "PA"))
    assert Path({r["study"]: r for r in records}["50000001"]["image"]).name == "b-ap.jpg"
    records = read_mimic_cxr_jpg(data, reports_dir=reports, all_images=True)
    assert sorted(Path(r["image"]).name for r in records if r["study"] == "50000001") == ["b-ap.jpg", "d-pa.jpg"]
    records = read_mimic_cxr_jpg(data, reports_dir=reports, views=None)
    assert "50000004" in {r["study"] for r in records}  # views=None keeps lateral-only studies


def test_mimic_unknown_label_value_names_csv_row_and_column(tmp_path):
    studies = list(MIMIC_STUDIES)
    studies[1] = studies[1][:4] + ({"Pleural Effusion": "maybe"},) + studies[1][5:]
    make_mimic_layout(tmp_path, studies)
    with pytest.raises(DataError, match=r"chexpert\.csv.*unknown label value.*'maybe'.*'Pleural Effusion'.*row 2"):
        read_mimic_cxr_jpg(tmp_path)
    skip = SkipCounter(skip_bad=True)
    records = read_mimic_cxr_jpg(tmp_path, skip=skip)
    assert len(records) == 3 and "50000002" not in {r["study"] for r in records}
    assert skip.total == 1 and "unknown label value" in skip.reasons


def test_mimic_missing_image_report_and_section(tmp_path):
    make_mimic_layout(tmp_path)
    (tmp_path / "files/p10/p10000001/s50000001/d-pa.jpg").unlink()
    (tmp_path / "files/p11/p11000003/s50000003.txt").unlink()
    (tmp_path / "files/p12/p12000004/s50000005.txt").write_text(ONLY_FINDINGS)
    skip = SkipCounter(skip_bad=True)
    records = read_mimic_cxr_jpg(tmp_path, sections=("impression",), skip=skip)
    assert [r["study"] for r in records] == ["50000002"]
    assert skip.reasons["missing image"] == 1 and skip.reasons["missing report"] == 1
    assert skip.total == 3 and any("s50000005.txt" in e for e in skip.examples)
    with pytest.raises(DataError, match=r"d-pa\.jpg.*missing image"):
        read_mimic_cxr_jpg(tmp_path)
    (tmp_path / "mimic-cxr-2.0.0-metadata.csv").unlink()
    with pytest.raises(DataError, match="metadata.csv.*missing file"):
        read_mimic_cxr_jpg(tmp_path)


def test_empty_report_is_bad_input(tmp_path):
    make_mimic_layout(tmp_path)
    (tmp_path / "files/p11/p11000003/s50000003.txt").write_text("  \n")
    with pytest.raises(DataError, match=r"s50000003\.txt.*empty report"):
        read_mimic_cxr_jpg(tmp_path)


# ------------------------------------------------------------------------------------------------ IU X-ray
def iu_xml(uid: str, findings: str | None, impression: str | None, images: list[str]) -> str:
    texts = ['<AbstractText Label="INDICATION">Chest pain</AbstractText>']
    if findings is not None:
        texts.append(f'<AbstractText Label="FINDINGS">{findings}</AbstractText>')
    if impression is not None:
        texts.append(f'<AbstractText Label="IMPRESSION">{impression}</AbstractText>')
    parents = "".join(f'<parentImage id="{i}"><caption>Xray Chest</caption></parentImage>' for i in images)
    return (
        f'<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="{uid}"/><MedlineCitation><Article><Abstract>'
        f"{''.join(texts)}</Abstract></Article></MedlineCitation><MeSH><major>normal</major></MeSH>"
        f"{parents}</eCitation>"
    )


def make_iu_layout(root: Path) -> Path:
    reports, images = root / "ecgen-radiology", root / "NLMCXR_png"
    reports.mkdir(parents=True)
    cxr1, cxr2 = ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"], ["CXR2_IM-0652-1001"]
    cxr10 = ["CXR10_IM-0002-1001", "CXR10_IM-0002-2001"]
    (reports / "1.xml").write_text(iu_xml("CXR1", "The heart is normal.", "Normal chest.", cxr1))
    (reports / "2.xml").write_text(iu_xml("CXR2", "Right pleural effusion.", "Effusion.", cxr2))
    (reports / "10.xml").write_text(iu_xml("CXR10", "Lungs are clear.", None, cxr10))
    for n, stem in enumerate(cxr1 + cxr2 + cxr10):
        write_image(images / f"{stem}.png", 100 + n)
    return root


def test_iu_xray_reader(tmp_path):
    make_iu_layout(tmp_path)
    views = write_table(tmp_path / "views.csv", [{"imageid": "CXR10_IM-0002-1001", "view": "L"}])
    records = read_iu_xray(tmp_path, view_table=views, sections=("findings",))
    assert [r["subject"] for r in records] == ["CXR1", "CXR2", "CXR10"]  # numeric file order
    by = {r["subject"]: r for r in records}
    assert Path(by["CXR1"]["image"]).name == "CXR1_1_IM-0001-3001.png"  # first image without a hint
    assert Path(by["CXR10"]["image"]).name == "CXR10_IM-0002-2001.png"  # the hint says the first is lateral
    assert all(r["label_record"] is None and r["split"] is None and r["study"] == r["subject"] for r in records)
    assert "pleural effusion" in by["CXR2"]["report"].lower() and "chest pain" not in by["CXR2"]["report"].lower()
    lateral = write_table(tmp_path / "lateral.csv", [{"imageid": "CXR2_IM-0652-1001", "view": "LL"}])
    assert [r["subject"] for r in read_iu_xray(tmp_path, view_table=lateral)] == ["CXR1", "CXR10"]  # left out


def test_iu_xray_reads_report_archive_and_counts_bad_items(tmp_path):
    make_iu_layout(tmp_path)
    with tarfile.open(tmp_path / "NLMCXR_reports.tgz", "w:gz") as tar:
        tar.add(tmp_path / "ecgen-radiology", arcname="ecgen-radiology")
    (tmp_path / "NLMCXR_png" / "CXR2_IM-0652-1001.png").unlink()
    archive = tmp_path / "NLMCXR_reports.tgz"
    with pytest.raises(DataError, match=r"CXR2_IM-0652-1001\.png.*missing image"):
        read_iu_xray(tmp_path, reports_dir=archive, view_table=None, sections=("findings",))
    skip = SkipCounter(skip_bad=True)
    records = read_iu_xray(tmp_path, reports_dir=archive, view_table=None, sections=("impression",), skip=skip)
    assert [r["subject"] for r in records] == ["CXR1"]  # CXR2 lost its image, CXR10 has no impression
    assert skip.reasons["missing image"] == 1 and skip.total == 2


# --------------------------------------------------------------------------------------------------- R2Gen
def test_r2gen_annotation_iu_and_mimic_variants(tmp_path):
    images = tmp_path / "images"
    write_image(images / "CXR1_IM-1/0.png", 1)
    write_image(images / "CXR1_IM-1/1.png", 2)
    write_image(images / "CXR2_IM-2/0.png", 3)
    write_image(images / "p10/p10000001/s5001/abc.jpg", 4)
    annotation = {
        "train": [
            {
                "id": "CXR1_IM-1",
                "report": "The heart is normal. The lungs are clear.",
                "image_path": ["CXR1_IM-1/0.png", "CXR1_IM-1/1.png"],
                "split": "train",
            }
        ],
        "val": [
            {"id": "CXR2_IM-2", "report": "Small left effusion.", "image_path": ["CXR2_IM-2/0.png"], "split": "val"}
        ],
        "test": [
            {
                "id": "abc",
                "subject_id": 10000001,
                "study_id": 5001,
                "report": "No pneumothorax.",
                "image_path": ["p10/p10000001/s5001/abc.jpg"],
                "split": "test",
            }
        ],
    }
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(annotation))
    records = read_r2gen_annotation(path)
    assert [r["split"] for r in records] == ["training", "validation", "test"]
    assert Path(records[0]["image"]).name == "0.png" and records[0]["subject"] == "CXR1_IM-1"
    assert records[2]["subject"] == "10000001" and records[2]["study"] == "5001"
    assert "heart is normal" in records[0]["report"].lower()
    annotation["val"][0]["image_path"] = ["CXR2_IM-2/9.png"]
    annotation["test"][0]["report"] = " "
    path.write_text(json.dumps(annotation))
    skip = SkipCounter(skip_bad=True)
    assert len(read_r2gen_annotation(path, images, skip=skip)) == 1
    assert skip.reasons["missing image"] == 1 and skip.reasons["empty report"] == 1


# ------------------------------------------------------------------------------------------------ CSV / JSONL
def test_table_reader_csv_and_jsonl(tmp_path):
    write_image(tmp_path / "img/a.png", 1)
    write_image(tmp_path / "img/b.jpg", 2)
    (tmp_path / "b.txt").write_text(EFFUSION)
    rows = [
        {"image": "img/a.png", "report": "The lungs are clear.", "subject": "p1", "Edema": "0", "Cardiomegaly": ""},
        {"image": "img/b.jpg", "report": "b.txt", "subject": "p2", "Edema": "-1", "Cardiomegaly": "1"},
    ]
    records = read_table(write_table(tmp_path / "t.csv", rows))
    assert [r["subject"] for r in records] == ["p1", "p2"]
    assert records[0]["label_record"] == {"Edema": 0.0, "Cardiomegaly": None}
    assert records[1]["label_record"] == {"Edema": -1.0, "Cardiomegaly": 1.0}
    assert "lungs are clear" in records[0]["report"].lower()
    assert "pleural effusion" in records[1]["report"].lower() and "dyspnea" not in records[1]["report"].lower()
    jsonl = [{"img": str(tmp_path / "img/a.png"), "text": "Heart size normal.", "patient": "x", "labels": {"Edema": 1}}]
    table = write_table(tmp_path / "t.jsonl", jsonl)
    records = read_table(table, image_col="img", report_col="text", subject_col="patient")
    assert records[0]["label_record"] == {"Edema": 1.0} and records[0]["subject"] == "x"
    records = read_table(write_table(tmp_path / "u.csv", [{"image": "img/a.png", "report": "Clear."}]))
    assert records[0]["label_record"] is None and records[0]["subject"] == "a"  # no subject column: the file


def test_table_reader_bad_labels_and_missing_files(tmp_path):
    write_image(tmp_path / "a.png", 1)
    rows = [
        {"image": "a.png", "report": "Clear.", "subject": "p1", "Edema": "0"},
        {"image": "a.png", "report": "Clear.", "subject": "p2", "Edema": "sometimes"},
        {"image": "gone.png", "report": "Clear.", "subject": "p3", "Edema": "0"},
        {"image": "a.png", "report": "gone.txt", "subject": "p4", "Edema": "0"},
    ]
    table = write_table(tmp_path / "t.csv", rows)
    with pytest.raises(DataError, match=r"t\.csv.*unknown label value.*'sometimes'.*column 'Edema'.*row 2"):
        read_table(table)
    skip = SkipCounter(skip_bad=True)
    assert [r["subject"] for r in read_table(table, skip=skip)] == ["p1"]
    assert skip.reasons == {"unknown label value": 1, "missing image": 1, "missing report": 1}
    with pytest.raises(DataError, match=r"unknown label column.*'Cardiomegally'"):
        read_table(table, label_cols="Edema,Cardiomegally")


# ---------------------------------------------------------------------------------------------------- DICOM
def write_dicom(path: Path, patient: str, study_uid: str, sop_uid: str, view: str = "PA", pixels: bool = True) -> Path:
    """A small CR DICOM (12-bit, 32x32); ``pixels=False`` leaves out the pixel data."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, sop_uid
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study_uid, study_uid + ".1"
    ds.Modality, ds.ViewPosition = "CR", view
    if pixels:
        ds.Rows = ds.Columns = 32
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.random.default_rng(len(sop_uid)).integers(0, 4096, (32, 32), dtype=np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_dir_reader(tmp_path):
    write_dicom(tmp_path / "s1/img1.dcm", "P1", "1.2.3.1", "1.2.3.1.1")
    (tmp_path / "s1/img1.txt").write_text(NORMAL)
    write_dicom(tmp_path / "s2/IM0002", "P2", "1.2.3.2", "1.2.3.2.1", view="AP")  # no extension: DICM preamble
    (tmp_path / "s2/IM0002.txt").write_text(EFFUSION)
    write_dicom(tmp_path / "s2/lateral.dcm", "P2", "1.2.3.2", "1.2.3.2.2", view="LL")
    (tmp_path / "s2/lateral.txt").write_text(EFFUSION)
    (tmp_path / "notes.csv").write_text("not,dicom\n")
    records = read_dicom_dir(tmp_path, views="PA,AP")
    found = [(r["subject"], r["study"], r["view"]) for r in records]
    assert found == [("P1", "1.2.3.1", "PA"), ("P2", "1.2.3.2", "AP")]
    assert "no acute" in records[0]["report"].lower() and records[0]["label_record"] is None
    assert len(read_dicom_dir(tmp_path)) == 3

    # reports from a table keyed by SOPInstanceUID, with label columns
    (tmp_path / "s1/img1.txt").unlink()
    table = write_table(
        tmp_path / "reports.csv",
        [
            {
                "SOPInstanceUID": "1.2.3.1.1",
                "report": "FINDINGS: Small left pneumothorax.\nIMPRESSION: Pneumothorax.",
                "Pneumothorax": "1",
            },
            {"id": "IM0002", "report": "FINDINGS: Clear lungs.\nIMPRESSION: Normal."},
        ],
    )
    records = read_dicom_dir(tmp_path, reports=table, views="PA,AP")
    assert "pneumothorax" in records[0]["report"].lower() and records[0]["label_record"] == {"Pneumothorax": 1.0}
    assert "clear lungs" in records[1]["report"].lower()


def test_dicom_without_pixel_data_and_missing_report(tmp_path):
    write_dicom(tmp_path / "ok.dcm", "P1", "1.2.1", "1.2.1.1")
    (tmp_path / "ok.txt").write_text(NORMAL)
    write_dicom(tmp_path / "empty.dcm", "P2", "1.2.2", "1.2.2.1", pixels=False)
    (tmp_path / "empty.txt").write_text(NORMAL)
    write_dicom(tmp_path / "noreport.dcm", "P3", "1.2.3", "1.2.3.1")
    with pytest.raises(DataError, match=r"empty\.dcm.*without pixel data"):
        read_dicom_dir(tmp_path)
    skip = SkipCounter(skip_bad=True)
    assert [r["subject"] for r in read_dicom_dir(tmp_path, skip=skip)] == ["P1"]
    assert skip.reasons == {"DICOM without pixel data": 1, "missing report": 1}


# ---------------------------------------------------------------------------------------------------- NIfTI
def test_nifti_dir_reader(tmp_path):
    import nibabel as nib

    for n, name in enumerate(["a.nii.gz", "sub/b.nii"]):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        data = np.random.default_rng(n).random((32, 32)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / name))
    (tmp_path / "a.txt").write_text(NORMAL)
    (tmp_path / "sub/b.txt").write_text(EFFUSION)
    records = read_nifti_dir(tmp_path)
    assert [r["subject"] for r in records] == ["a", "b"]
    assert records[0]["image"].endswith("a.nii.gz") and "effusion" in records[1]["report"].lower()
    table = write_table(
        tmp_path / "r.jsonl",
        [
            {"id": "a", "subject": "patient-7", "report": "FINDINGS: Mild edema.\nIMPRESSION: Edema.", "Edema": 1},
            {"id": "b", "subject": "patient-8", "report": "FINDINGS: Clear.\nIMPRESSION: Normal."},
        ],
    )
    records = read_nifti_dir(tmp_path, reports=table)
    assert [r["subject"] for r in records] == ["patient-7", "patient-8"]
    assert records[0]["label_record"] == {"Edema": 1.0}
    (tmp_path / "sub/b.txt").unlink()
    with pytest.raises(DataError, match=r"b\.nii.*missing report"):
        read_nifti_dir(tmp_path)


def test_source_registry():
    assert {"mimic", "iu_xray", "r2gen", "csv", "dicom_dir", "nifti_dir", "nifti"} <= set(SOURCES)
    assert get_source("nifti") is read_nifti_dir and get_source("csv") is read_table
    with pytest.raises(ValueError, match="unknown source 'pacs'.*mimic.*iu_xray.*dicom_dir"):
        get_source("pacs")


# ---------------------------------------------------------------------------------------------- source options
def test_source_options_resolve_paths_and_cover_every_source(tmp_path):
    from bundle.data.sources.options import SOURCE_OPTIONS, MimicOptions, R2GenOptions, TableOptions

    assert set(SOURCES) | {"embedded"} == set(SOURCE_OPTIONS)
    write_image(tmp_path / "images" / "a" / "0.png", 1)
    annotation = {"train": [{"id": "a", "report": "Clear lungs.", "image_path": ["a/0.png"], "split": "train"}]}
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(annotation))
    r2gen = R2GenOptions()
    for data_dir in (str(path), str(tmp_path)):  # the annotation file, or the folder that holds it
        records = r2gen.read(r2gen.location(data_dir, tmp_path), ["findings"], SkipCounter())
        assert len(records) == 1 and records[0]["split"] == "training"
    assert R2GenOptions(annotation=str(path)).location(None, tmp_path) == path
    assert TableOptions(table="t.csv").location("ignored.csv", tmp_path) == Path("t.csv")
    with pytest.raises(ValueError, match="--source csv needs the table"):
        TableOptions().location(None, tmp_path)
    with pytest.raises(ValueError, match="--source mimic needs --data_dir"):
        MimicOptions().location(None, tmp_path)
