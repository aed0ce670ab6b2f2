"""The training bundle config: configs/train.json + configs/demo.json run EMIXER end to end as a MONAI
``ConfigWorkflow`` (Model Zoo properties, checkpoints, TensorBoard scalars, sample grids) and a second run in the
same output folder resumes from the newest checkpoint. Also :func:`bundle.inference.checkpoints.latest_checkpoint`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bundle.inference.checkpoints import checkpoint_iteration, latest_checkpoint
from tests.tiny import TINY, TRAIN_CONFIGS, train_workflow

CONFIGS = TRAIN_CONFIGS


pytestmark = pytest.mark.usefixtures("restore_threads")


def record_iterations(flow: ConfigWorkflow) -> list[int]:
    iterations: list[int] = []
    flow.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: iterations.append(e.state.iteration))
    return iterations


@pytest.mark.slow
def test_train_config_runs_and_resumes(dataset_dir: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "run"
    first = train_workflow(dataset_dir, output_dir)
    assert first.check_properties() == []
    assert first.parser.get_parsed_content("resume_path") == ""  # a fresh output folder: nothing to resume
    trainer = first.trainer
    assert trainer.generator.image_size == 32 and trainer.state.device.type == "cpu"
    assert torch.get_num_threads() == 1
    iterations = record_iterations(first)
    first.run()
    first.finalize()
    assert iterations == [1, 2] and trainer.state.epoch == 1

    models = output_dir / "models"
    assert (models / "checkpoint_final.pt").is_file() and (models / "checkpoint_iteration=2.pt").is_file()
    saved = torch.load(models / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert saved["trainer"]["iteration"] == 2 and "ema_generator" in saved and "rng" in saved
    events = list((output_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    scalars = EventAccumulator(str(events[0])).Reload().Tags()["scalars"]
    assert {"train/g_total", "train/d_total", "train/f_teacher_forcing", "train/d_class", "train/g_consistency"} <= set(
        scalars
    )
    assert (output_dir / "samples" / "samples_iteration_0000002.png").is_file()

    # Run again in the same output folder with one more epoch: it picks up the final checkpoint by itself.
    second = train_workflow(dataset_dir, output_dir, max_epochs=2)
    assert second.parser.get_parsed_content("resume_path") == str(models / "checkpoint_final.pt")
    iterations = record_iterations(second)
    second.run()
    second.finalize()
    assert iterations == [3, 4] and second.trainer.state.epoch == 2
    resumed = torch.load(models / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert resumed["trainer"]["iteration"] == 4


def test_resume_from_overrides_the_newest_checkpoint(tmp_path: Path) -> None:
    parser = ConfigParser()
    parser.read_config(CONFIGS)
    parser["output_dir"] = str(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    torch.save({}, models / "checkpoint_iteration=7.pt")  # latest_checkpoint takes readable checkpoints only
    assert parser.get_parsed_content("ckpt_dir") == str(models)
    assert parser.get_parsed_content("resume_path") == str(models / "checkpoint_iteration=7.pt")
    parser["resume_from"] = "/elsewhere/checkpoint_final.pt"
    assert parser.get_parsed_content("resume_path", lazy=False) == "/elsewhere/checkpoint_final.pt"


def test_latest_checkpoint_is_the_last_written(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "missing") == ""
    assert latest_checkpoint(tmp_path) == ""
    (tmp_path / "notes.pt").write_bytes(b"")  # not a checkpoint_*.pt file
    assert latest_checkpoint(tmp_path) == ""
    files = {
        name: tmp_path / name
        for name in ("checkpoint_iteration=90.pt", "checkpoint_iteration=100.pt", "checkpoint_final.pt")
    }
    for i, (name, path) in enumerate(files.items()):
        torch.save({}, path)
        os.utime(path, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    assert latest_checkpoint(tmp_path) == str(files["checkpoint_final.pt"])
    # A restarted run killed after a later interval checkpoint: that one is newer than the old final.
    later = tmp_path / "checkpoint_iteration=150.pt"
    torch.save({}, later)
    os.utime(later, ns=(10**18 + 9 * 10**9, 10**18 + 9 * 10**9))
    assert latest_checkpoint(tmp_path) == str(later)
    # Same time stamp (a coarse clock): the final checkpoint (written last by a run), then the larger iteration.
    for path in (*files.values(), later):
        os.utime(path, ns=(10**18, 10**18))
    assert latest_checkpoint(tmp_path) == str(files["checkpoint_final.pt"])
    files["checkpoint_final.pt"].unlink()
    assert latest_checkpoint(tmp_path) == str(later)
    assert checkpoint_iteration(later) == 150 and checkpoint_iteration(files["checkpoint_final.pt"]) == -1


@pytest.mark.slow
def test_embedded_full_config_builds_the_larger_model_and_trains_one_iteration(
    dataset_dir: Path, tmp_path: Path
) -> None:
    """configs/embedded_full.json layers on the demo: attention, wider channels, two critic steps, every term on."""
    configs = CONFIGS + [str(Path(CONFIGS[0]).parent / "embedded_full.json")]
    full = ConfigParser()
    full.read_config(configs)
    demo = ConfigParser()
    demo.read_config(CONFIGS)
    assert full["base_channels"] > demo["base_channels"] and full["attention_resolution"]
    assert full["max_epochs"] * full["epoch_length"] > demo["max_epochs"] * demo["epoch_length"]
    assert full["n_critic"] == 2 and full["use_rotation_loss"] is True
    settings = {
        **{k: v for k, v in TINY.items() if k not in ("base_channels", "attention_resolution")},
        "base_channels": 4,
        "attention_resolution": 16,
        "dataset_dir": str(dataset_dir),
        "output_dir": str(tmp_path / "full"),
        "max_epochs": 1,
        "epoch_length": 1,
    }
    flow = ConfigWorkflow(config_file=configs, logging_file=False, workflow_type="train", **settings)
    flow.initialize()
    assert flow.check_properties() == []
    flow.run()
    flow.finalize()
    assert flow.trainer.state.iteration == 1 and set(flow.trainer.state.output) >= {"d_rotation", "g_joint"}
    assert (tmp_path / "full" / "models" / "checkpoint_final.pt").is_file()


def test_a_checkpoint_of_version_0_4_0_resumes(dataset_dir: Path, tmp_path: Path) -> None:
    """``tests/data/checkpoint_0.4.0`` was written by version 0.4.0's trainer (the tiny config, 2 iterations, with its
    tokenizer): today's trainer loads every object from it and trains on from iteration 3, and saves the same keys."""
    old = Path(__file__).parent / "data" / "checkpoint_0.4.0"
    saved = torch.load(old / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    flow = train_workflow(
        dataset_dir,
        tmp_path / "run",
        max_epochs=2,
        resume_from=str(old / "checkpoint_final.pt"),
        tokenizer_path=str(old / "tokenizer.json"),
    )
    loaded: dict[str, torch.Tensor] = {}
    flow.trainer.add_event_handler(
        Events.STARTED, lambda e: loaded.update({k: v.clone() for k, v in e.generator.state_dict().items()})
    )
    iterations = record_iterations(flow)
    flow.run()
    flow.finalize()
    assert iterations == [3, 4]
    assert loaded.keys() == saved["generator"].keys()
    assert all(torch.equal(loaded[k], saved["generator"][k]) for k in loaded)
    resumed = torch.load(tmp_path / "run" / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert resumed["trainer"]["iteration"] == 4 and resumed.keys() == saved.keys()
