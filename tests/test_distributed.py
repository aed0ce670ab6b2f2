"""Data-parallel training: configs/multi_gpu_train.json under torchrun, two CPU processes on the gloo backend.

Each process reads its own shard of the data and draws its own latents, so without the gradient all-reduce of
:mod:`bundle.training.distributed` the two copies of every network would drift apart after the first step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bundle.inference.checkpoints import latest_checkpoint
from tests.tiny import CONFIG_DIR, TINY, TRAIN_CONFIGS

NETWORKS = ("generator", "report_decoder", "image_discriminator", "report_discriminator", "joint_discriminator")
PER_PROCESS = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm statistics stay per process


@pytest.mark.slow
def test_two_process_training_keeps_weights_in_sync(dataset_dir: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "run"
    # Each rank saves its networks after training (appended to finalize) so the test can compare them.
    save = "{n: getattr(@train#trainer, n).state_dict() for n in %s}" % (list(NETWORKS),)
    extra = tmp_path / "dump.json"
    extra.write_text(json.dumps({"+finalize": [f"$torch.save({save}, '{tmp_path}/rank' + str(@local_rank) + '.pt')"]}))
    configs = [*TRAIN_CONFIGS, str(CONFIG_DIR / "multi_gpu_train.json"), str(extra)]
    overrides = {**TINY, "dataset_dir": str(dataset_dir), "output_dir": str(output_dir)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "monai.bundle", "run", "--config_file", str(configs)]
    command += [f"--{key}={value}" for key, value in overrides.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(CONFIG_DIR.parent)}
    result = subprocess.run(command, cwd=CONFIG_DIR.parent, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in (0, 1)]
    initial = torch.load(latest_checkpoint(output_dir / "models"), map_location="cpu", weights_only=True)
    moved = 0
    for network in NETWORKS:
        for key, value in ranks[0][network].items():
            if key.endswith(PER_PROCESS):
                continue
            assert torch.equal(value, ranks[1][network][key]), f"{network}.{key} differs between the two processes"
            assert torch.equal(value, initial[network][key]), f"{network}.{key}: final checkpoint is not rank 0's"
            moved += 1
    assert moved > 50

    # Only rank 0 writes: one checkpoint series and one TensorBoard event file; both iterations ran.
    assert initial["trainer"]["iteration"] == 2
    assert len(list((output_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
