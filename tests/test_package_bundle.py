"""bundle.packaging (scripts/package_bundle.py): the Model Zoo zip of a trained run unpacks into a bundle that runs inference on its
own (no dataset, no repository on the path) with ``python -m monai.bundle run --config_file configs/inference.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow

from bundle.packaging import network_sizes, package_bundle
from tests.tiny import TINY

SIZES = {k: v for k, v in TINY.items() if k not in ("batch_size", "max_epochs", "epoch_length", "num_workers")}


def test_packaged_bundle_runs_inference_from_a_fresh_folder(dataset_dir: Path, trained: Path, tmp_path: Path) -> None:
    ckpt = str(trained / "models" / "checkpoint_final.pt")
    archive = package_bundle(ckpt=ckpt, dataset_dir=str(dataset_dir), out=str(tmp_path / "emixer.zip"), **SIZES)
    with pytest.raises(FileExistsError, match="--overwrite"):
        package_bundle(ckpt=ckpt, dataset_dir=str(dataset_dir), out=str(archive), **SIZES)

    unpacked = tmp_path / "zoo"
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        zf.extractall(unpacked)
    root = unpacked / "emixer_cxr"
    for needed in (
        "configs/metadata.json",
        "configs/inference.json",
        "models/model.pt",
        "LICENSE",
        "README.md",
        "models/tokenizer.json",
        "models/training_labels.json",
        "bundle/inference/__init__.py",
        "large_files.yml",
    ):
        assert f"emixer_cxr/{needed}" in names, needed
    assert not any("/tests/" in n or "__pycache__" in n for n in names)
    inference = json.loads((root / "configs" / "inference.json").read_text())
    assert inference["image_size"] == TINY["image_size"] and inference["base_channels"] == TINY["base_channels"]
    weights = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert set(weights) == {"generator", "report_decoder"}
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert all(torch.equal(v, saved["ema_generator"][k]) for k, v in weights["generator"].items())  # the EMA copy

    # The Zoo's inference property check, on the unpacked bundle alone.
    flow = ConfigWorkflow(
        config_file=str(root / "configs" / "inference.json"),
        workflow_type="infer",
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        bundle_root=str(root),
    )
    flow.initialize()
    assert flow.check_properties() == []

    # Inference from the unpacked folder in a fresh process: its own code, models/ weights, tokenizer and labels.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "configs/inference.json",
        "--num_samples",
        "3",
        "--batch_size",
        "2",
        "--device",
        "$torch.device('cpu')",
    ]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    generated = json.loads((root / "output" / "generated" / "datalist.json").read_text())
    assert len(generated["training"]) == 3
    assert generated["class_names"] == json.loads((dataset_dir / "datalist.json").read_text())["class_names"]
    assert all((root / "output" / "generated" / item["image"]).is_file() for item in generated["training"])


def test_network_sizes_carry_the_trained_architecture_switches() -> None:
    configs = [str(Path(__file__).parents[1] / "configs" / name) for name in ("train.json", "demo.json")]
    inference = json.loads((Path(__file__).parents[1] / "configs" / "inference.json").read_text())
    sizes = network_sizes(inference, configs, {**SIZES, "report_label_head": True})
    assert sizes["report_label_head"] is True and sizes["image_size"] == TINY["image_size"]
    assert not {"num_classes", "vocab_size", "report_label_classes"} & set(sizes)  # read from models/ instead
    assert network_sizes(inference, configs, {**SIZES, "report_label_head": False})["report_label_head"] is False


def run_script(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    script = Path(__file__).parents[1] / "scripts" / "package_bundle.py"
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_shows_help_and_refuses_unknown_flags_before_any_work(tmp_path: Path) -> None:
    result = run_script(tmp_path, "--help")
    assert result.returncode == 0 and "--dataset_dir" in result.stdout and "--overwrite" in result.stdout
    result = run_script(tmp_path, "--ckpt", "missing.pt", "--image_size", "32", "--imag_size", "32")
    assert result.returncode == 2 and "--imag_size" in result.stderr and "unknown flag" in result.stderr
    result = run_script(tmp_path, "--ckpt", "missing.pt", "--dataset_dir", str(tmp_path))
    assert result.returncode == 2 and "missing.pt" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
