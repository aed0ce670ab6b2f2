"""Report metrics (pycocoevalcap), clinical efficacy and the ``evaluate.py reports`` command.

METEOR's Java process takes seconds to start, so every test shares the one scorer process of
:mod:`bundle.evaluation.text_metrics` and the expensive metric calls run once per module (fixtures).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from bundle.data.embedded import complete_spec, compose_report, spec_labels
from bundle.data.errors import DataError
from bundle.data.labels import DEFAULT_CLASSES, to_multi_hot
from bundle.evaluation import text_metrics
from bundle.evaluation.clinical import clinical_efficacy, label_f1, label_reports, verbatim_copy_rate
from bundle.evaluation.text_metrics import (
    METRIC_KEYS,
    match_ids,
    read_reports_jsonl,
    report_metrics,
    simple_tokenize,
)


needs_java = pytest.mark.skipif(not text_metrics.java_available(), reason="Java is not installed")

REFERENCES = {
    "s1": "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "s2": "Moderate cardiomegaly. Small left pleural effusion. No pneumothorax.",
    "s3": "Large right pneumothorax. The heart size is normal.",
    "s4": "Right lower lobe consolidation, concerning for pneumonia. No pleural effusion.",
    "s5": "Mild pulmonary edema. Stable moderate cardiomegaly.",
    "s6": "Right internal jugular central venous catheter terminates in the SVC. No acute cardiopulmonary process.",
}
# each hypothesis changes one word of its reference (s5 also its findings)
NEAR = {
    "s1": "The heart size is normal. The lungs are clear. No pleural effusion or consolidation.",
    "s2": "Mild cardiomegaly. Small left pleural effusion. No pneumothorax.",
    "s3": "Small right pneumothorax. The heart size is normal.",
    "s4": "Left lower lobe consolidation, concerning for pneumonia. No pleural effusion.",
    "s5": "Mild pulmonary edema. Stable moderate atelectasis.",
    "s6": "Left internal jugular central venous catheter terminates in the SVC. No acute cardiopulmonary process.",
}
# each hypothesis is another study's report
ids = list(REFERENCES)
DIFFERENT = {i: REFERENCES[ids[(k + 3) % len(ids)]] for k, i in enumerate(ids)}


@pytest.fixture(scope="module")
def near_metrics() -> dict[str, float]:
    return report_metrics(REFERENCES, NEAR)


@pytest.fixture(scope="module")
def direct_metrics() -> dict[str, float]:
    """The same scores from pycocoevalcap's scorers called directly, as its COCOEvalCap does."""
    if not text_metrics.java_available():
        pytest.skip("Java is not installed")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": t}] for i, t in REFERENCES.items()})
    res = tokenizer.tokenize({i: [{"caption": NEAR[i]}] for i in REFERENCES})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"BLEU-{n}": b for n, b in enumerate(bleu, start=1)}
    out["CIDEr"] = Cider().compute_score(gts, res)[0]
    out["ROUGE-L"] = Rouge().compute_score(gts, res)[0]
    # pycocoevalcap's own Meteor class; the shared instance saves a second start of its Java process
    out["METEOR"] = text_metrics.meteor_scorer().compute_score(gts, res)[0]
    return out


# ------------------------------------------------------------------------------------------ report_metrics
@needs_java
def test_matches_pycocoevalcap_called_directly(near_metrics, direct_metrics):
    assert list(near_metrics) == list(METRIC_KEYS)
    for key in METRIC_KEYS:
        assert near_metrics[key] == pytest.approx(direct_metrics[key], rel=1e-9, abs=1e-12), key


def test_identical_texts_score_bleu4_one():
    metrics = report_metrics(REFERENCES, dict(REFERENCES), meteor=False)
    assert metrics["BLEU-4"] == pytest.approx(1.0)
    assert metrics["BLEU-1"] == pytest.approx(1.0)
    assert metrics["ROUGE-L"] == pytest.approx(1.0)
    assert "METEOR" not in metrics


def test_near_identical_beats_different(near_metrics):
    different = report_metrics(REFERENCES, DIFFERENT)
    for key in near_metrics:
        assert near_metrics[key] > different[key], key
    assert near_metrics["BLEU-4"] < 1.0


@needs_java
def test_meteor_present_with_java(near_metrics):
    assert 0.0 < near_metrics["METEOR"] < 1.0


def test_lists_score_like_dicts(near_metrics):
    as_lists = report_metrics(list(REFERENCES.values()), [NEAR[i] for i in REFERENCES], meteor=False)
    for key in as_lists:
        assert as_lists[key] == pytest.approx(near_metrics[key])


def test_without_java_falls_back_and_leaves_meteor_out(monkeypatch, caplog):
    monkeypatch.setattr(text_metrics, "java_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger=text_metrics.__name__):
        metrics = report_metrics(REFERENCES, dict(REFERENCES))
    assert "METEOR" not in metrics
    assert metrics["BLEU-4"] == pytest.approx(1.0)
    assert any("METEOR is left out" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError, match="METEOR needs Java"):
        report_metrics(REFERENCES, NEAR, meteor=True)


def test_simple_tokenizer_follows_ptb_on_report_text():
    text = "The heart is normal. No effusion, 2.5 cm X-ray; stable?"
    assert simple_tokenize(text) == "the heart is normal no effusion 2.5 cm x-ray stable"
    if text_metrics.java_available():
        assert text_metrics.ptb_tokenize({"a": [text]})["a"][0] == simple_tokenize(text)


def test_mismatched_ids_are_listed():
    with pytest.raises(DataError, match=r"1 reference id\(s\) have no hypothesis \('s6'\)"):
        match_ids(REFERENCES, {i: NEAR[i] for i in ids[:-1]})
    with pytest.raises(DataError, match=r"hypothesis id\(s\) have no reference \('extra'\)"):
        report_metrics(REFERENCES, {**NEAR, "extra": "text"}, meteor=False)


# ------------------------------------------------------------------------------------------ JSONL reading
def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_read_reports_jsonl(tmp_path):
    path = _write_jsonl(tmp_path / "r.jsonl", [{"id": 7, "report": "No effusion."}, "", {"id": "b", "report": "x"}])
    assert read_reports_jsonl(path) == {"7": "No effusion.", "b": "x"}


@pytest.mark.parametrize(
    "rows, problem",
    [
        ([{"id": "a", "report": "x"}, "{not json"], r"r\.jsonl:2: bad JSONL line"),
        ([{"id": "a", "report": "x"}, {"report": "y"}], r'r\.jsonl:2: missing "id" key'),
        ([{"id": "a", "report": ["x"]}], r'r\.jsonl:1: "report" is list'),
        (
            [{"id": "a", "report": "x"}, {"id": "b", "report": "y"}, {"id": "a", "report": "z"}],
            r"r\.jsonl:3: duplicate id 'a' \(first on line 1\)",
        ),
        ([""], r"r\.jsonl: no reports"),
    ],
)
def test_read_reports_jsonl_names_file_and_line(tmp_path, rows, problem):
    with pytest.raises(DataError, match=problem):
        read_reports_jsonl(_write_jsonl(tmp_path / "r.jsonl", rows))


# ------------------------------------------------------------------------------------------ the CLI
def _evaluate_reports(args: list[str]) -> int:
    """``scripts/evaluate.py reports ...`` in process: the same command table entry and user errors."""
    from bundle.cli import run_fire_commands
    from bundle.evaluation.console import score_reports

    errors = (DataError, FileNotFoundError, RuntimeError)
    return run_fire_commands({"reports": score_reports}, args, name="evaluate", user_errors=errors)


def test_evaluate_reports_command(tmp_path, capsys, near_metrics):
    refs = _write_jsonl(tmp_path / "refs.jsonl", [{"id": i, "report": t} for i, t in REFERENCES.items()])
    hyps = _write_jsonl(tmp_path / "hyps.jsonl", [{"id": i, "report": NEAR[i]} for i in reversed(ids)])
    out = tmp_path / "eval"
    args = ["reports", "--references", str(refs), "--hypotheses", str(hyps), "--out", str(out), "--clinical", "True"]
    assert _evaluate_reports(args) == 0
    written = json.loads((out / "metrics.json").read_text())
    assert set(written) == set(near_metrics)
    for key, value in near_metrics.items():
        assert written[key] == pytest.approx(value)
    printed = capsys.readouterr().out
    assert "BLEU-4" in printed and f"{near_metrics['CIDEr']:.4f}" in printed
    ce = json.loads((out / "clinical_efficacy.json").read_text())
    assert 0.0 < ce["f1_micro"] < 1.0  # NEAR changes findings in some reports


def test_evaluate_reports_command_reports_bad_input(tmp_path, capsys):
    refs = _write_jsonl(tmp_path / "refs.jsonl", [{"id": "a", "report": "x"}])
    hyps = _write_jsonl(tmp_path / "hyps.jsonl", ["{broken"])
    args = ["reports", "--references", str(refs), "--hypotheses", str(hyps), "--out", str(tmp_path / "o")]
    assert _evaluate_reports(args) == 2
    assert "hyps.jsonl:1: bad JSONL line" in capsys.readouterr().err
    assert not (tmp_path / "o" / "metrics.json").exists()


# ------------------------------------------------------------------------------------------ clinical efficacy
CLASSES = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax")
CE_REFS = [
    "Moderate cardiomegaly. Small left pleural effusion.",  # cardiomegaly, effusion
    "No pneumothorax. The heart size is normal.",  # nothing
    "Large right pneumothorax.",  # pneumothorax
    "Moderate cardiomegaly.",  # cardiomegaly
]
CE_HYPS = [
    "Moderate cardiomegaly.",  # misses the effusion
    "Small right pleural effusion.",  # a false effusion
    "Large right pneumothorax.",
    "Moderate cardiomegaly.",
]


def test_label_reports_reads_known_findings():
    expected = [[1, 1, 0], [0, 0, 0], [0, 0, 1], [1, 0, 0]]
    np.testing.assert_array_equal(label_reports(CE_REFS, CLASSES), expected)


def test_clinical_efficacy_micro_and_macro():
    ce = clinical_efficacy(CE_REFS, CE_HYPS, CLASSES)
    # TP = 3 (two cardiomegaly, one pneumothorax), FP = 1 and FN = 1 (effusion)
    assert ce["precision_micro"] == pytest.approx(0.75)
    assert ce["recall_micro"] == pytest.approx(0.75)
    assert ce["f1_micro"] == pytest.approx(0.75)
    # per class F1: cardiomegaly 1, effusion 0, pneumothorax 1
    assert ce["f1_macro"] == pytest.approx(2 / 3)
    assert ce["per_class"]["Pleural Effusion"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    perfect = clinical_efficacy(CE_REFS, CE_REFS, CLASSES)
    assert perfect["f1_micro"] == perfect["f1_macro"] == pytest.approx(1.0)


def _grammar_reports(seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Reports written by the report grammar for single findings, and the labels they were written for."""
    rng = np.random.default_rng(seed)
    names = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Consolidation", "Edema", "Support Devices")
    specs = [{}] + [{n: {"uncertain": False}} for n in names] + [{"Cardiomegaly": {}, "Edema": {"uncertain": False}}]
    reports, labels = [], []
    for spec in specs * 2:
        full = complete_spec(spec, rng)
        full = {k: {**v, "uncertain": False} for k, v in full.items()}
        text = compose_report(full, rng)
        reports.append(f"{text['findings']} {text['impression']}")
        labels.append(to_multi_hot(spec_labels(full), DEFAULT_CLASSES))
    return reports, np.asarray(labels)


def test_label_f1_against_conditioning_labels():
    reports, conditioning = _grammar_reports()
    agreeing = label_f1(reports, conditioning, DEFAULT_CLASSES)
    assert agreeing["mean_f1"] == pytest.approx(1.0)
    assert agreeing["num_reports"] == len(reports)
    assert set(agreeing["per_class"]) == set(DEFAULT_CLASSES)
    shuffled = label_f1(reports, np.roll(conditioning, 1, axis=0), DEFAULT_CLASSES)
    assert shuffled["mean_f1"] < 0.5
    assert shuffled["micro_f1"] < agreeing["micro_f1"]


def test_label_f1_masks_unknown_labels_and_undefined_classes():
    predicted = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0]])
    conditioning = np.array([[1, 0, 0], [-1, 0, 0], [-1, 0, 0]])  # two unknown cardiomegaly labels
    scores = label_f1(predicted, conditioning, CLASSES)
    assert scores["per_class"]["Cardiomegaly"] == pytest.approx(1.0)  # the false positive was unknown
    assert scores["per_class"]["Pleural Effusion"] is None  # no positives on either side: undefined
    assert scores["mean_f1"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        label_f1(predicted[:, :2], conditioning, CLASSES)


def test_verbatim_copy_rate_normalises_case_and_whitespace():
    training = ["No acute cardiopulmonary process.", "Moderate cardiomegaly."]
    generated = ["no acute  cardiopulmonary\nprocess.", "NO ACUTE CARDIOPULMONARY PROCESS.", "Mild cardiomegaly."]
    assert verbatim_copy_rate(generated, training) == pytest.approx(2 / 3)
    assert verbatim_copy_rate(["Mild cardiomegaly"], training) == 0.0
