"""The report-decoder benchmark trains F by teacher forcing per variant and scores its greedy reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.benchmark_report_decoder import VARIANTS, benchmark
from tests.tiny import TINY

SMALL = {k: TINY[k] for k in ("image_size", "encoder_features", "word_embed_dim", "text_hidden", "max_sentences")}


def test_benchmark_scores_each_variant(dataset_dir: Path, capsys: pytest.CaptureFixture) -> None:
    results = benchmark(
        dataset_dir=str(dataset_dir), variants=["head", "demo"], iterations=3, eval_every=2, num_eval=6, **SMALL
    )
    assert list(results) == ["head", "demo"]
    for name, rows in results.items():
        assert [r["iteration"] for r in rows] == [2, 3]
        assert all(0.0 <= r["f1_head"] <= 1.0 or r["f1_head"] != r["f1_head"] for r in rows)  # NaN: no positives
        assert all(r["word_loss"] > 0 for r in rows)
    assert all(r["f1_given"] is None for r in results["head"])  # a head-only F is not given labels
    assert all(r["f1_given"] is not None for r in results["demo"])
    table = capsys.readouterr().out
    assert "| head | 3 |" in table and "| demo | 3 |" in table


def test_benchmark_names_unknown_variants(dataset_dir: Path) -> None:
    with pytest.raises(ValueError, match="choose from"):
        benchmark(dataset_dir=str(dataset_dir), variants=["nope"])
    assert {"head", "head_topic_every_step", "demo"} == set(VARIANTS)
