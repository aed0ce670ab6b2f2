"""Crash-safe training checkpoints: a failed or killed save never leaves a damaged checkpoint in place of a good one,
a damaged newest checkpoint is skipped for the next newest, a checkpoint that cannot be resumed stops the run with an
error naming the file (and the mismatching weights), and a run that fails before completing an iteration writes no
checkpoint. The last test kills a training subprocess with SIGKILL in the middle of a checkpoint write."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

from bundle.data.errors import DataError
from bundle.inference.checkpoints import latest_checkpoint
from tests.tiny import REPO_ROOT, TINY, TRAIN_CONFIGS, train_workflow

pytestmark = pytest.mark.usefixtures("restore_threads")


def copy_run(trained: Path, output_dir: Path) -> Path:
    """``output_dir/models`` = the checkpoints of the session's tiny run (final at iteration 2); returns it."""
    shutil.copytree(trained / "models", output_dir / "models")
    return output_dir / "models"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def data_error(error: BaseException) -> DataError:
    """The DataError in ``error``'s cause chain (MONAI's ``ConfigWorkflow.run`` wraps what the trainer raises)."""
    while error is not None and not isinstance(error, DataError):
        error = error.__cause__ or error.__context__
    assert error is not None, "no DataError in the cause chain"
    return error


def iteration_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["trainer"]["iteration"]


def tiny_engine(fail_at: int | None = None, epoch_length: int = 3) -> Engine:
    """An engine of ``epoch_length`` iterations over a Linear layer; it raises at iteration ``fail_at``."""
    net = torch.nn.Linear(2, 2)

    def step(engine: Engine, batch: object) -> float:
        if engine.state.iteration == fail_at:
            raise RuntimeError(f"failure at iteration {fail_at}")
        with torch.no_grad():
            net.weight.add_(1.0)
        return 0.0

    engine = Engine(step)
    engine.net = net
    return engine


def test_a_failed_write_keeps_the_previous_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that fails half-way (a full disk) leaves no partial file and no temporary file; with ``n_saved=1`` the
    previous interval checkpoint survives (Ignite deletes it before writing the next); the error names the file."""
    from bundle.training.handlers import AtomicCheckpointSaver

    engine = tiny_engine()
    saver = AtomicCheckpointSaver(str(tmp_path), {"net": engine.net}, save_interval=1, epoch_level=False, n_saved=1)
    saver.attach(engine)
    real_save = torch.save

    def full_disk(obj: object, file: object, *args: object, **kwargs: object) -> None:
        if "net_iteration=2.pt" in str(getattr(file, "name", file)):
            buffer = io.BytesIO()
            real_save(obj, buffer)
            file.write(buffer.getvalue()[:100]) if hasattr(file, "write") else Path(file).write_bytes(b"x" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"net_iteration=2\.pt: no space left") as error:
        engine.run([0] * 3, max_epochs=1)
    assert "MiB free in" in str(error.value)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["net_iteration=1.pt"]  # one object: named by its key
    saved = torch.load(tmp_path / "net_iteration=1.pt", weights_only=True)
    assert torch.allclose(saved["weight"], engine.net.weight.detach() - 1.0)  # the state after iteration 1, complete


def test_a_run_that_fails_before_its_first_iteration_writes_no_checkpoint(tmp_path: Path) -> None:
    """``save_final`` writes the final checkpoint on an exception only after an iteration of this run completed."""
    from bundle.training.handlers import AtomicCheckpointSaver

    for fail_at, expected in ((1, []), (3, ["checkpoint_final.pt"])):
        folder = tmp_path / str(fail_at)
        engine = tiny_engine(fail_at=fail_at)
        AtomicCheckpointSaver(
            str(folder), {"net": engine.net}, save_final=True, final_filename="checkpoint_final.pt"
        ).attach(engine)
        with pytest.raises(RuntimeError, match=f"failure at iteration {fail_at}"):
            engine.run([0] * 3, max_epochs=1)
        assert sorted(f.name for f in folder.iterdir()) == expected


def test_latest_checkpoint_skips_empty_and_unreadable_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The newest readable checkpoint is taken; each skipped file is named in a warning."""
    files = [tmp_path / f"checkpoint_iteration={i}.pt" for i in (1, 2, 3)] + [tmp_path / "checkpoint_final.pt"]
    for i, path in enumerate(files):
        torch.save({"trainer": {"iteration": i + 1}, "net": {"w": torch.zeros(64, 64)}}, path)
        os.utime(path, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) // 2])  # a write cut short
    files[3].write_bytes(b"")  # a write killed before any byte
    for i, path in enumerate(files[2:], start=2):
        os.utime(path, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    with caplog.at_level(logging.WARNING, logger="bundle.inference.checkpoints"):
        assert latest_checkpoint(tmp_path) == str(files[1])
    assert f"{files[3]}: empty file" in caplog.text and f"{files[2]}: unreadable" in caplog.text
    for path in files[:2]:
        path.write_bytes(b"not a checkpoint")
    assert latest_checkpoint(tmp_path) == ""


def test_an_unreadable_checkpoint_stops_the_resume_with_its_name(
    dataset_dir: Path, trained: Path, tmp_path: Path
) -> None:
    """Resuming from a truncated checkpoint raises a DataError naming it (not a bare EOFError), and the run writes
    nothing: ``checkpoint_final.pt`` keeps its trained weights instead of an iteration-0 state."""
    models = copy_run(trained, tmp_path / "run")
    broken = tmp_path / "checkpoint_iteration=9.pt"
    data = (models / "checkpoint_final.pt").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    before = snapshot(models)
    flow = train_workflow(dataset_dir, tmp_path / "run", max_epochs=2, resume_from=str(broken))
    with pytest.raises(RuntimeError) as error:
        flow.run()
    found = data_error(error.value)
    assert found.path == str(broken) and "cannot read checkpoint" in found.problem
    assert snapshot(models) == before


def test_changed_settings_stop_the_resume_before_anything_is_written(
    dataset_dir: Path, trained: Path, tmp_path: Path
) -> None:
    """``image_size`` changed into the same output folder: a DataError names the checkpoint and the mismatching
    weights, and the checkpoints are left as they were (no final checkpoint of an untrained generator)."""
    models = copy_run(trained, tmp_path / "run")
    before = snapshot(models)
    flow = train_workflow(dataset_dir, tmp_path / "run", max_epochs=2, image_size=64)
    assert flow.parser.get_parsed_content("resume_path") == str(models / "checkpoint_final.pt")
    with pytest.raises(RuntimeError) as error:
        flow.run()
    found = data_error(error.value)
    assert found.path == str(models / "checkpoint_final.pt") and "does not fit the configured networks" in found.problem
    assert "generator: " in found.problem and "weights of another shape: " in found.problem
    assert " vs configured " in found.problem
    assert flow.trainer.state.iteration == 0  # nothing of the checkpoint was loaded
    assert snapshot(models) == before


# Runs the tiny training in a subprocess whose torch.save writes half of the checkpoint named by argv[2] to its file,
# then marks argv[3] and sleeps: the test kills the process there, in the middle of the write.
KILLED_DURING_SAVE = """
import io, json, pathlib, sys, time
sys.path.insert(0, {repo!r})
import torch
settings, target, marker = json.loads(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
real_save = torch.save

def save(obj, file, *args, **kwargs):
    if target in str(getattr(file, "name", file)):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        if hasattr(file, "write"):
            file.write(data)
            file.flush()
        else:
            pathlib.Path(file).write_bytes(data)
        marker.touch()
        time.sleep(600)
    return real_save(obj, file, *args, **kwargs)

torch.save = save
from monai.bundle import ConfigWorkflow
flow = ConfigWorkflow(config_file={configs!r}, logging_file=False, workflow_type="train", **settings)
flow.initialize()
flow.run()
"""


@pytest.mark.slow
def test_a_run_killed_during_a_checkpoint_write_resumes_from_the_newest_valid_one(
    dataset_dir: Path, trained: Path, tmp_path: Path
) -> None:
    """Resume (final at iteration 2) -> iteration 3 saved -> SIGKILL while ``checkpoint_iteration=4.pt`` is being
    written. No damaged checkpoint is left under a checkpoint name, ``checkpoint_final.pt`` still holds iteration 2,
    and the rerun resumes from ``checkpoint_iteration=3.pt`` at iteration 3, removes the unfinished temporary file and
    ends at iteration 6."""
    output_dir = tmp_path / "run"
    models = copy_run(trained, output_dir)
    settings = {**TINY, "dataset_dir": str(dataset_dir), "output_dir": str(output_dir), "max_epochs": 3}
    marker, log = tmp_path / "saving", tmp_path / "killed_run.log"
    code = KILLED_DURING_SAVE.format(repo=str(REPO_ROOT), configs=TRAIN_CONFIGS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    with log.open("w") as out:
        args = [sys.executable, "-c", code, json.dumps(settings), "checkpoint_iteration=4.pt", str(marker)]
        process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert marker.exists(), f"the run never reached the save of iteration 4:\n{log.read_text()[-3000:]}"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL

    assert iteration_of(models / "checkpoint_final.pt") == 2
    assert iteration_of(models / "checkpoint_iteration=3.pt") == 3
    assert latest_checkpoint(models) == str(models / "checkpoint_iteration=3.pt")
    assert list(models.glob(".*.tmp"))  # the unfinished write, under a name no checkpoint glob matches

    flow = train_workflow(dataset_dir, output_dir, max_epochs=3)
    assert flow.parser.get_parsed_content("resume_path") == str(models / "checkpoint_iteration=3.pt")
    loaded: list[int] = []
    flow.trainer.add_event_handler(Events.STARTED, lambda e: loaded.append(e.state.iteration))
    flow.run()
    flow.finalize()
    assert loaded == [3]
    assert iteration_of(models / "checkpoint_final.pt") == 6
    assert iteration_of(models / "checkpoint_iteration=6.pt") == 6
    assert not list(models.glob(".*.tmp"))
