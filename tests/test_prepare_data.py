"""Records -> MONAI datalist (patient-level splits, duplicates, image checks), bundle.data.prepare and its command
line scripts/prepare_data.py."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from monai.data import load_decathlon_datalist
from test_sources import EFFUSION, NORMAL, ONLY_FINDINGS, write_dicom, write_image, write_table

from bundle.data.datalist import (
    build_datalist,
    heldout_text_overlap,
    remove_duplicates,
    split_subjects,
    write_dataset,
)
from bundle.data.errors import DataError, SkipCounter
from bundle.data.prepare import (
    DatasetOptions,
    EmbeddedOptions,
    TableOptions,
    prepare_data,
    prepare_dataset,
    split_options,
)
from bundle.data.sources import make_record

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "prepare_data.py"
sys.path.insert(0, str(SCRIPT.parent))
import prepare_data as cli


def make_records(root: Path, subjects: int, studies: int = 2, split_of=None, seed: int = 0) -> list[dict]:
    """``subjects`` x ``studies`` records with their own tiny images and given label records."""
    records = []
    for s in range(subjects):
        for t in range(studies):
            image = write_image(root / f"p{s}" / f"s{t}.png", seed=seed + 1000 * s + t)
            label = {"Cardiomegaly": 1.0} if (s + t) % 3 == 0 else {"No Finding": 1.0}
            split = split_of(s) if split_of else None
            report = f"Report {s} {t}. The heart is normal."
            records.append(make_record(image, report, label, f"subj{s}", f"{s}-{t}", split))
    return records


def owners(datalist: dict) -> dict[str, str]:
    """subject -> split, asserting every subject sits in one split only."""
    found: dict[str, set] = {}
    for name in ("training", "validation", "test"):
        for item in datalist[name]:
            found.setdefault(item["subject"], set()).add(name)
    assert all(len(v) == 1 for v in found.values()), found
    return {k: v.pop() for k, v in found.items()}


# ---------------------------------------------------------------------------------------------------- splits
def test_random_split_is_patient_level_seeded_and_hash_stable(tmp_path):
    records = make_records(tmp_path, subjects=24, studies=2)
    first = build_datalist(records, verify_images=False, seed=3)
    assignment = owners(first)
    assert first["split"] == "random" and len(assignment) == 24
    assert sum(len(first[n]) for n in ("training", "validation", "test")) == 48
    assert all(first[n] for n in ("training", "validation", "test"))
    shuffled = list(records)
    random.Random(0).shuffle(shuffled)
    assert owners(build_datalist(shuffled, verify_images=False, seed=3)) == assignment  # input order is irrelevant
    assert owners(build_datalist(records, verify_images=False, seed=4)) != assignment  # the seed matters
    # adding patients never moves an existing patient to another split
    before = split_subjects([f"subj{i}" for i in range(400)], 0.1, 0.1, seed=3)
    grown = split_subjects([f"subj{i}" for i in range(500)], 0.1, 0.1, seed=3)
    assert {s: grown[s] for s in before} == before
    shares = {n: sum(v == n for v in grown.values()) / 500 for n in ("validation", "test")}
    assert all(0.05 < share < 0.15 for share in shares.values()), shares
    # a tiny dataset still gets one patient per split
    assert sorted(split_subjects(["a", "b", "c"], 0.1, 0.1, seed=0).values()) == ["test", "training", "validation"]


def test_official_split_kept_and_checked(tmp_path):
    splits = ["training", "training", "validation", "test"]
    records = make_records(tmp_path, subjects=4, studies=2, split_of=lambda s: splits[s])
    datalist = build_datalist(records, verify_images=False)
    assert datalist["split"] == "official"
    assert owners(datalist) == {f"subj{s}": splits[s] for s in range(4)}
    assert build_datalist(records, verify_images=False, split="random")["split"] == "random"
    records[-1]["split"] = "training"  # subj3 now in training and test
    with pytest.raises(DataError, match="subj3.*both"):
        build_datalist(records, verify_images=False)
    records[0]["split"] = None
    with pytest.raises(DataError, match="official"):
        build_datalist(records, verify_images=False, split="official")
    assert build_datalist(records, verify_images=False)["split"] == "random"  # not every record has one


# ---------------------------------------------------------------------------------------------- held-out text
def test_heldout_text_overlap_counts_normalised_copies():
    training = [{"report": "No acute cardiopulmonary process."}, {"report": "Small left pleural effusion."}]
    disjoint = {
        "training": training,
        "validation": [{"report": "Mild cardiomegaly."}],
        "test": [{"report": "No acute cardiopulmonary process, stable."}, {"report": "Small right pleural effusion."}],
    }
    assert heldout_text_overlap(disjoint) == {"validation": 0, "test": 0, "total": 0}
    copied = dict(disjoint, test=[*disjoint["test"], {"report": "no acute  cardiopulmonary\nPROCESS"}])
    assert heldout_text_overlap(copied) == {"validation": 0, "test": 1, "total": 1}
    copied["validation"] = [{"report": "SMALL LEFT PLEURAL EFFUSION!"}, {"report": "Small left pleural effusion"}]
    assert heldout_text_overlap(copied) == {"validation": 2, "test": 1, "total": 3}
    assert heldout_text_overlap({"training": training}) == {"validation": 0, "test": 0, "total": 0}


def test_prepare_data_warns_about_heldout_text_of_real_sources(tmp_path, caplog):
    rows = []
    for n, (split, report) in enumerate(
        [
            ("train", NORMAL),
            ("train", EFFUSION),
            ("validate", EFFUSION),
            ("test", NORMAL.lower()),
            ("test", ONLY_FINDINGS),
        ]
    ):
        write_image(tmp_path / "src" / f"i{n}.png", 20 + n)
        rows.append({"image": f"i{n}.png", "report": report, "subject": f"p{n}", "split": split})
    table = write_table(tmp_path / "src" / "table.csv", rows)
    with caplog.at_level("WARNING", logger="bundle.data.prepare"):
        summary = prepare_data("csv", str(tmp_path / "out"), str(table), min_count=1, quiet=True)
    assert summary["split"] == "official"
    assert summary["heldout_report_overlap"] == {"validation": 1, "test": 1}  # a real source: counted and warned
    assert any("repeat a training report" in w for w in summary["warnings"])
    assert "1 validation and 1 test reports" in caplog.text
    stored = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert stored["heldout_report_overlap"] == {"validation": 1, "test": 1}


# ---------------------------------------------------------------------------------------------- duplicates
def test_duplicates_removed(tmp_path):
    records = make_records(tmp_path, subjects=3, studies=1)
    copy = tmp_path / "copy.png"
    shutil.copyfile(records[0]["image"], copy)
    same_size_other = write_image(tmp_path / "other.png", seed=4242)  # noise PNG: same size, other bytes
    records += [
        dict(records[1]),  # the same image path twice
        make_record(copy, "Copy.", None, "subj9", "9-0"),  # byte-identical file under another name and subject
        make_record(same_size_other, "Other.", {"Edema": 1.0}, "subj8", "8-0"),
    ]
    kept, removed = remove_duplicates(records)
    assert [Path(r["image"]).name for r in kept] == ["s0.png", "s0.png", "s0.png", "other.png"]
    assert removed == {"same image path": 1, "byte-identical image": 1}
    datalist = build_datalist(records, verify_images=False)
    assert datalist["excluded"]["duplicates"] == {"same image path": 1, "byte-identical image": 1}
    assert sum(len(datalist[n]) for n in ("training", "validation", "test")) == 4


# ------------------------------------------------------------------------------------------ labels, images
def test_labels_from_record_or_labeler_and_uncertain_policy(tmp_path):
    image1, image2 = write_image(tmp_path / "a.png", 1), write_image(tmp_path / "b.png", 2)
    records = [
        make_record(image1, "There is a large right pleural effusion.", None, "s1", "1", "training"),
        make_record(image2, "Clear.", {"Edema": -1.0, "Cardiomegaly": 1.0}, "s2", "2", "training"),
    ]
    classes = ["No Finding", "Cardiomegaly", "Pleural Effusion", "Edema"]
    datalist = build_datalist(records, class_names=classes, uncertain="ones", verify_images=False)
    labels = {item["subject"]: item["labels"] for item in datalist["training"]}
    assert labels["s1"][classes.index("Pleural Effusion")] == 1.0 and labels["s1"][0] == 0.0
    assert labels["s2"] == [0.0, 1.0, 0.0, 1.0]
    assert datalist["warnings"] == []
    with_fracture = build_datalist(records, class_names=[*classes, "Fracture"], verify_images=False)
    assert "Fracture" in with_fracture["warnings"][0]  # no item states it: negative everywhere
    ignore = build_datalist(records, class_names=classes, uncertain="ignore", verify_images=False)
    assert {i["subject"]: i["labels"] for i in ignore["training"]}["s2"][3] == -1.0
    with pytest.raises(DataError, match="unknown label.*Cardiomegally"):
        build_datalist(records, class_names=["Cardiomegally"], verify_images=False)


def bad_images(root: Path) -> dict[str, Path]:
    """A good JPEG, a corrupt one (random bytes) and a truncated one (first half of a real JPEG)."""
    good = write_image(root / "good.jpg", 1, size=64)
    corrupt = root / "corrupt.jpg"
    corrupt.write_bytes(os.urandom(2000))
    truncated = root / "truncated.jpg"
    data = write_image(root / "full.jpg", 2, size=64).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    (root / "full.jpg").unlink()
    return {"good": good, "corrupt": corrupt, "truncated": truncated}


@pytest.mark.parametrize("bad", ["corrupt", "truncated"])
def test_verify_images_names_bad_file_or_skips_it(tmp_path, bad):
    images = bad_images(tmp_path)
    records = [make_record(images[k], "Clear.", {}, k, k, "training") for k in ("good", bad)]
    with pytest.raises(DataError, match=rf"{bad}\.jpg"):
        build_datalist(records)
    skip = SkipCounter(skip_bad=True)
    datalist = build_datalist(records, skip=skip)
    assert [i["subject"] for i in datalist["training"]] == ["good"]
    assert skip.total == 1 and datalist["excluded"]["skipped"] == 1


# ------------------------------------------------------------------------------------------------- writing
def test_write_dataset_files_paths_and_overwrite(tmp_path):
    out = tmp_path / "dataset"
    inside = make_records(out / "raw", subjects=10, studies=1)
    outside = make_records(tmp_path / "elsewhere", subjects=10, studies=1, seed=7)
    for r in outside:
        r["subject"] += "-x"
    datalist = build_datalist(inside + outside, verify_images=False, seed=0)
    summary = write_dataset(datalist, out, min_count=1)
    assert {p.name for p in out.iterdir()} >= {"datalist.json", "tokenizer.json", "summary.json"}
    stored = json.loads((out / "datalist.json").read_text())
    images = [i["image"] for n in ("training", "validation", "test") for i in stored[n]]
    assert sum(p.startswith("raw/") for p in images) == 10  # inside out_dir: relative
    assert sum(os.path.isabs(p) for p in images) == 10  # outside: absolute
    assert "excluded" not in stored and stored["class_names"] == datalist["class_names"]
    for name in ("training", "validation", "test"):
        loaded = load_decathlon_datalist(str(out / "datalist.json"), is_segmentation=False, data_list_key=name)
        assert len(loaded) == summary["counts"][name] and all(Path(i["image"]).is_file() for i in loaded)
    assert summary["vocab_size"] > 4 and json.loads((out / "summary.json").read_text())["counts"] == summary["counts"]
    positives = sum(i["labels"][datalist["class_names"].index("Cardiomegaly")] for i in stored["training"])
    expected = round(positives / len(stored["training"]), 4)
    assert summary["label_prevalence"]["training"]["Cardiomegaly"] == expected
    with pytest.raises(FileExistsError, match="overwrite"):
        write_dataset(datalist, out)
    write_dataset(datalist, out, min_count=1, overwrite=True)


# ------------------------------------------------------------------------------------------ prepare_data.py
def make_table_with_bad_items(root: Path) -> Path:
    """A CSV source holding good rows and one row of each kind of bad input."""
    bad_images(root)
    for n in range(6):
        write_image(root / f"ok{n}.png", 10 + n)
    (root / "findings_only.txt").write_text(ONLY_FINDINGS)
    rows = [
        {"image": f"ok{n}.png", "report": NORMAL if n % 2 else EFFUSION, "subject": f"p{n}", "Edema": "0"}
        for n in range(5)
    ]
    rows += [
        {"image": "corrupt.jpg", "report": NORMAL, "subject": "b1", "Edema": "0"},
        {"image": "truncated.jpg", "report": NORMAL, "subject": "b2", "Edema": "0"},
        {"image": "ok5.png", "report": "findings_only.txt", "subject": "b3", "Edema": "0"},
        {"image": "good.jpg", "report": "", "subject": "b4", "Edema": "0"},
        {"image": "ok1.png", "report": NORMAL, "subject": "b5", "Edema": "perhaps"},
        {"image": "missing.png", "report": NORMAL, "subject": "b6", "Edema": "0"},
    ]
    return write_table(root / "table.csv", rows)


def test_prepare_data_skip_bad_counts_every_kind_of_bad_input(tmp_path, capsys):
    table = make_table_with_bad_items(tmp_path / "src")
    args = ["--source", "csv", "--data_dir", str(table), "--out_dir", str(tmp_path / "out")]
    args += ["--sections", "impression", "--min_count", "1"]
    assert cli.main(args) == 2
    assert "findings_only.txt" in capsys.readouterr().err  # the first bad item found, named
    assert cli.main([*args, "--skip_bad"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    reasons = summary["excluded"]["reasons"]
    assert summary["excluded"]["skipped"] == 6 and sum(summary["counts"].values()) == 5
    assert reasons["missing image"] == 1 and reasons["unknown label value"] == 1
    assert reasons["missing report section"] == 1 and reasons["empty report"] == 1
    image_reasons = [k for k in reasons if k not in ("missing image", "unknown label value", "empty report")]
    assert sum(reasons[k] for k in image_reasons if "section" not in k) == 2  # corrupt and truncated
    assert any("corrupt.jpg" in e for e in summary["excluded"]["examples"])
    assert "skipped: 6" in printed and "datalist.json" in printed


def test_prepare_data_dicom_without_pixels_skipped_and_counted(tmp_path):
    for n in range(4):
        write_dicom(tmp_path / f"d/img{n}.dcm", f"P{n}", f"1.2.{n}", f"1.2.{n}.1")
        (tmp_path / f"d/img{n}.txt").write_text(NORMAL)
    write_dicom(tmp_path / "d/blank.dcm", "P9", "1.2.9", "1.2.9.1", pixels=False)
    (tmp_path / "d/blank.txt").write_text(NORMAL)
    with pytest.raises(DataError, match=r"blank\.dcm.*pixel data"):
        prepare_data("dicom_dir", str(tmp_path / "out"), str(tmp_path / "d"), quiet=True)
    summary = prepare_data(
        "dicom_dir", str(tmp_path / "out"), str(tmp_path / "d"), skip_bad=True, min_count=1, quiet=True
    )
    assert summary["excluded"]["reasons"] == {"DICOM without pixel data": 1} and sum(summary["counts"].values()) == 4


def test_prepare_data_rejects_unknown_source_and_class(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown --source 'pacs'.*embedded.*mimic.*iu_xray.*r2gen.*csv.*dicom_dir"):
        prepare_data("pacs", str(tmp_path))
    assert cli.main(["--source", "csv", "--out_dir", str(tmp_path), "--classes", "Edema,Cardiomegally"]) == 2
    err = capsys.readouterr().err
    assert "Cardiomegally" in err and "Pleural Effusion" in err  # the valid names are listed
    assert cli.main(["--source", "embedded", "--out_dir", str(tmp_path), "--uncertain", "maybe"]) == 2
    assert "zeros, ones, ignore" in capsys.readouterr().err


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(REPO_ROOT),
    )


def test_prepare_data_embedded_end_to_end(tmp_path, capsys):
    out = tmp_path / "embedded"
    args = ["--source", "embedded", "--num_items", "30", "--image_size", "64", "--out_dir", str(out)]
    args += ["--min_count", "2", "--report_source", "grammar", "--use_real_masks", "False"]  # fast settings
    result = run_script(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training" in result.stdout and "vocabulary" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["source"] == "embedded" and summary["split"] == "official"
    # the embedded splits keep held-out report text out of training, and the datalist keeps those splits
    assert summary["heldout_report_overlap"] == {"validation": 0, "test": 0}
    assert "held-out reports repeating a training report: validation 0, test 0" in result.stdout
    assert (out / "raw" / "mimic-cxr-2.0.0-chexpert.csv").is_file()  # the MIMIC layout was written and read
    total = 0
    for name in ("training", "validation", "test"):
        items = load_decathlon_datalist(str(out / "datalist.json"), is_segmentation=False, data_list_key=name)
        assert len(items) == summary["counts"][name]
        total += len(items)
        for item in items:
            assert Path(item["image"]).is_file() and item["report"]
            assert len(item["labels"]) == len(summary["class_names"])
    assert 0 < total <= 30 and summary["counts"]["training"] > 0
    from bundle.data.tokenizer import ReportTokenizer

    assert ReportTokenizer.load(str(out / "tokenizer.json")).vocab_size == summary["vocab_size"] > 4
    # again, in-process (quicker): refused without --overwrite; with it, the raw data is reused
    assert cli.main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite", "--quiet"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["embedded"]["reused"] is True and again["counts"] == summary["counts"]


def test_prepare_data_embedded_refuses_leaked_heldout_text(tmp_path, capsys):
    out = tmp_path / "embedded"
    settings = {"num_items": 24, "image_size": 32, "report_source": "grammar", "use_real_masks": False, "min_count": 1}
    prepare_data("embedded", str(out), quiet=True, **settings)
    raw = out / "raw"
    split_rows = list(csv.DictReader((raw / "mimic-cxr-2.0.0-split.csv").read_text().splitlines()))
    train = next(r for r in split_rows if r["split"] == "train")
    test = next(r for r in split_rows if r["split"] == "test")

    def report_path(row: dict) -> Path:
        subject = row["subject_id"]
        return raw / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{row['study_id']}.txt"

    report_path(test).write_text(report_path(train).read_text().upper())  # a training report leaks into test
    with pytest.raises(DataError, match="1 test reports repeat a training report"):
        prepare_data("embedded", str(out), quiet=True, overwrite=True, **settings)
    # only IMPRESSION, or a random re-split: the embedded promise does not cover it, so the count is a warning
    summary = prepare_data("embedded", str(out), quiet=True, overwrite=True, sections="impression", **settings)
    assert summary["heldout_report_overlap"]["test"] >= 1 and any("own splits" in w for w in summary["warnings"])

    # a raw dataset written without the held-out text record is not reused silently
    raw_summary = json.loads((raw / "embedded-summary.json").read_text())
    del raw_summary["distinct_reports"]
    (raw / "embedded-summary.json").write_text(json.dumps(raw_summary))
    with pytest.raises(FileExistsError, match="distinct_reports"):
        EmbeddedOptions(num_items=24, image_size=32, report_source="grammar", use_real_masks=False).generate(raw, 0)
    regenerated = prepare_data("embedded", str(out), quiet=True, overwrite=True, **settings)
    assert regenerated["embedded"]["reused"] is False
    assert regenerated["heldout_report_overlap"] == {"validation": 0, "test": 0}


# ------------------------------------------------------------------------------------------ options and flags
def test_unknown_flag_stops_the_script_before_any_work(tmp_path):
    out = tmp_path / "embedded"
    result = run_script("--source", "embedded", "--out_dir", str(out), "--num_item", "5")  # a typo of --num_items
    assert result.returncode == 2 and "--num_item" in result.stderr and "--num_items" in result.stderr
    assert not out.exists()  # nothing generated
    result = run_script("embedded", str(out), str(tmp_path / "raw"), "extra")  # a stray positional argument
    assert result.returncode == 2 and "extra" in result.stderr and not out.exists()


def test_help_lists_the_flags_of_every_source(capsys):
    assert cli.main(["--help"]) == 0
    printed = capsys.readouterr().out
    for flag in ("--min_count=6", "--num_items=2000", "--reports_dir", "--annotation", "--label_cols", "--dicom_views"):
        assert flag in printed


def test_flat_keywords_fill_the_source_and_dataset_options(caplog):
    source, dataset = split_options("csv", {"image_col": "path", "min_count": 1, "classes": ("Edema",), "seed": 3})
    assert source == TableOptions(image_col="path") and dataset.classes == ["Edema"] and dataset.min_count == 1
    with caplog.at_level("WARNING", logger="bundle.data.prepare"):
        split_options("csv", {"all_images": True})  # a mimic option: ignored with a warning
    assert "--all_images" in caplog.text
    with pytest.raises(ValueError, match="--bogus.*valid options.*--min_count"):
        split_options("csv", {"bogus": 1})
    with pytest.raises(ValueError, match="--sections"):
        DatasetOptions(sections="")


def test_prepare_dataset_from_option_objects_matches_the_flat_form(tmp_path):
    records_dir = tmp_path / "src"
    rows = []
    for n in range(8):
        write_image(records_dir / f"i{n}.png", n)
        rows.append({"path": f"i{n}.png", "report": NORMAL if n % 2 else EFFUSION, "subject": f"p{n}"})
    table = write_table(records_dir / "table.csv", rows)
    options, dataset = TableOptions(image_col="path"), DatasetOptions(min_count=1, split="random", seed=1)
    first = prepare_dataset("csv", tmp_path / "a", str(table), options, dataset, quiet=True)
    second = prepare_data(
        "csv", str(tmp_path / "b"), str(table), image_col="path", min_count=1, split="random", seed=1, quiet=True
    )
    assert first["counts"] == second["counts"] and first["data_dir"] == str(table.resolve())
    a, b = (json.loads((tmp_path / d / "datalist.json").read_text()) for d in "ab")
    assert [i["subject"] for i in a["test"]] == [i["subject"] for i in b["test"]]
    with pytest.raises(TypeError, match="TableOptions"):
        prepare_dataset("csv", tmp_path / "c", str(table), EmbeddedOptions(), quiet=True)
