"""scripts/reproduce_embedded.py end to end on a tiny setting: 60 embedded studies at 32 px, two settings (full
labels and the SM-GAN ablation) of 2 iterations each, one tiny evaluation classifier shared by both evaluations,
and the results Markdown with its tables and figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from scripts.reproduce_embedded import SETTINGS, command_line, reproduce, seconds_per_iteration, train_scalars
from tests.tiny import TINY, TINY_CLASSIFIER_DEF, make_tiny_dataset

TINY_CLASSIFIER = {
    "classifier_def": {**TINY_CLASSIFIER_DEF, "block_config": [2, 2]},  # two dense blocks: quicker still
    "batch_size": 16,
    "num_workers": 0,
    "learning_rate": 0.003,
    "log_interval": 1000,
}
RUN_SETTINGS = ("full", "sm_gan")


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("reproduce")
    dataset = root / "embedded"
    make_tiny_dataset(dataset, 60, split="random", val_fraction=0.2, test_fraction=0.25, quiet=True)
    tiny = {k: v for k, v in TINY.items() if k != "num_threads"}
    results = root / "docs" / "results" / "embedded.md"
    rows = reproduce(
        dataset_dir=str(dataset),
        out_dir=str(root / "output"),
        results=str(results),
        settings=RUN_SETTINGS,
        seeds={setting: [0] for setting in RUN_SETTINGS},  # per-setting seeds
        num_samples=12,
        classifier_epochs=2,
        classifier_overrides=TINY_CLASSIFIER,
        **tiny,
    )
    return {"root": root, "rows": rows, "results": results, "out": root / "output"}


def test_every_setting_is_trained_generated_and_evaluated(reproduced: dict) -> None:
    out, rows = reproduced["out"], reproduced["rows"]
    assert [(r["setting"], r["seed"]) for r in rows] == [(s, 0) for s in RUN_SETTINGS]
    checkpoint = out / "classifier" / "model.pt"
    assert checkpoint.is_file()
    for row in rows:
        run_dir = out / row["setting"] / "seed0"
        record = json.loads((run_dir / "train_record.json").read_text())
        assert record["iterations"] == row["iterations"] == TINY["epoch_length"] * TINY["max_epochs"]
        assert len(json.loads((run_dir / "generated" / "datalist.json").read_text())["training"]) == 12
        metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
        # one shared classifier, never retrained per run
        assert metrics["settings"]["classifier"] == {**metrics["settings"]["classifier"], "trained": False}
        assert Path(metrics["settings"]["classifier"]["checkpoint"]) == checkpoint
        assert row["label_agreement_ratio"] == metrics["label_agreement"]["ratio"]
        assert row["fid_ratio"] == metrics["fid"]["classifier"]["ratio"]
        assert row["report_label_f1"] == metrics["reports"]["label_f1"]["mean_f1"]
        assert row["memorisation_flag"] is metrics["memorisation"]["flag"]
        assert row["seconds_per_iteration"] > 0  # TINY logs every iteration


def test_seconds_per_iteration_reads_the_event_times(tmp_path: Path) -> None:
    """First to last logged GAN iteration, from TensorBoard wall times (across event files); None below two."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path)) as writer:
        writer.add_scalar("train/d_total", 1.0, 10, walltime=100.0)
        for step, wall in ((10, 100.0), (20, 112.0)):
            writer.add_scalar("train/g_total", 1.0, step, walltime=wall)
    with SummaryWriter(str(tmp_path), filename_suffix=".resumed") as writer:  # a resumed run's second file
        writer.add_scalar("train/g_total", 1.0, 40, walltime=160.0)
    assert seconds_per_iteration(train_scalars(tmp_path)) == pytest.approx(60.0 / 30)
    assert seconds_per_iteration(train_scalars(tmp_path), tag="train/d_total") is None
    assert seconds_per_iteration(train_scalars(tmp_path / "missing")) is None


def test_sm_gan_switches_the_report_and_joint_terms_off(reproduced: dict) -> None:
    tags = {}
    for setting in RUN_SETTINGS:
        events = sorted((reproduced["out"] / setting / "seed0" / "tensorboard").glob("events.out.tfevents.*"))
        tags[setting] = {t for e in events for t in EventAccumulator(str(e)).Reload().Tags()["scalars"]}
    assert {"train/d_report", "train/d_joint", "train/g_report", "train/g_joint"} <= tags["full"]
    assert not {"train/d_report", "train/d_joint", "train/g_report", "train/g_joint"} & tags["sm_gan"]
    assert "train/d_image" in tags["sm_gan"]
    record = json.loads((reproduced["out"] / "sm_gan" / "seed0" / "train_record.json").read_text())
    assert SETTINGS["sm_gan"].items() <= record["overrides"].items()


def test_results_markdown_has_the_tables_and_existing_figures(reproduced: dict) -> None:
    results: Path = reproduced["results"]
    text = results.read_text()
    for setting in RUN_SETTINGS:
        assert f"| {setting} | 0 |" in text and f"| {setting} | mean (n=1) |" in text
        assert f"## {setting}, seed 0" in text
    assert "## Targets" in text and "no memorisation flag" in text
    assert re.search(r"\| (met|not met|n/a) \|", text)
    assert "python scripts/reproduce_embedded.py" in text and "--settings=" in text
    full = reproduced["rows"][0]
    if full["fid_ratio"] is not None:
        assert f"{full['fid_ratio']:.2f}" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= 2 * len(RUN_SETTINGS)  # loss curves and a sample sheet per run at least
    for link in links:
        figure = results.parent / link
        assert not Path(link).is_absolute() and figure.parent == results.with_suffix("")
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link


def test_results_score_each_runs_report_decoder(reproduced: dict) -> None:
    text = reproduced["results"].read_text()
    assert text.count("report decoder F on the real test images") == len(RUN_SETTINGS)
    for setting in RUN_SETTINGS:
        decoder = json.loads((reproduced["out"] / setting / "seed0" / "evaluation" / "metrics.json").read_text())
        assert {"BLEU-4", "CIDEr", "ROUGE-L"} <= set(decoder["reports"]["decoder"])


def test_train_only_trains_without_evaluating(reproduced: dict) -> None:
    root: Path = reproduced["root"]
    results = root / "train_only.md"
    tiny = {k: v for k, v in TINY.items() if k != "num_threads"}
    rows = reproduce(
        dataset_dir=str(root / "embedded"),
        out_dir=str(reproduced["out"]),
        results=str(results),
        settings="label_fraction_0.3",
        seeds=(0,),
        train_only=True,
        **tiny,
    )
    run = reproduced["out"] / "label_fraction_0.3" / "seed0"
    assert rows == [] and not results.exists() and not (run / "evaluation").exists()
    record = json.loads((run / "train_record.json").read_text())
    assert record["overrides"]["label_fraction"] == 0.3 and record["iterations"] == TINY["epoch_length"]


def test_seeds_per_setting_must_name_settings_that_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sm_gan"):
        reproduce(dataset_dir=str(tmp_path / "none"), settings="full", seeds={"full": [0, 1], "sm_gan": [0]})
    with pytest.raises(ValueError, match="unknown settings"):
        reproduce(dataset_dir=str(tmp_path / "none"), settings="fuller")


def test_a_finished_run_is_reused_only_with_the_same_settings_and_configs(tmp_path: Path) -> None:
    from scripts.reproduce_embedded import config_digest, train_run

    run_dir = tmp_path / "full" / "seed0"
    run_dir.mkdir(parents=True)
    record = {"overrides": {"seed": 0}, "config_digest": config_digest(), "train_minutes": None, "iterations": 3}
    (run_dir / "train_record.json").write_text(json.dumps(record))
    assert train_run(run_dir, {"seed": 0}, None)["reused"] is True  # nothing trained: no dataset needed
    with pytest.raises(ValueError, match="train_record.json.*other settings"):
        train_run(run_dir, {"seed": 1}, None)
    (run_dir / "train_record.json").write_text(json.dumps({**record, "config_digest": "0" * 16}))  # configs changed
    with pytest.raises(ValueError, match="config digest"):
        train_run(run_dir, {"seed": 0}, None)


def test_command_line_round_trips_through_fire() -> None:
    """The recorded command gives fire back the same values, booleans and None included, also nested (JSON's false
    would be a string)."""
    import fire

    arguments = {
        "out_dir": "output/x",
        "seeds": {"full": [0, 1]},
        "train_minutes": 30,
        "flag#on": False,
        "classifier_overrides": {"amp": False, "pretrained": None},
        "settings": ["full", "sm_gan"],
        "note": {"quote": 'say "hi"', "dollar": "$HOME"},
    }
    command = command_line(arguments)
    parsed = fire.Fire(lambda **kw: kw, command=command.split(" ", 2)[2], name="reproduce")
    assert parsed == arguments
    assert "--settings=\"['full', 'sm_gan']\"" in command and "--train_minutes=30 " in command  # readable
