"""The zip the MONAI Model Zoo expects, built from a trained EMIXER-CXR run (``scripts/package_bundle.py``).

The zip holds one folder named after the bundle with the config folder (inference.json set to the trained model's
sizes, metadata.json, logging.conf and the training configs), ``models/`` (``model.pt``: the EMA generator and the
report decoder; ``tokenizer.json``; ``training_labels.json``: the class names and the training label rows that the
default conditioning draws from), the bundle's code (``bundle/``), ``scripts/``, ``docs/``, ``LICENSE``,
``README.md`` and ``large_files.yml``. Inference runs from the unpacked folder with
``python -m monai.bundle run --config_file configs/inference.json`` and needs no dataset.

It sits above :mod:`bundle.workflows`, which says where the configs are and composes the training configs with the
run's overrides.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bundle.data.errors import DataError
from bundle.inference.checkpoints import latest_checkpoint
from bundle.workflows import CONFIG_DIR, DEMO_TRAIN_CONFIGS, config_files, parse_config, unknown_config_ids

#: The bundle root (the repository root): the code, docs and top-level files packaged from it.
BUNDLE_ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("bundle", "scripts", "docs")
TOP_FILES = ("LICENSE", "README.md", "large_files.yml")
CONFIG_FILES = ("metadata.json", "logging.conf", "train.json", "demo.json", "multi_gpu_train.json")
#: Inference networks, whose referenced sizes are copied from the training configs into the packaged inference.json.
NETWORK_IDS = ("network_def", "report_decoder_def")
SKIPPED_SIZES = ("num_classes", "vocab_size", "report_label_classes")  # read from models/ at inference time
SWITCHES = ("report_label_head",)  # architecture switches the skipped sizes depend on


def network_sizes(inference: dict[str, Any], train_configs: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """The values, in the training configs, of the ids that inference.json's network definitions refer to."""
    parser = parse_config(train_configs, overrides)
    sizes = {}
    for network in NETWORK_IDS:
        for value in inference[network].values():
            if isinstance(value, str) and value.startswith("@") and value[1:] not in SKIPPED_SIZES:
                sizes[value[1:]] = parser.get_parsed_content(value[1:])
    sizes.update({key: parser.get_parsed_content(key) for key in SWITCHES if key in inference})
    return sizes


def unknown_overrides(arguments: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """The names in ``overrides`` that are not ids of the training configs (``arguments["train_configs"]``, else the
    demo's): a bundle config takes an unknown id without complaint, so such a name is a typo that would package
    the wrong sizes."""
    files = config_files(arguments.get("train_configs"), DEMO_TRAIN_CONFIGS, "training")
    return unknown_config_ids(overrides, [files])


def inference_weights(ckpt: str) -> dict[str, Any]:
    """``{"generator": EMA weights (else raw), "report_decoder": ...}`` from a training checkpoint."""
    import torch

    from bundle.inference.checkpoints import checkpoint_state

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise DataError(ckpt, f"not a training checkpoint of this bundle: a {type(checkpoint).__name__}")
    return {
        "generator": checkpoint_state(checkpoint, ("ema_generator", "generator"), ckpt),
        "report_decoder": checkpoint_state(checkpoint, ("report_decoder",), ckpt),
    }


def package_bundle(
    ckpt: str | None = None,
    train_configs: list[str] | None = None,
    dataset_dir: str = "data/embedded",
    out: str | None = None,
    name: str = "emixer_cxr",
    overwrite: bool = False,
    **overrides: Any,
) -> Path:
    """Write the Model Zoo zip and return its path.

    Args:
        ckpt: the training checkpoint; default the newest in ``output/demo/models``.
        train_configs: the training configs of the run (one file or a list); default train.json + demo.json.
        dataset_dir: the dataset the model was trained on (its tokenizer and training label rows are packaged).
        out: the zip; default ``dist/<name>_v<version>.zip``. An existing zip is kept unless ``overwrite``.
        name: the bundle's folder in the zip.
        overrides: the training run's command-line overrides (e.g. ``--image_size 32``), so the packaged inference
            config matches the trained networks.
    """
    import torch

    train_configs = config_files(train_configs, DEMO_TRAIN_CONFIGS, "training")
    ckpt = ckpt or latest_checkpoint(BUNDLE_ROOT / "output" / "demo" / "models")
    if not ckpt or not Path(ckpt).is_file():
        raise DataError(ckpt or "output/demo/models", "missing checkpoint: train first (python scripts/demo.py)")
    dataset = Path(dataset_dir)
    for needed in ("datalist.json", "tokenizer.json"):
        if not (dataset / needed).is_file():
            raise DataError(
                dataset / needed,
                "missing: the dataset the model was trained on is needed for its tokenizer and label distribution",
            )
    metadata = json.loads((CONFIG_DIR / "metadata.json").read_text())
    out_path = Path(out or BUNDLE_ROOT / "dist" / f"{name}_v{metadata['version']}.zip")
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass --overwrite to replace it")

    inference = json.loads((CONFIG_DIR / "inference.json").read_text())
    inference.update(network_sizes(inference, train_configs, overrides))
    datalist = json.loads((dataset / "datalist.json").read_text())
    labels = {
        "class_names": datalist["class_names"],
        "training": [{"labels": i["labels"]} for i in datalist["training"]],
    }

    configs_in_zip = f"{name}/{CONFIG_DIR.name}"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model.pt"
        torch.save(inference_weights(ckpt), weights)
        partial = out_path.with_suffix(".zip.partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for folder in CODE_DIRS:
                for path in sorted((BUNDLE_ROOT / folder).rglob("*")):
                    if path.is_file() and "__pycache__" not in path.parts:
                        archive.write(path, f"{name}/{path.relative_to(BUNDLE_ROOT)}")
            for file in TOP_FILES:
                archive.write(BUNDLE_ROOT / file, f"{name}/{file}")
            for file in CONFIG_FILES:
                archive.write(CONFIG_DIR / file, f"{configs_in_zip}/{file}")
            archive.writestr(f"{configs_in_zip}/inference.json", json.dumps(inference, indent=4) + "\n")
            archive.write(weights, f"{name}/models/model.pt")
            archive.write(dataset / "tokenizer.json", f"{name}/models/tokenizer.json")
            archive.writestr(f"{name}/models/training_labels.json", json.dumps(labels) + "\n")
        partial.replace(out_path)
    print(f"bundle {name} v{metadata['version']} from {ckpt}: {out_path}")
    return out_path
