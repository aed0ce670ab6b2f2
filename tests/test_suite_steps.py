"""The evaluation run's steps on small tensors: the shared classes, the FID block beside its real-vs-real reference,
MS-SSIM diversity by label set, the report block's skip reasons and decoder block, and the audit's summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bundle.data.datalist import Datalist
from bundle.data.errors import DataError
from bundle.evaluation.classify import ImageSet
from bundle.evaluation.image_metrics import fid_with_reference, label_set_diversity
from bundle.evaluation.memorisation import PER_SAMPLE_KEYS, audit_summary
from bundle.evaluation.suite import SharedClasses, report_measures, shared_classes


def _datalist(name: str, classes: list[str]) -> Datalist:
    return Datalist(path=Path(name), root=Path("."), class_names=classes, splits={})


def _set(name: str, count: int, reports: list[str] | None, labels: np.ndarray | None = None) -> ImageSet:
    items = [{"image": f"{name}{n}.png", "labels": [1.0, 0.0]} for n in range(count)]
    labels = labels if labels is not None else np.tile([1.0, 0.0], (count, 1))
    return ImageSet(name, items, torch.rand(count, 1, 32, 32), labels, reports)


def test_shared_classes_keep_the_real_order_and_refuse_none_in_common() -> None:
    classes = shared_classes(_datalist("real", ["A", "B", "C"]), _datalist("gen", ["C", "A"]))
    assert classes == SharedClasses(names=["A", "C"], real_columns=[0, 2], generated_columns=[1, 0])
    with pytest.raises(DataError, match=r"gen: no class in common"):
        shared_classes(_datalist("real", ["A"]), _datalist("gen", ["B"]))


def test_fid_block_compares_at_a_matched_size_or_says_why_not() -> None:
    rng = np.random.default_rng(0)
    features = {
        name: torch.randn(n, 4, generator=torch.Generator().manual_seed(n))
        for name, n in (("generated", 40), ("test", 30), ("validation", 20))
    }
    block = fid_with_reference(features, rng)
    assert block["matched_size"] == 20 and block["num_generated"] == 40 and block["feature_dim"] == 4
    assert block["ratio"] == pytest.approx(block["generated_vs_test_matched"] / block["validation_vs_test"])
    alone = fid_with_reference({**features, "validation": torch.zeros(0, 4)}, rng)
    assert alone["ratio"] is None and "fewer than 2" in alone["note"]


def test_label_set_diversity_uses_sets_with_enough_images() -> None:
    labels = np.asarray([[1, 0]] * 4 + [[0, 1]] * 2 + [[-1, 0]] * 1, dtype=np.float64)
    images = torch.rand(len(labels), 1, 32, 32, generator=torch.Generator().manual_seed(0))
    block = label_set_diversity(images, labels, ["A", "B"], per_set=4)
    assert block["num_sets"] == 1 and list(block["per_set"]) == ["A"]
    assert "no conditioning label set has 5" in label_set_diversity(images, labels, ["A", "B"], 5)["skipped"]


def test_report_block_skips_without_text_and_keeps_the_decoder_block() -> None:
    classes = SharedClasses(names=["A", "B"], real_columns=[0, 1], generated_columns=[0, 1])
    text = ["heart is enlarged."] * 3
    sets = {"generated": _set("g", 3, None), "test": _set("t", 3, text), "training": _set("r", 3, text)}
    block = report_measures(sets, classes, meteor=False, decoder={"BLEU-1": 0.5})
    assert block == {"skipped": "the generated items carry no report text", "decoder": {"BLEU-1": 0.5}}
    sets = {**sets, "generated": _set("g", 3, text), "training": _set("r", 3, None)}
    assert report_measures(sets, classes, False, None) == {"skipped": "the real items carry no report text"}


def test_audit_summary_leaves_the_per_sample_lists_out() -> None:
    audit = {"flag": False, "features": {"share": 0.1, **{key: [1, 2] for key in PER_SAMPLE_KEYS}}, "verdict": "ok"}
    assert audit_summary(audit) == {"flag": False, "features": {"share": 0.1}, "verdict": "ok"}
