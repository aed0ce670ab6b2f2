"""CheXpert-style report labeler: mentions, negation, uncertainty, aggregation, IU X-ray agreement, CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bundle.data.errors import DataError
from bundle.data.labeler import ReportLabeler, label_report, mentions
from bundle.data.labels import CHEXPERT_CLASSES, DEFAULT_CLASSES
from bundle.data.reports import extract_sections, iter_iu_reports_from_xrv, select_sections, xrv_iu_reports_path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "label_reports.py"

# (report text, every label other than "No Finding" that the labeler must give; all others must be None)
CASES = [
    # Atelectasis
    ("Bibasilar atelectasis.", {"Atelectasis": 1.0}),
    ("Collapse of the left lower lobe.", {"Atelectasis": 1.0}),
    ("No atelectasis.", {"Atelectasis": 0.0}),
    ("Left base opacity may represent atelectasis.", {"Lung Opacity": 1.0, "Atelectasis": -1.0}),
    # Cardiomegaly
    ("Mild cardiomegaly.", {"Cardiomegaly": 1.0}),
    ("The heart is moderately enlarged.", {"Cardiomegaly": 1.0}),
    ("Enlarged cardiac silhouette.", {"Cardiomegaly": 1.0}),
    ("Heart size is normal.", {"Cardiomegaly": 0.0}),
    ("The heart is not enlarged.", {"Cardiomegaly": 0.0}),
    ("Heart size is at the upper limits of normal.", {"Cardiomegaly": 0.0}),
    ("No cardiomegaly.", {"Cardiomegaly": 0.0}),
    ("Borderline cardiomegaly.", {"Cardiomegaly": -1.0}),
    ("Heart size is borderline enlarged.", {"Cardiomegaly": -1.0}),
    # Consolidation
    ("Right lower lobe consolidation.", {"Consolidation": 1.0}),
    ("No focal consolidation.", {"Consolidation": 0.0}),
    ("Possible consolidation at the left base.", {"Consolidation": -1.0}),
    # Edema
    ("Moderate pulmonary edema.", {"Edema": 1.0}),
    ("Mild pulmonary vascular congestion.", {"Edema": 1.0}),
    ("No pulmonary edema.", {"Edema": 0.0}),
    ("Pulmonary vascularity is within normal limits.", {"Edema": 0.0}),
    ("Findings may represent mild interstitial edema.", {"Edema": -1.0}),
    ("Mild CHF.", {"Edema": 1.0, "Cardiomegaly": -1.0}),  # CheXpert: heart failure hints at cardiomegaly
    # Enlarged Cardiomediastinum
    ("The mediastinum is widened.", {"Enlarged Cardiomediastinum": 1.0}),
    ("Widened mediastinum.", {"Enlarged Cardiomediastinum": 1.0}),
    ("Mediastinal and hilar contours are normal.", {"Enlarged Cardiomediastinum": 0.0}),
    ("Possible widening of the mediastinum.", {"Enlarged Cardiomediastinum": -1.0}),
    (
        "The cardiomediastinal silhouette is within normal limits.",
        {"Enlarged Cardiomediastinum": 0.0, "Cardiomegaly": 0.0},
    ),
    # Fracture
    ("Healed left rib fractures.", {"Fracture": 1.0}),
    ("No displaced fracture.", {"Fracture": 0.0}),
    ("Questionable right rib fracture.", {"Fracture": -1.0}),
    # Lung Lesion
    ("A 1.5 cm nodule in the right upper lobe.", {"Lung Lesion": 1.0}),
    ("No suspicious pulmonary nodules or masses.", {"Lung Lesion": 0.0}),
    ("A mass cannot be excluded.", {"Lung Lesion": -1.0}),
    # Lung Opacity
    ("Patchy opacity in the left lower lobe.", {"Lung Opacity": 1.0}),
    ("No focal airspace opacity.", {"Lung Opacity": 0.0}),
    ("Lungs are clear.", {"Lung Opacity": 0.0, "Consolidation": 0.0}),
    ("Questionable retrocardiac opacity.", {"Lung Opacity": -1.0}),
    # Pleural Effusion
    ("Small bilateral pleural effusions.", {"Pleural Effusion": 1.0}),
    ("Blunting of the left costophrenic angle.", {"Pleural Effusion": 1.0}),
    ("No pleural effusion.", {"Pleural Effusion": 0.0}),
    ("Costophrenic angles are sharp.", {"Pleural Effusion": 0.0}),
    ("Possible small left pleural effusion.", {"Pleural Effusion": -1.0}),
    ("Small pericardial effusion.", {}),  # not a pleural effusion
    # Pleural Other
    ("Left apical pleural thickening.", {"Pleural Other": 1.0}),
    ("No pleural thickening.", {"Pleural Other": 0.0}),
    ("Pleural thickening versus small effusion.", {"Pleural Other": -1.0, "Pleural Effusion": -1.0}),
    # Pneumonia
    ("Right lower lobe pneumonia.", {"Pneumonia": 1.0}),
    ("No evidence of pneumonia.", {"Pneumonia": 0.0}),
    ("Cannot exclude pneumonia.", {"Pneumonia": -1.0}),
    ("Pneumonia cannot be ruled out.", {"Pneumonia": -1.0}),
    ("Retrocardiac opacity concerning for pneumonia.", {"Lung Opacity": 1.0, "Pneumonia": -1.0}),
    # Pneumothorax
    ("Small right apical pneumothorax.", {"Pneumothorax": 1.0}),
    ("No pneumothorax.", {"Pneumothorax": 0.0}),
    ("The previously seen pneumothorax has resolved.", {"Pneumothorax": 0.0}),
    ("Pneumothorax is no longer seen.", {"Pneumothorax": 0.0}),
    ("A tiny pneumothorax is not excluded.", {"Pneumothorax": -1.0}),
    ("Small right apical pneumothorax?", {"Pneumothorax": -1.0}),
    # Support Devices
    ("Right PICC line tip in the SVC.", {"Support Devices": 1.0}),
    ("Endotracheal tube terminates 4 cm above the carina.", {"Support Devices": 1.0}),
    ("Dual-lead pacemaker in place.", {"Support Devices": 1.0}),
    ("Sternotomy wires are intact.", {"Support Devices": 1.0}),
    ("The nasogastric tube has been removed.", {"Support Devices": 0.0}),
    ("Interval removal of the right IJ central line.", {"Support Devices": 0.0}),
    # scope: lists, contrast, clause breaks, pseudo-negation, alternatives
    (
        "There is no focal consolidation, pleural effusion or pneumothorax.",
        {"Consolidation": 0.0, "Pleural Effusion": 0.0, "Pneumothorax": 0.0},
    ),
    ("No effusion, but there is mild cardiomegaly.", {"Pleural Effusion": 0.0, "Cardiomegaly": 1.0}),
    ("No pneumothorax; small left pleural effusion.", {"Pneumothorax": 0.0, "Pleural Effusion": 1.0}),
    (
        "Lungs are clear without consolidation, although a small effusion is present.",
        {"Lung Opacity": 0.0, "Consolidation": 0.0, "Pleural Effusion": 1.0},
    ),
    ("Mild cardiomegaly without pulmonary edema.", {"Cardiomegaly": 1.0, "Edema": 0.0}),
    ("No change in the moderate right pleural effusion.", {"Pleural Effusion": 1.0}),
    ("Atelectasis or pneumonia.", {"Atelectasis": -1.0, "Pneumonia": -1.0}),
    ("Left lower lobe consolidation, likely pneumonia.", {"Consolidation": 1.0, "Pneumonia": -1.0}),
    ("No consolidation to suggest pneumonia.", {"Consolidation": 0.0, "Pneumonia": 0.0}),
    ("Bibasilar opacities likely reflect atelectasis.", {"Lung Opacity": 1.0, "Atelectasis": -1.0}),
    ("Pneumonia suspected.", {"Pneumonia": -1.0}),
    ("Nasogastric tube tip is not visualized.", {"Support Devices": 1.0}),
    ("Borderline heart size and a left chest wall pacemaker.", {"Cardiomegaly": -1.0, "Support Devices": 1.0}),
    # aggregation across sentences: positive > uncertain > negative
    ("Possible small effusion. Large right pleural effusion.", {"Pleural Effusion": 1.0}),
    ("No effusion. Possible effusion at the left base.", {"Pleural Effusion": -1.0}),
    (
        "No pneumothorax. Heart size is normal. A left pneumothorax is present.",
        {"Pneumothorax": 1.0, "Cardiomegaly": 0.0},
    ),
]


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0][:50] for c in CASES])
def test_sentence_labels(text, expected):
    record = label_report(text)
    got = {name: value for name, value in record.items() if value is not None and name != "No Finding"}
    assert got == expected


def test_record_has_all_classes_in_order():
    record = label_report("Mild cardiomegaly.")
    assert tuple(record) == CHEXPERT_CLASSES
    assert all(value in (1.0, 0.0, -1.0, None) for value in record.values())


@pytest.mark.parametrize(
    "text, no_finding",
    [
        ("Lungs are clear. Heart size is normal. No pleural effusion or pneumothorax.", 1.0),
        ("Right PICC line tip in the SVC. Lungs are clear.", 1.0),  # support devices do not count
        ("No acute cardiopulmonary process.", 1.0),
        ("", 1.0),  # nothing found (CheXpert convention)
        ("Possible pneumonia.", None),  # uncertain findings count
        ("Mild cardiomegaly. Lungs are clear.", None),
        ("Old healed rib fracture.", None),
    ],
)
def test_no_finding(text, no_finding):
    assert label_report(text)["No Finding"] == no_finding


def test_normal_chest_rules_out_the_default_findings():
    record = label_report("Normal chest x-XXXX.")  # IU de-identifies "ray"
    assert record["No Finding"] == 1.0
    assert all(record[name] == 0.0 for name in DEFAULT_CLASSES if name not in ("No Finding", "Support Devices"))
    assert record["Support Devices"] is None


def test_labeler_accepts_raw_mimic_report_and_ignores_placeholders():
    report = "FINAL REPORT\nINDICATION: ___ with fever\nFINDINGS: 1. ___ tube tip in the stomach.\n2. No effusion."
    record = label_report(select_sections(extract_sections(report)))
    assert record["Support Devices"] == 1.0 and record["Pleural Effusion"] == 0.0 and record["No Finding"] == 1.0


def test_report_labeler_class_and_mentions():
    labeler = ReportLabeler()
    texts = ["Mild cardiomegaly.", "No pneumothorax.", "Possible pneumonia."]
    assert labeler.label_many(texts) == [label_report(t) for t in texts]
    assert labeler(texts[0]) == label_report(texts[0])
    found = mentions("Mild cardiomegaly. No pneumothorax. Possible pneumonia.")
    assert [(m.observation, m.label, m.phrase, m.rule) for m in found] == [
        ("Cardiomegaly", 1.0, "cardiomegaly", "positive"),
        ("Pneumothorax", 0.0, "pneumothorax", "negated"),
        ("Pneumonia", -1.0, "pneumonia", "uncertain"),
    ]
    assert found[1].sentence == "no pneumothorax."


# ---------------------------------------------------------------------------------------------- IU X-ray agreement
@pytest.fixture(scope="module")
def iu_labelled():
    """(MeSH major terms, label record) for every IU report with FINDINGS/IMPRESSION, plus labelling CPU seconds."""
    if xrv_iu_reports_path() is None:
        pytest.skip("torchxrayvision's data/NLMCXR_reports.tgz (IU X-ray reports) is not installed")
    texts, meshes = [], []
    for report in iter_iu_reports_from_xrv():
        try:
            texts.append(select_sections(report))
        except DataError:
            continue
        meshes.append([term.split("/")[0] for term in report["mesh"]])
    start = time.process_time()  # CPU seconds: other processes sharing the machine do not count
    records = ReportLabeler().label_many(texts)
    return list(zip(meshes, records)), time.process_time() - start


def _rate(rows, condition):
    return sum(condition(record) for _, record in rows) / len(rows)


def test_iu_normal_reports_get_no_finding(iu_labelled):
    rows, _ = iu_labelled
    normal = [(m, r) for m, r in rows if m == ["normal"]]
    assert len(normal) > 1000
    assert _rate(normal, lambda r: r["No Finding"] == 1.0) >= 0.95  # measured 0.992
    for name in ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Consolidation", "Edema"):
        assert _rate(normal, lambda r: r[name] == 1.0) <= 0.01, name


@pytest.mark.parametrize(
    "mesh, name, min_positive, min_mentioned",
    [  # measured positive / positive-or-uncertain: 0.875 / 0.997, 0.907 / 0.988, 0.913 / 0.957
        ("Cardiomegaly", "Cardiomegaly", 0.80, 0.95),
        ("Pleural Effusion", "Pleural Effusion", 0.85, 0.95),
        ("Pneumothorax", "Pneumothorax", 0.80, 0.90),
    ],
)
def test_iu_mesh_findings_are_found(iu_labelled, mesh, name, min_positive, min_mentioned):
    rows, _ = iu_labelled
    with_term = [(m, r) for m, r in rows if mesh in m]
    assert len(with_term) >= 20
    assert _rate(with_term, lambda r: r[name] == 1.0) >= min_positive
    assert _rate(with_term, lambda r: r[name] in (1.0, -1.0)) >= min_mentioned


def test_iu_positive_labels_are_precise(iu_labelled):
    rows, _ = iu_labelled
    positive = [(m, r) for m, r in rows if r["Cardiomegaly"] == 1.0]
    assert len(positive) > 200
    agree = sum(("Cardiomegaly" in m or "Cardiac Shadow" in m) for m, _ in positive) / len(positive)
    assert agree >= 0.95  # measured 0.994


def test_iu_labelling_is_fast(iu_labelled):
    rows, seconds = iu_labelled
    assert len(rows) > 3500
    assert seconds < 10.0  # about 2-3 s on one shared core


# ---------------------------------------------------------------------------------------------- command line
def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_cli_jsonl(tmp_path):
    source = tmp_path / "reports.jsonl"
    lines = [
        {"id": "s1", "report": "FINDINGS: Mild cardiomegaly. No effusion.\nIMPRESSION: Possible pneumonia."},
        {"id": 2, "report": "Lungs are clear. Right PICC line tip in the SVC."},
    ]
    source.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    out = tmp_path / "out" / "labels.csv"
    result = _run("--input", str(source), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text().splitlines()[0] == ",".join(["id", *CHEXPERT_CLASSES])
    rows = _read_csv(out)
    assert [r["id"] for r in rows] == ["s1", "2"]
    assert rows[0]["Cardiomegaly"] == "1.0" and rows[0]["Pleural Effusion"] == "0.0"
    assert rows[0]["Pneumonia"] == "-1.0" and rows[0]["No Finding"] == "" and rows[0]["Fracture"] == ""
    assert rows[1]["Support Devices"] == "1.0" and rows[1]["No Finding"] == "1.0"
    assert json.loads(result.stdout)["labelled"] == 2

    # existing output is kept unless --overwrite
    result = _run("--input", str(source), "--output", str(out), "--sections", "impression")
    assert result.returncode != 0 and "output file exists" in result.stderr and "--overwrite" in result.stderr
    assert _read_csv(out)[0]["Cardiomegaly"] == "1.0"
    # the headerless second report has no IMPRESSION: an error naming file and line, or skipped and counted
    result = _run("--input", str(source), "--output", str(out), "--sections", "impression", "--overwrite")
    assert result.returncode != 0 and f"{source}:2: missing report section: IMPRESSION" in result.stderr
    result = _run("--input", str(source), "--output", str(out), "--sections", "impression", "--overwrite", "--skip_bad")
    assert result.returncode == 0, result.stderr
    rows = _read_csv(out)
    assert [r["id"] for r in rows] == ["s1"] and rows[0]["Cardiomegaly"] == "" and rows[0]["Pneumonia"] == "-1.0"
    assert json.loads(result.stdout)["skipped"] == 1


def test_cli_txt_folder_and_sections(tmp_path):
    folder = tmp_path / "files" / "p10" / "p10000032"
    folder.mkdir(parents=True)
    (folder / "s50414267.txt").write_text(
        "FINAL REPORT\nINDICATION: ___ with ? pneumonia\nFINDINGS: No pneumothorax.\nIMPRESSION: Normal chest.\n"
    )
    (folder / "s53189527.txt").write_text("FINAL REPORT\nFINDINGS: Small left pleural effusion.\n")
    out = tmp_path / "labels.csv"
    assert _run("--input", str(tmp_path / "files"), "--output", str(out)).returncode == 0
    rows = {r["id"]: r for r in _read_csv(out)}
    assert set(rows) == {"s50414267", "s53189527"}
    assert rows["s50414267"]["Pneumonia"] == "" and rows["s50414267"]["No Finding"] == "1.0"
    assert rows["s53189527"]["Pleural Effusion"] == "1.0"
    # "all" labels INDICATION too: "? pneumonia" is uncertain
    assert (
        _run("--input", str(tmp_path / "files"), "--output", str(out), "--sections", "all", "--overwrite").returncode
        == 0
    )
    assert {r["id"]: r for r in _read_csv(out)}["s50414267"]["Pneumonia"] == "-1.0"


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": "a", "report": "No effusion."}\n{"id": "b", "report": \n', "reports.jsonl:2: bad JSONL line"),
        ('{"id": "a", "text": "No effusion."}\n', 'reports.jsonl:1: missing "report" key'),
        ('["a", "No effusion."]\n', "reports.jsonl:1: bad JSONL line"),
        ('{"id": "a", "report": "No effusion."}\n{"id": "a", "report": "Edema."}\n', "duplicate report id 'a'"),
    ],
)
def test_cli_bad_jsonl(tmp_path, content, message):
    source = tmp_path / "reports.jsonl"
    source.write_text(content, encoding="utf-8")
    out = tmp_path / "labels.csv"
    result = _run("--input", str(source), "--output", str(out))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_cli_missing_input(tmp_path):
    result = _run("--input", str(tmp_path / "absent.jsonl"), "--output", str(tmp_path / "labels.csv"))
    assert result.returncode == 2 and "absent.jsonl: missing input" in result.stderr


def test_cli_help_and_unknown_flags_run_nothing(tmp_path):
    out = tmp_path / "labels.csv"
    result = _run("--help")
    assert result.returncode == 0 and "--sections" in result.stdout and "--skip_bad" in result.stdout
    result = _run("--input", str(tmp_path), "--output", str(out), "--section", "impression")
    assert result.returncode == 2 and "--section" in result.stderr and not out.exists()


def test_label_report_files_returns_the_summary(tmp_path):
    from bundle.data.label_csv import label_report_files

    source = tmp_path / "reports.jsonl"
    source.write_text(json.dumps({"id": "a", "report": "IMPRESSION: Small left pleural effusion."}) + "\n")
    summary = label_report_files(str(source), str(tmp_path / "labels.csv"), sections="impression")
    assert summary["labelled"] == 1 and summary["sections"] == ["impression"]
    assert summary["positive"] == {"Pleural Effusion": 1}
    with pytest.raises(DataError, match="--sections"):
        label_report_files(str(source), str(tmp_path / "other.csv"), sections=" , ", overwrite=True)
