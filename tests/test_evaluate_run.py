"""The full evaluation run (bundle.workflows.evaluate, scripts/evaluate.py run, configs/evaluate.json) on
tiny data: 120 embedded studies, evaluated at 32 px with a tiny DenseNet classifier trained by the run itself
(one torch thread: on a shared 2-core machine more threads only contend).

The "generated" sets are real images written through the paired writer, so the right answers are known: a copy of
the real test split is as close to it as data gets (FID ~ 0, the real test AUROC, no memorisation, its pairs as
consistent as real ones), noise images are far, inverted conditioning labels disagree with the images (but leave
image-report pair consistency alone), and copies of training images are memorised. The copy run also trains the
independent ResNet-18 classifier; the other runs reuse both checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bundle.classifier import xrv_available
from bundle.data.datalist import read_datalist
from bundle.data.errors import DataError, SkipCounter
from bundle.data.images import read_cxr
from bundle.evaluation.classify import load_image_set
from bundle.evaluation.report import write_report
from bundle.evaluation.summary import BASELINE_KEYS, BASELINES
from bundle.inference.writer import PairedDatasetWriter
from bundle.workflows import CLASSIFIER_CONFIGS, evaluate
from tests.tiny import TINY_CLASSIFIER_DEF, make_tiny_dataset
from tests.tiny import check_summary as check_summary_values

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CLASSIFIER = {
    "classifier_def": TINY_CLASSIFIER_DEF,
    "batch_size": 16,
    "num_workers": 0,
    "learning_rate": 0.003,
    "max_epochs": 6,
    "log_interval": 1000,
    "num_threads": 1,
}
SIZE = 32
METRIC_KEYS = {"settings", "fid", "diversity", "label_agreement", "reports", "memorisation", "figures", "verdict"}
METRIC_KEYS |= {"label_agreement_independent", "summary", "summary_skipped", "pair_consistency", "baselines"}


def check_summary(metrics: dict) -> None:
    """Every summary key, each a finite number, a bool or a str, or None with its reason; both baselines with every
    report key (a value or None with its reason) and their fallback counts."""
    summary = metrics["summary"]
    check_summary_values(summary, metrics["summary_skipped"])
    assert isinstance(summary["memorisation_flag"], bool)
    assert set(BASELINES) <= set(metrics["baselines"])
    for name in BASELINES:
        block = metrics["baselines"][name]
        assert set(BASELINE_KEYS) <= set(block), name
        assert all(block[key] is not None or block["skipped_keys"].get(key) for key in BASELINE_KEYS), name
        assert block["fallbacks"]["num_requests"] == metrics["settings"]["counts"]["generated"]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real dataset (about 71 / 16 / 33 by patient), a tiny-classifier override config, and four generated
    sets written by the paired writer: test copy, noise, test with inverted labels, training copy."""
    root = tmp_path_factory.mktemp("evaluate_run")
    real = root / "real"
    make_tiny_dataset(real, 120, split="random", val_fraction=0.15, test_fraction=0.25, quiet=True)
    tiny = root / "tiny_classifier.json"
    tiny.write_text(json.dumps(TINY_CLASSIFIER))
    data = json.loads((real / "datalist.json").read_text())
    names = data["class_names"]

    def write(name: str, items: list[dict], images: np.ndarray, labels: np.ndarray, source: str | None = None) -> Path:
        writer = PairedDatasetWriter(root / name, names, report_source=source)
        index = list(range(len(items)))
        writer.write_batch(images[:, None], [i["report"] for i in items], labels, index, index)
        writer.finalize()
        return root / name

    test, train = data["test"], data["training"]
    test_images = np.stack([read_cxr(real / i["image"])[0] for i in test])
    test_labels = np.asarray([i["labels"] for i in test])
    noise = np.random.default_rng(0).uniform(0, 1, size=test_images.shape)
    train_images = np.stack([read_cxr(real / i["image"])[0] for i in train])
    return {
        "root": root,
        "real": real,
        "configs": [*CLASSIFIER_CONFIGS, str(tiny)],
        "copy": write("test_copy", test, test_images, test_labels),
        "noise": write("noise", test, noise, test_labels, source="image"),
        "inverted": write("inverted", test, test_images, 1 - test_labels),
        "train_copy": write("train_copy", train, train_images, np.asarray([i["labels"] for i in train])),
    }


@pytest.fixture(scope="module")
def copy_run(work: dict[str, Path]) -> dict:
    """The real-vs-real run; no checkpoint given, so it trains the classifier first."""
    return evaluate(
        work["real"],
        work["copy"],
        work["root"] / "eval_copy",
        classifier_config=work["configs"],
        image_size=SIZE,
        xrv="auto",
    )


def checkpoint(work: dict[str, Path]) -> Path:
    return work["root"] / "eval_copy" / "classifier" / "model.pt"


def independent_checkpoint(work: dict[str, Path]) -> Path:
    return work["root"] / "eval_copy" / "classifier_independent" / "model.pt"


def test_real_copy_run_writes_metrics_report_figures_and_tensorboard(work: dict[str, Path], copy_run: dict) -> None:
    out = work["root"] / "eval_copy"
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics) and metrics["verdict"] == copy_run["verdict"]
    settings = metrics["settings"]
    assert settings["classifier"]["trained"] and Path(settings["classifier"]["checkpoint"]) == checkpoint(work)
    assert checkpoint(work).is_file()
    num_test = len(read_datalist(work["real"]).splits["test"])
    assert settings["counts"]["generated"] == settings["counts"]["test"] == num_test
    assert settings["image_size"] == SIZE

    # Real vs itself: FID ~ 0, label agreement exactly the real test's, no memorisation flag.
    fid = metrics["fid"]["classifier"]
    assert fid["generated_vs_test"] < 1e-6 and fid["validation_vs_test"] > 0
    agreement = metrics["label_agreement"]
    assert agreement["generated"]["macro_auroc"] == pytest.approx(agreement["real_test"]["macro_auroc"], abs=1e-6)
    assert agreement["ratio"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["memorisation"]["flag"] is False
    assert "generated_to_train" not in metrics["memorisation"]["features"]  # per-sample lists live elsewhere
    audit = json.loads((out / "memorisation.json").read_text())
    assert len(audit["features"]["generated_to_train"]) == settings["counts"]["generated"]
    if xrv_available():
        assert metrics["fid"]["xrv"]["generated_vs_test"] < 1e-3
    else:  # never a silent 0
        assert "weights not on this machine" in metrics["fid"]["xrv"]["skipped"]
    assert "reference_report" in metrics["reports"]["text_metrics"]["skipped"]
    assert metrics["reports"]["verbatim_copy_rate"] == metrics["reports"]["real_test_verbatim_copy_rate"]

    # The independent classifier: a ResNet trained here into its own folder; the copy agrees as the real test does.
    independent = metrics["label_agreement_independent"]
    assert independent["architecture"] == "ResNet" and settings["independent_classifier"]["architecture"] == "ResNet"
    assert settings["independent_classifier"]["trained"] and independent_checkpoint(work).is_file()
    assert independent["ratio"] == pytest.approx(1.0, abs=1e-6)
    assert independent["real_test"]["macro_auroc"] != agreement["real_test"]["macro_auroc"]  # another network

    # The summary: the copy's pairs are the real test pairs, its reports the real test reports.
    check_summary(metrics)
    summary, skipped = metrics["summary"], metrics["summary_skipped"]
    assert summary["report_source"] is None and "report_source" in skipped["report_source"]
    assert summary["report_label_f1_real"] is None and "decoder_checkpoint" in skipped["report_label_f1_real"]
    assert summary["pair_consistency_ratio"] == 1.0 and summary["pair_agreement_generated"] > 0
    assert summary["pair_agreement_generated"] == summary["pair_agreement_real"]
    assert summary["label_agreement_ratio"] == agreement["ratio"]
    assert summary["label_agreement_ratio_independent"] == independent["ratio"]
    assert summary["fid_ratio"] == fid["ratio"] and summary["memorisation_flag"] is False
    assert 0 < summary["classifier_label_f1_real"] <= 1
    for key in ("distinct_2", "self_bleu_4", "max_bleu_to_train_mean", "verbatim_rate"):
        assert summary[key] == summary[f"{key}_real"], key
    retrieval, common = metrics["baselines"]["retrieval_by_labels"], metrics["baselines"]["most_common_per_label_set"]
    assert retrieval["verbatim_rate"] == common["verbatim_rate"] == 1.0 > summary["verbatim_rate"]
    assert common["self_bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert "decoder_alone" not in metrics["baselines"]

    for name, relative in metrics["figures"].items():
        assert (out / relative).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    report = (out / "report.md").read_text()
    assert metrics["verdict"] in report and "## Memorisation audit" in report and "## Label agreement" in report
    assert all(f"]({relative})" in report for relative in metrics["figures"].values())
    honest = report.split("## Honest measures", 1)[1].split("\n## ", 1)[0]
    assert "the generated datalist does not say what they were written from" in honest
    assert "| baseline: retrieval_by_labels |" in honest and "| real test (reference) |" in honest
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events[0])).Reload()
    scalars = accumulator.Scalars("fid/classifier/generated_vs_test")
    assert len(events) == 1 and scalars[0].value == pytest.approx(fid["generated_vs_test"], abs=1e-6)
    numeric = [key for key, value in summary.items() if isinstance(value, (bool, float))]
    assert {f"summary/{key}" for key in numeric} <= set(accumulator.Tags()["scalars"])
    assert accumulator.Scalars("summary/pair_consistency_ratio")[0].value == 1.0


def test_fid_separates_noise(work: dict[str, Path], copy_run: dict, capsys: pytest.CaptureFixture) -> None:
    from bundle.evaluation.console import print_summary

    out = work["root"] / "eval_noise"
    evaluate(
        work["real"],
        work["noise"],
        out,
        classifier_checkpoint=checkpoint(work),
        classifier_config=work["configs"],
        image_size=SIZE,
        figures=False,
        independent_classifier_checkpoint=independent_checkpoint(work),
    )
    print_summary(json.loads((out / "metrics.json").read_text()))
    metrics = json.loads((out / "metrics.json").read_text())
    check_summary(metrics)
    assert metrics["settings"]["independent_classifier"]["trained"] is False
    assert metrics["summary"]["report_source"] == "image"
    assert "Generated reports: written from the generated image." in (out / "report.md").read_text()
    printed = capsys.readouterr().out
    assert "summary:" in printed and "baseline retrieval_by_labels:" in printed
    assert re.search(rf"pair_consistency_ratio +{metrics['summary']['pair_consistency_ratio']:.4f}\n", printed)
    noise = metrics["fid"]["classifier"]
    copy = copy_run["fid"]["classifier"]
    assert noise["validation_vs_test"] == pytest.approx(copy["validation_vs_test"])  # same real data, same network
    # Noise is several times further from real test images than other real images are; the copy is nearer.
    assert noise["ratio"] > 3 > 1 > copy["ratio"]
    assert noise["generated_vs_test_matched"] > 5 * copy["generated_vs_test_matched"]


def test_label_agreement_drops_for_wrong_conditioning_labels(work: dict[str, Path], copy_run: dict) -> None:
    metrics = evaluate(
        work["real"],
        work["inverted"],
        work["root"] / "eval_inverted",
        checkpoint(work),
        classifier_config=work["configs"],
        image_size=SIZE,
        figures=False,
        independent_classifier_checkpoint=independent_checkpoint(work),
    )
    right, wrong = copy_run["label_agreement"], metrics["label_agreement"]
    assert right["real_test"]["macro_auroc"] > 0.55  # the tiny classifier learnt something
    # Same images, every label flipped: each class's AUROC becomes 1 - AUROC.
    for name, value in right["generated"]["auroc"].items():
        if value is not None:
            assert wrong["generated"]["auroc"][name] == pytest.approx(1 - value, abs=1e-6)
    assert wrong["ratio"] < 0.7 < 0.99 < right["ratio"]
    # The reports still state the true findings, so they disagree with the inverted labels too.
    assert copy_run["reports"]["label_f1"]["mean_f1"] > 0.8 > 0.3 > metrics["reports"]["label_f1"]["mean_f1"]
    # The independent classifier sees the same flip; pair consistency reads no conditioning label and is unchanged.
    right, wrong = copy_run["label_agreement_independent"], metrics["label_agreement_independent"]
    for name, value in right["generated"]["auroc"].items():
        if value is not None:
            assert wrong["generated"]["auroc"][name] == pytest.approx(1 - value, abs=1e-6)
    assert wrong["ratio"] < right["ratio"] and metrics["settings"]["independent_classifier"]["trained"] is False
    check_summary(metrics)
    assert metrics["summary"]["pair_consistency_ratio"] == copy_run["summary"]["pair_consistency_ratio"] == 1.0
    assert metrics["summary"]["report_label_f1"] < 0.3


def test_memorisation_audit_flags_training_copies(work: dict[str, Path], copy_run: dict) -> None:
    out = work["root"] / "eval_train_copy"
    metrics = evaluate(
        work["real"],
        work["train_copy"],
        out,
        checkpoint(work),
        classifier_config=work["configs"],
        image_size=SIZE,
        figures=False,
        independent_classifier=False,
    )
    audit = metrics["memorisation"]
    assert audit["flag"] is True and audit["features"]["flag"] and audit["ssim"]["flag"]
    assert audit["verdict"].startswith("MEMORISATION SUSPECTED") and "MEMORISATION SUSPECTED" in metrics["verdict"]
    assert audit["closest_pairs"][0]["ssim"] > 0.99
    assert metrics["reports"]["verbatim_copy_rate"] == 1.0
    assert "MEMORISATION SUSPECTED" in (out / "report.md").read_text()
    check_summary(metrics)
    assert metrics["summary"]["memorisation_flag"] is True and metrics["summary"]["verbatim_rate"] == 1.0
    assert metrics["summary"]["label_agreement_ratio_independent"] is None
    assert "independent_classifier=False" in metrics["summary_skipped"]["label_agreement_ratio_independent"]
    assert not (out / "classifier_independent").exists()
    assert copy_run["memorisation"]["flag"] is False


def test_bundle_config_runs_the_same_evaluation(work: dict[str, Path], copy_run: dict) -> None:
    """configs/evaluate.json through monai.bundle.run (what ``python -m monai.bundle run --config_file
    configs/evaluate.json --real_dir ...`` calls, in-process to save a second torch + MONAI import): the same numbers
    as the Python call."""
    from monai.bundle import run

    out = work["root"] / "eval_config"
    run(
        config_file=str(REPO_ROOT / "configs" / "evaluate.json"),
        logging_file=False,
        bundle_root=str(REPO_ROOT),
        real_dir=str(work["real"]),
        generated_dir=str(work["copy"]),
        output_dir=str(out),
        classifier_checkpoint=str(checkpoint(work)),
        independent_classifier_checkpoint=str(independent_checkpoint(work)),
        image_size=SIZE,
        classifier_config=work["configs"],
        figures=False,
        **{"classifier_overrides#num_workers": 0},
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["classifier"]["trained"] is False
    assert metrics["settings"]["independent_classifier"]["trained"] is False
    assert metrics["label_agreement"] == copy_run["label_agreement"]
    assert metrics["label_agreement_independent"] == copy_run["label_agreement_independent"]
    assert metrics["summary"] == copy_run["summary"] and metrics["baselines"] == copy_run["baselines"]
    assert metrics["fid"]["classifier"] == pytest.approx(copy_run["fid"]["classifier"])
    assert (out / "report.md").is_file()


def test_bad_input_is_named_or_skipped(work: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no datalist"):
        evaluate(work["real"], tmp_path, tmp_path / "out")
    for name in ("independent_classifier_checkpoint", "baseline_decoder_checkpoint"):
        with pytest.raises(DataError, match=r"absent\.pt: missing checkpoint"):
            evaluate(work["real"], work["copy"], tmp_path / "out", **{name: tmp_path / "absent.pt"})
    data = json.loads((work["copy"] / "datalist.json").read_text())
    data["training"][1]["labels"] = [1.0]
    data["training"][2]["image"] = "images/missing.png"
    data["training"][3] = "not an item"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"bad\.json: bad item: training item 1: labels must be a list of 7"):
        read_datalist(bad)
    skip = SkipCounter(skip_bad=True)
    items = read_datalist(bad, skip).splits["training"]
    assert len(items) == len(data["training"]) - 2 and skip.total == 2
    from monai.transforms import Compose

    from bundle.transforms import LoadCXRImaged

    for i in items:  # the images lie beside the copy's datalist
        i["image"] = str(work["copy"] / Path(i["image"]).relative_to(tmp_path))
    with pytest.raises(DataError, match="missing.png: missing image file"):
        load_image_set("generated", items, Compose([LoadCXRImaged("image")]), SkipCounter())
    loaded = load_image_set("generated", items, Compose([LoadCXRImaged("image")]), skip)
    assert len(loaded) == len(items) - 1 and skip.summary()["reasons"] == {"bad item": 2, "missing image file": 1}


def test_report_is_rewritten_from_metrics_json(work: dict[str, Path], copy_run: dict, tmp_path: Path) -> None:
    metrics = json.loads((work["root"] / "eval_copy" / "metrics.json").read_text())
    metrics["fid"]["xrv"] = {"skipped": "weights not on this machine (somewhere)"}
    text = write_report(metrics, tmp_path / "report.md").read_text()
    assert "xrv: skipped: weights not on this machine (somewhere)" in text
    assert text == write_report(metrics, tmp_path / "again.md").read_text()


def test_command_line_lists_commands_and_checks_flags_before_any_work(tmp_path: Path) -> None:
    """``scripts/evaluate.py``: ``--help`` lists the commands, ``<command> --help`` its flags, and an unknown command
    or a flag a command does not take stops it before it writes anything."""
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)

    done = cli("--help")
    assert done.returncode == 0 and all(name in done.stdout for name in ("decode", "reports", "run"))
    done = cli("reports", "--help")
    assert done.returncode == 0 and "evaluate reports" in done.stdout and "--clinical" in done.stdout
    assert cli("score").returncode == 2
    done = cli("reports", "--references", "r.jsonl", "--hypotheses", "h.jsonl", "--out", "scored", "--bogus", "1")
    assert done.returncode == 2 and "bogus" in done.stderr
    done = cli("reports", "--references", "r.jsonl", "--hypotheses", "h.jsonl", "--out", "scored")
    assert done.returncode == 2 and done.stderr.startswith("evaluate: error: r.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_run_fire_commands_dispatches_on_the_first_argument(capsys: pytest.CaptureFixture) -> None:
    from bundle.cli import run_fire_commands

    calls = []

    def first(value: int) -> None:
        """The first command."""
        calls.append(("first", value))

    def second(path: str) -> None:
        """The second command."""
        raise DataError(path, "missing")

    commands = {"first": first, "second": second}
    assert run_fire_commands(commands, ["first", "--value", "3"], name="tool") == 0 and calls == [("first", 3)]
    assert run_fire_commands(commands, ["first", "--value", "3", "--other", "1"], name="tool") == 2
    assert run_fire_commands(commands, ["first", "--help"], name="tool") == 0
    assert run_fire_commands(commands, ["third"], name="tool") == 2
    assert run_fire_commands(commands, [], name="tool") == 2
    assert run_fire_commands(commands, ["second", "x"], name="tool", user_errors=(DataError,)) == 2
    assert calls == [("first", 3)]
    printed = capsys.readouterr()
    assert "The first command." in printed.err and "tool: error: x: missing" in printed.err
