"""The evaluation run's flat summary and report baselines (bundle.evaluation.summary): hand-made readings and reports
whose answers are known, and one run with a report decoder checkpoint (F's reports on the real test images, and the
``decoder_alone`` baseline on the generated images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle.data.errors import DataError
from bundle.data.labels import DEFAULT_CLASSES
from bundle.evaluation.clinical import label_reports
from bundle.evaluation.summary import (
    BASELINE_KEYS,
    BASELINES,
    ReportTexts,
    baseline_measures,
    check_class_count,
    image_readings,
    independent_label_agreement,
    label_agreement,
    read_report_source,
    report_measures,
    summary_measures,
)
from bundle.evaluation.text_diversity import distinct_n
from tests.tiny import check_summary, grammar_reports

CLASSES = list(DEFAULT_CLASSES)
#: The run's figures :func:`summary_measures` reads (as ``evaluate`` has them before the summary).
METRICS = {
    "reports": {"label_f1": {"mean_f1": 0.75}},
    "label_agreement": {"ratio": 0.8},
    "label_agreement_independent": {"skipped": "turned off (independent_classifier=False)"},
    "fid": {"classifier": {"ratio": None, "note": "the real validation split has fewer than 2 images"}},
    "memorisation": {"flag": np.bool_(False)},
}


@pytest.fixture(scope="module")
def grammar() -> dict:
    """Grammar reports with the labeler's reading as their labels (how the dataset's labels are made)."""
    reports = grammar_reports(300)
    labels = label_reports(reports, CLASSES)
    return {
        "reports": reports,
        "labels": labels,
        "train": slice(0, 200),
        "val": slice(200, 250),
        "test": slice(250, 300),
    }


def perfect_probs(labels: np.ndarray) -> np.ndarray:
    """Probabilities that read ``labels`` perfectly (0.9 for a positive, 0.1 for a negative)."""
    return 0.1 + 0.8 * labels


def texts_for(grammar: dict, generated: slice | np.ndarray, reports: list[str] | None = None) -> ReportTexts:
    """Report texts: training 0-200, real test 250-300, generated = the given rows (reports and conditioning labels)."""
    all_reports, labels = grammar["reports"], grammar["labels"]
    rows = np.arange(len(all_reports))[generated]
    return ReportTexts(
        classes=CLASSES,
        generated_reports=reports if reports is not None else [all_reports[i] for i in rows],
        generated_labels=labels[rows],
        test_reports=all_reports[grammar["test"]],
        test_labels=labels[grammar["test"]],
        train_reports=all_reports[grammar["train"]],
        train_labels=labels[grammar["train"]],
    )


def readings_for(grammar: dict, generated_probs: np.ndarray):
    labels = grammar["labels"]
    val, test = labels[grammar["val"]], labels[grammar["test"]]
    return image_readings(perfect_probs(val), val, perfect_probs(test), generated_probs)


# ------------------------------------------------------------------------------------------------ summary
def test_a_copy_of_the_real_test_pairs_is_as_consistent_as_real_pairs(grammar: dict) -> None:
    test = grammar["labels"][grammar["test"]]
    texts = texts_for(grammar, grammar["test"])
    readings = readings_for(grammar, perfect_probs(test))
    assert np.array_equal(readings.test, test) and np.array_equal(readings.generated, test)
    summary, skipped, pair = summary_measures(METRICS, "image", texts, readings, seed=0)
    check_summary(summary, skipped)

    assert summary["classifier_label_f1_real"] == 1.0  # probabilities that read the test labels perfectly
    assert summary["pair_consistency_ratio"] == 1.0
    assert summary["pair_agreement_generated"] == summary["pair_agreement_real"] == 1.0
    assert pair["ratio"] == 1.0 and set(pair["thresholds"]) == set(CLASSES)
    assert pair["generated_chance"] < 0.6  # agreement 1 is far above chance
    # The same reports and label sets: every generated report measure equals its real counterpart.
    for key in ("distinct_2", "self_bleu_4", "max_bleu_to_train_mean", "verbatim_rate"):
        assert summary[key] == pytest.approx(summary[f"{key}_real"], abs=1e-12), key
    assert summary["verbatim_rate"] == 0.0 and 0 < summary["max_bleu_to_train_mean"] < 1
    assert 0 < summary["distinct_2"] < 1 and summary["distinct_1"] < summary["distinct_2"]

    # Figures of the run pass through; what is missing is None with its reason.
    assert summary["report_source"] == "image" and summary["report_label_f1"] == 0.75
    assert summary["label_agreement_ratio"] == 0.8 and summary["memorisation_flag"] is False
    assert summary["label_agreement_ratio_independent"] is None
    assert skipped["label_agreement_ratio_independent"] == "turned off (independent_classifier=False)"
    assert summary["fid_ratio"] is None and "fewer than 2 images" in skipped["fid_ratio"]
    assert summary["report_label_f1_real"] is None and "decoder_checkpoint" in skipped["report_label_f1_real"]


def test_reports_shuffled_away_from_their_images_lose_pair_consistency(grammar: dict) -> None:
    """Pair consistency reads no conditioning label: the same reports and images, paired at random, agree about as
    often as chance, while report label F1 against the (unchanged) conditioning labels would not notice."""
    test = grammar["labels"][grammar["test"]]
    order = np.random.default_rng(1).permutation(len(test))
    shuffled = [grammar["reports"][grammar["test"]][i] for i in order]
    texts = texts_for(grammar, grammar["test"], reports=shuffled)
    summary, skipped, pair = summary_measures(METRICS, None, texts, readings_for(grammar, perfect_probs(test)))
    check_summary(summary, skipped)
    assert summary["pair_agreement_real"] == 1.0
    assert summary["pair_consistency_ratio"] < 0.7
    assert abs(pair["generated"] - pair["generated_chance"]) < 0.2
    assert summary["report_source"] is None and "report_source" in skipped["report_source"]


def test_missing_inputs_give_none_with_the_reason(grammar: dict) -> None:
    test = grammar["labels"][grammar["test"]]
    texts = texts_for(grammar, grammar["test"])
    no_validation = image_readings(np.zeros((0, len(CLASSES))), np.zeros((0, len(CLASSES))), test, test)
    metrics = {
        **METRICS,
        "reports": {"label_f1": {"mean_f1": float("nan")}, "decoder": {"label_f1": {"mean_f1": 0.5}}},
        "label_agreement": {"ratio": None},
        "memorisation": {"flag": True},
    }
    summary, skipped, pair = summary_measures(metrics, "labels", texts, no_validation)
    check_summary(summary, skipped)
    for key in ("classifier_label_f1_real", "pair_consistency_ratio", "pair_agreement_generated"):
        assert summary[key] is None and "validation split is empty" in skipped[key], key
    assert "validation split is empty" in pair["skipped"]
    assert summary["report_label_f1"] is None and skipped["report_label_f1"]  # NaN never reaches the summary
    assert summary["report_label_f1_real"] == 0.5 and summary["memorisation_flag"] is True
    assert summary["label_agreement_ratio"] is None and "no ratio" in skipped["label_agreement_ratio"]
    assert summary["distinct_2"] is not None  # the text measures need no classifier

    no_text = texts_for(grammar, grammar["test"])
    no_text.generated_reports, no_text.test_reports = None, None
    summary, skipped, _ = summary_measures({"reports": {"skipped": "no report text"}}, None, no_text, no_validation)
    check_summary(summary, skipped)
    assert skipped["report_label_f1"] == "no report text"
    assert "generated items carry no report text" in skipped["distinct_1"]
    assert "real test items carry no report text" in skipped["distinct_2_real"]
    assert skipped["memorisation_flag"] and skipped["fid_ratio"]


# ------------------------------------------------------------------------------------------------ baselines
def test_retrieval_copies_training_reports_and_meets_label_f1(grammar: dict) -> None:
    """Requests for label sets that training reports carry: both baselines score label F1 1 by copying, which the
    novelty measures expose (verbatim rate 1, BLEU-4 to training 1)."""
    texts = texts_for(grammar, np.arange(100, 150))  # conditioning labels of training rows: no fallback needed
    generated = grammar["labels"][100:150]
    blocks = baseline_measures(texts, readings_for(grammar, perfect_probs(generated)), seed=0)
    assert list(blocks) == list(BASELINES)
    for name, block in blocks.items():
        assert set(BASELINE_KEYS) <= set(block) and block["skipped_keys"] == {}, name
        assert block["fallbacks"]["num_fallbacks"] == 0
        assert block["report_label_f1"] == 1.0 and block["verbatim_rate"] == 1.0
        assert block["max_bleu_to_train_mean"] == pytest.approx(1.0, abs=1e-6)
        # Reports read exactly as their images: the classifier reads the conditioning labels perfectly here.
        assert block["pair_consistency_ratio"] == pytest.approx(1.0)
    assert blocks["most_common_per_label_set"]["self_bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert blocks["retrieval_by_labels"]["self_bleu_4"] < 1.0
    assert blocks["most_common_per_label_set"]["distinct_2"] < blocks["retrieval_by_labels"]["distinct_2"]

    again = baseline_measures(texts, readings_for(grammar, perfect_probs(generated)), seed=0)
    other = baseline_measures(texts, readings_for(grammar, perfect_probs(generated)), seed=1)
    assert again == blocks
    assert other["retrieval_by_labels"]["distinct_2"] != blocks["retrieval_by_labels"]["distinct_2"]


def test_baselines_for_unseen_label_sets_count_fallbacks(grammar: dict) -> None:
    test = grammar["labels"][grammar["test"]]
    texts = texts_for(grammar, grammar["test"])
    texts.generated_labels = np.ones_like(test)  # every finding at once: no training report carries that set
    blocks = baseline_measures(texts, readings_for(grammar, perfect_probs(test)))
    for block in blocks.values():
        assert block["fallbacks"]["num_fallbacks"] == len(test) and block["fallbacks"]["fallback_rate"] == 1.0
        assert block["report_label_f1"] < 1.0 and block["verbatim_rate"] == 1.0


def test_decoder_alone_block_scores_its_reports_like_the_model(grammar: dict) -> None:
    test = grammar["labels"][grammar["test"]]
    texts = texts_for(grammar, grammar["test"])
    readings = readings_for(grammar, perfect_probs(test))
    reports = texts.generated_reports
    blocks = baseline_measures(texts, readings, decoder_alone=reports, decoder_info={"checkpoint": "f.pt"})
    own = report_measures(reports, texts, readings)
    assert blocks["decoder_alone"]["checkpoint"] == "f.pt"
    assert {key: blocks["decoder_alone"][key] for key in BASELINE_KEYS} == own.values
    assert own.values["distinct_1"] == distinct_n(reports, 1)
    with pytest.raises(ValueError, match="3 reports for 50 generated items"):
        report_measures(reports[:3], texts, readings)


def test_baselines_without_training_reports_are_none_with_the_reason(grammar: dict) -> None:
    texts = texts_for(grammar, grammar["test"])
    texts.train_reports, texts.train_labels = [], np.zeros((0, len(CLASSES)))
    test = grammar["labels"][grammar["test"]]
    blocks = baseline_measures(texts, readings_for(grammar, perfect_probs(test)))
    for block in blocks.values():
        assert all(block[key] is None for key in BASELINE_KEYS)
        assert set(block["skipped_keys"]) == set(BASELINE_KEYS)


# ------------------------------------------------------------------------------------------------ pieces
def test_label_agreement_ratio_and_flipped_labels(grammar: dict) -> None:
    test = grammar["labels"][grammar["test"]]
    probs = np.clip(perfect_probs(test) + np.random.default_rng(0).normal(0, 0.3, test.shape), 0, 1)
    same = label_agreement(probs, test, probs, test, CLASSES)
    assert same["ratio"] == 1.0 and same["classes"] == CLASSES
    flipped = label_agreement(probs, 1 - test, probs, test, CLASSES)
    for name, value in same["real_test"]["auroc"].items():
        if value is not None:
            assert flipped["generated"]["auroc"][name] == pytest.approx(1 - value)
    assert flipped["ratio"] < 0.6 < same["ratio"]


def test_class_count_check_reads_densenets_and_resnets() -> None:
    from monai.networks.nets import DenseNet, resnet18

    resnet = resnet18(spatial_dims=2, n_input_channels=1, num_classes=3)
    densenet = DenseNet(
        spatial_dims=2, in_channels=1, out_channels=5, init_features=4, growth_rate=4, block_config=(1,)
    )
    check_class_count(resnet, "resnet.pt", 3)
    check_class_count(densenet, "densenet.pt", 5)
    with pytest.raises(DataError, match=r"resnet\.pt: the classifier predicts 3 classes but the real datalist has 7"):
        check_class_count(resnet, "resnet.pt", 7)
    with pytest.raises(DataError, match="predicts 5 classes"):
        check_class_count(densenet, "densenet.pt", 7)


def test_independent_classifier_is_skipped_with_the_reason_when_it_cannot_be_had(tmp_path: Path) -> None:
    """Turned off, or no checkpoint and a validation split where no class has both label values (training could
    keep no model): ``{"skipped": reason}``, before any training."""
    from bundle.data.datalist import Datalist

    constant = [{"image": "a.png", "labels": [1.0] + [0.0] * (len(CLASSES) - 1)}] * 2
    real = Datalist(tmp_path / "datalist.json", tmp_path, CLASSES, {"training": [], "validation": constant, "test": []})
    common = {"real": real, "sets": {}, "classes": CLASSES, "real_columns": range(len(CLASSES))}
    common.update(device=torch.device("cpu"), batch_size=2)
    block, settings = independent_label_agreement(None, True, **common)
    assert block == settings == {"skipped": "turned off (independent_classifier=False)"}

    def load() -> None:
        raise AssertionError("no classifier is loaded or trained when it cannot keep a model")

    block, settings = independent_label_agreement(load, True, **common)
    assert block == settings and "needs a class with both label values" in block["skipped"]


def test_report_source_is_read_from_the_generated_datalist(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"class_names": CLASSES, "report_source": "labels"}))
    (tmp_path / "b.json").write_text(json.dumps({"class_names": CLASSES}))
    assert read_report_source(tmp_path / "a.json") == "labels"
    assert read_report_source(tmp_path / "b.json") is None


# ------------------------------------------------------------------------------------------------ with a decoder
def test_run_with_a_decoder_scores_real_test_reports_and_the_decoder_alone_baseline(
    trained: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    """``evaluate(decoder_checkpoint=..., baseline_decoder_checkpoint=...)`` on the session's tiny training run: the
    summary's ``report_label_f1_real`` is F's label F1 on the real test images, and ``decoder_alone`` holds the
    reports that checkpoint's F writes for the generated images (here the same checkpoint: the wiring is tested)."""

    from bundle.evaluation.text_metrics import read_reports_jsonl
    from bundle.workflows import CLASSIFIER_CONFIGS, decode_images, evaluate
    from tests.tiny import TINY, TRAIN_CONFIGS, write_test_split_as_generated

    checkpoint = trained / "models" / "checkpoint_final.pt"
    made = write_test_split_as_generated(dataset_dir, tmp_path, report_source="labels")
    classifier, override = made["classifier"], made["override"]

    out = tmp_path / "evaluation"
    metrics = evaluate(
        dataset_dir,
        tmp_path / "generated",
        out,
        classifier,
        classifier_config=[*CLASSIFIER_CONFIGS, str(override)],
        image_size=32,
        xrv=False,
        figures=False,
        decoder_checkpoint=checkpoint,
        decoder_config=TRAIN_CONFIGS,
        decoder_overrides=TINY,
        independent_classifier=False,
        baseline_decoder_checkpoint=checkpoint,
    )
    summary, skipped = metrics["summary"], metrics["summary_skipped"]
    check_summary(summary, skipped)
    assert summary["report_source"] == "labels"
    assert summary["report_label_f1_real"] == metrics["reports"]["decoder"]["label_f1"]["mean_f1"]
    assert isinstance(summary["report_label_f1_real"], float)
    assert metrics["label_agreement_independent"] == {"skipped": "turned off (independent_classifier=False)"}
    assert metrics["settings"]["independent_classifier"] == {"skipped": "turned off (independent_classifier=False)"}

    alone = metrics["baselines"]["decoder_alone"]
    assert set(BASELINE_KEYS) <= set(alone) and alone["checkpoint"] == str(checkpoint)
    written = list(read_reports_jsonl(out / "decoder_alone" / "hypotheses.jsonl").values())
    real = {"dataset_dir": str(dataset_dir)}  # F's tokenizer: the real dataset's
    by_hand = decode_images(tmp_path / "generated" / "datalist.json", checkpoint, TRAIN_CONFIGS, **real, **TINY)
    assert written == list(by_hand.hypotheses.values())
    assert alone["distinct_1"] == pytest.approx(distinct_n(list(by_hand.hypotheses.values()), 1))
    # The generated set is the real test split and the baseline F is F itself: the same reports, the same label F1.
    assert alone["report_label_f1"] == pytest.approx(summary["report_label_f1_real"])
    report = (out / "report.md").read_text()
    assert "written from the conditioning labels (label-conditioned)" in report
    assert "| baseline: decoder_alone |" in report
