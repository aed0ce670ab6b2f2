"""Learnability of the embedded dataset: can a small CNN read the drawn findings from the images?

Generates an embedded dataset (or loads one), trains a small CNN (eight MONAI ``Convolution`` blocks) on
the training split to predict the rendered labels of ``embedded-ground-truth.csv`` (uncertain = drawn
mildly = positive), and reports the per-finding AUROC on the test split with the time taken. A finding whose
sign is drawn well scores near 1; a model trained on generated images can be judged the same way.
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bundle.data.embedded import GROUND_TRUTH_CSV, make_embedded_dataset
from bundle.data.errors import DataError
from bundle.data.labels import DEFAULT_CLASSES, to_multi_hot

__all__ = ["evaluate_auroc", "load_embedded_split", "run_benchmark", "small_cnn", "train_classifier"]


def load_embedded_split(data_dir: str | Path, split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (float32 ``[N, 1, S, S]`` in [0, 1]) and rendered labels (``[N, 7]``) of one split."""
    from PIL import Image

    data_dir = Path(data_dir)
    truth_path = data_dir / GROUND_TRUTH_CSV
    if not truth_path.is_file():
        raise DataError(truth_path, "missing file (not an embedded dataset?)")
    with open(truth_path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    images, labels = [], []
    for row in rows:
        subject, study = row["subject_id"], row["study_id"]
        path = data_dir / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{row['dicom_id']}.jpg"
        with Image.open(path) as image:
            image = image.convert("L")
            if image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.BILINEAR)
            images.append(np.asarray(image, dtype=np.float32) / 255.0)
        record = {name: float(row[name]) for name in DEFAULT_CLASSES}
        labels.append(to_multi_hot(record, DEFAULT_CLASSES, uncertain="ones"))
    if not images:
        raise DataError(truth_path, f"no items in split {split!r}")
    return np.stack(images)[:, None], np.asarray(labels, dtype=np.float32)


def small_cnn(image_size: int, classes: int = len(DEFAULT_CLASSES)) -> torch.nn.Module:
    """Four stride-2 stages of two 3x3 convolutions (MONAI ``Convolution`` blocks: conv, batch norm, ReLU)."""
    from monai.networks.blocks import Convolution

    layers, channels = [], 1
    for out in (16, 32, 64, 64):
        layers.append(Convolution(2, channels, out, strides=2, kernel_size=3, act="relu", norm="batch"))
        layers.append(Convolution(2, out, out, strides=1, kernel_size=3, act="relu", norm="batch"))
        channels = out
    side = image_size // 16
    layers += [torch.nn.Flatten(), torch.nn.Dropout(0.3), torch.nn.Linear(channels * side * side, classes)]
    return torch.nn.Sequential(*layers)


def train_classifier(
    x: np.ndarray, y: np.ndarray, epochs: int = 20, lr: float = 2e-3, batch_size: int = 32, seed: int = 0
) -> torch.nn.Module:
    """Train :func:`small_cnn` with BCE on the multi-label targets (AdamW; images scaled to [-1, 1])."""
    torch.manual_seed(seed)
    model = small_cnn(x.shape[-1], y.shape[1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=generator).split(batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(xt[idx] * 2 - 1), yt[idx])
            loss.backward()
            optimizer.step()
    return model.eval()


def evaluate_auroc(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Per-finding AUROC (MONAI ``compute_roc_auc``); NaN where the test split has one label value only."""
    from monai.metrics import compute_roc_auc

    with torch.no_grad():
        scores = torch.sigmoid(model(torch.from_numpy(x) * 2 - 1))
    out = {}
    for k, name in enumerate(DEFAULT_CLASSES):
        target = torch.from_numpy(y[:, k])
        out[name] = float(compute_roc_auc(scores[:, k], target)) if 0 < target.sum() < len(target) else float("nan")
    return out


def run_benchmark(
    data_dir: str | None = None,
    num_items: int = 600,
    image_size: int = 64,
    epochs: int = 20,
    seed: int = 0,
    report_source: str = "grammar",
    use_real_masks: bool | str = "auto",
    test_fraction: float = 0.25,
    num_threads: int = 1,
    verbose: bool = True,
) -> dict:
    """Generate (unless ``data_dir`` is given) and benchmark; returns AUROCs, their mean and timings.

    One torch thread by default: reproducible, and faster than two when other processes share the cores.
    """
    torch.set_num_threads(num_threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if data_dir is None:
            data_dir = str(Path(tmp) / "embedded")
            make_embedded_dataset(
                data_dir,
                num_items=num_items,
                seed=seed,
                image_size=image_size,
                report_source=report_source,
                use_real_masks=use_real_masks,
                val_fraction=0.05,
                test_fraction=test_fraction,
            )
        generated = time.perf_counter()
        x_train, y_train = load_embedded_split(data_dir, "train", image_size)
        x_test, y_test = load_embedded_split(data_dir, "test", image_size)
    model = train_classifier(x_train, y_train, epochs=epochs, seed=seed)
    trained = time.perf_counter()
    auroc = evaluate_auroc(model, x_test, y_test)
    valid = [v for v in auroc.values() if not np.isnan(v)]
    result = {
        "auroc": auroc,
        "mean_auroc": float(np.mean(valid)) if valid else float("nan"),
        "n_train": len(x_train),
        "n_test": len(x_test),
        "test_positives": {name: int(y_test[:, k].sum()) for k, name in enumerate(DEFAULT_CLASSES)},
        "seconds": {
            "data": round(generated - start, 1),
            "train": round(trained - generated, 1),
            "total": round(time.perf_counter() - start, 1),
        },
    }
    if verbose:
        print(f"train {result['n_train']} / test {result['n_test']} items at {image_size} px, {epochs} epochs")
        for name, value in auroc.items():
            print(f"  {name:18s} AUROC {value:.3f}  (test positives: {result['test_positives'][name]})")
        print(f"  mean AUROC {result['mean_auroc']:.3f}; seconds: {result['seconds']}")
    return result
