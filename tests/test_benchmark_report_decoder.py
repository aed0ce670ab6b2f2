"""The report-decoder benchmark trains F by teacher forcing per variant and scores its greedy reports."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bundle.benchmarks.report_decoder import VARIANTS, benchmark, variant_parser
from tests.tiny import TINY

SMALL = {k: TINY[k] for k in ("image_size", "encoder_features", "word_embed_dim", "text_hidden", "max_sentences")}


def test_benchmark_scores_each_variant(dataset_dir: Path, capsys: pytest.CaptureFixture) -> None:
    results = benchmark(
        dataset_dir=str(dataset_dir),
        variants=["head", "label_conditioned"],
        iterations=3,
        eval_every=2,
        num_eval=6,
        **SMALL,
    )
    assert list(results) == ["head", "label_conditioned"]
    for name, rows in results.items():
        assert [r["iteration"] for r in rows] == [2, 3]
        assert all(0.0 <= r["f1_head"] <= 1.0 or r["f1_head"] != r["f1_head"] for r in rows)  # NaN: no positives
        assert all(r["word_loss"] > 0 for r in rows)
    assert all(r["f1_given"] is None for r in results["head"])  # a head-only F is not given labels
    assert all(r["f1_given"] is not None for r in results["label_conditioned"])
    table = capsys.readouterr().out
    assert "| head | 3 |" in table and "| label_conditioned | 3 |" in table


def test_benchmark_names_unknown_variants(dataset_dir: Path) -> None:
    with pytest.raises(ValueError, match="choose from"):
        benchmark(dataset_dir=str(dataset_dir), variants=["nope"])
    assert {"head", "head_topic_every_step", "demo", "label_conditioned"} == set(VARIANTS)


def test_benchmark_scores_a_training_checkpoints_decoder(dataset_dir: Path, tmp_path: Path) -> None:
    """``checkpoint``: no training; the saved F is loaded (a checkpoint of another shape fails to load) and scored."""
    decoder = variant_parser(str(dataset_dir), SMALL).get_parsed_content("report_decoder_def")
    path = tmp_path / "checkpoint_final.pt"
    torch.save({"report_decoder": decoder.state_dict(), "trainer": {"iteration": 5}}, path)
    rows = benchmark(dataset_dir=str(dataset_dir), checkpoint=str(path), num_eval=6, **SMALL)["checkpoint"]
    assert len(rows) == 1 and rows[0]["iteration"] == 5
    assert rows[0]["f1_given"] is None  # the demo preset's F writes from the image alone
    with pytest.raises(RuntimeError, match="size mismatch"):
        benchmark(dataset_dir=str(dataset_dir), checkpoint=str(path), num_eval=6, **{**SMALL, "text_hidden": 40})
    torch.save({"generator": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt holds no report_decoder"):
        benchmark(dataset_dir=str(dataset_dir), checkpoint=str(tmp_path / "other.pt"), num_eval=6, **SMALL)
