"""The training benchmark (bundle.benchmarks, scripts/benchmark_train.py) on the tiny preset: engine and bare loop both train and are
timed, parameter counts match the built networks, the Markdown is written; its helpers (synthetic batch layout,
optimiser-state priming, the bare loop's step counts, the memory line fit) do what they say."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bundle.benchmarks.memory import fit_memory_line, prime_optimizer_states
from bundle.benchmarks.presets import NETWORKS, PRESETS
from bundle.benchmarks.sweep import memory_sweep
from bundle.benchmarks.timing import bare_iteration
from bundle.benchmarks.train import run_benchmark
from bundle.benchmarks.training import build_training, synthetic_batch
from bundle.data.tokenizer import END, PAD


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return build_training("tiny", length=1)


def test_run_benchmark_on_tiny_preset(tiny, tmp_path: Path) -> None:
    out = tmp_path / "docs" / "bench.md"
    result = run_benchmark(preset="tiny", iterations=2, warmup=1, out=str(out), memory_sweep_preset=None, verbose=False)
    for loop in ("engine", "bare"):
        assert result[loop]["images_per_second"] > 0 and len(result[loop]["seconds"]) == 2
        assert result[loop]["peak_memory_bytes"] > 0
        assert result[loop]["images_per_second"] == pytest.approx(4 * result[loop]["iterations_per_second"])
    ratio = result["engine_over_bare"]
    assert math.isfinite(ratio) and ratio > 0
    paired = [e / b for e, b in zip(result["engine"]["seconds"], result["bare"]["seconds"])]
    assert ratio == pytest.approx(sum(paired) / 2)  # the median of two paired ratios
    medians = result["engine"]["seconds_per_iteration"] / result["bare"]["seconds_per_iteration"]
    assert result["engine_over_bare_of_medians"] == pytest.approx(medians)
    expected = {name: sum(p.numel() for p in tiny.networks[name].parameters()) for name in NETWORKS}
    assert result["parameters"] == expected
    text = out.read_text()
    assert text == result["markdown"]
    assert f"{ratio:.3f}" in text and f"{sum(expected.values()):,}" in text and "cores" in text


def test_synthetic_batch_follows_the_report_layout() -> None:
    batch = synthetic_batch(6, 3, 32, 5, 30, max_sentences=4, max_words=7, seed=1)
    assert batch["image"].shape == (6, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert set(batch["labels"].unique().tolist()) <= {0.0, 1.0} and batch["labels"].shape == (6, 5)
    tokens, counts = batch["report_tokens"], batch["report_num_sentences"]
    assert tokens.shape == (6, 4, 7) and tokens.dtype == torch.long
    for item, count in zip(tokens, counts.tolist()):
        assert 1 <= count <= 4 and (item[count:] == PAD).all()
        for row in item[:count]:
            end = int((row == END).nonzero()[0])  # words, then exactly one <end>, then pads
            assert end >= 1 and (row[:end] >= 4).all() and (row[:end] < 30).all() and (row[end + 1 :] == PAD).all()
    with pytest.raises(ValueError):
        synthetic_batch(2, 1, 8, 2, vocab_size=4, max_sentences=2, max_words=3)


def test_priming_allocates_adam_states_without_moving_weights(tiny) -> None:
    g = tiny.networks["generator"]
    before = [p.detach().clone() for p in g.parameters()]
    prime_optimizer_states(tiny.g_optimizer, tiny.d_optimizer)
    assert all(torch.equal(a, p) for a, p in zip(before, g.parameters()))
    assert all("exp_avg" in tiny.g_optimizer.state[p] for p in g.parameters())
    assert all(p.grad is None for p in g.parameters())


def count_steps(optimizer: torch.optim.Optimizer, calls: list[str], name: str) -> None:
    step = optimizer.step

    def counted(*args, **kwargs):
        calls.append(name)
        return step(*args, **kwargs)

    optimizer.step = counted


def test_bare_iteration_does_n_critic_d_steps_then_one_g_and_f_step(tiny) -> None:
    assert tiny.f_optimizer is not None  # train.json gives F its own optimiser
    calls: list[str] = []
    count_steps(tiny.d_optimizer, calls, "d")
    count_steps(tiny.g_optimizer, calls, "g")
    count_steps(tiny.f_optimizer, calls, "f")
    try:
        d_image = tiny.networks["image_discriminator"]
        before = [p.detach().clone() for p in tiny.networks["generator"].parameters()]
        before_f = [p.detach().clone() for p in tiny.networks["report_decoder"].parameters()]
        losses = bare_iteration(
            tiny.networks,
            tiny.g_optimizer,
            tiny.d_optimizer,
            tiny.batch,
            tiny.settings,
            tiny.device,
            tiny.trainer.objective,
            tiny.trainer.gradients,
            f_optimizer=tiny.f_optimizer,
        )
    finally:
        del tiny.d_optimizer.step, tiny.g_optimizer.step, tiny.f_optimizer.step
    n = tiny.settings["n_critic"]
    assert calls == ["d"] * n + ["g", "f"] and len(losses) == n + 1 and all(math.isfinite(v) for v in losses)
    assert all(p.requires_grad for p in d_image.parameters())  # discriminators unfrozen again
    assert any(not torch.equal(a, p) for a, p in zip(before, tiny.networks["generator"].parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(before_f, tiny.networks["report_decoder"].parameters()))


def test_fit_memory_line_recovers_fixed_and_per_item_terms() -> None:
    fixed, per_item = fit_memory_line([1, 2, 4, 8], [300.0 + 25.0 * b for b in (1, 2, 4, 8)])
    assert fixed == pytest.approx(300.0) and per_item == pytest.approx(25.0)
    with pytest.raises(ValueError):
        fit_memory_line([4, 4], [1.0, 2.0])


REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO_ROOT / "scripts" / "benchmark_train.py"), *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_cli_shows_help_and_refuses_unknown_flags_before_any_work() -> None:
    shown = run_cli("--help", "--iterations", "1")
    assert shown.returncode == 0 and "--memory_batch_sizes" in shown.stdout
    refused = run_cli("--iterationz", "1", "--memory_sweep_preset", "None")
    assert refused.returncode != 0 and "--iterationz" in refused.stderr
    for run in (shown, refused):  # neither started the benchmark
        assert "iterations of the engine" not in run.stdout and "# Training benchmark" not in run.stdout


@pytest.mark.slow
def test_memory_sweep_measures_each_batch_in_a_fresh_process() -> None:
    """The sweep's points run in spawned processes (``bundle.benchmarks.sweep.sweep_point``) and fit a line."""
    sweep = memory_sweep("tiny", batch_sizes=(1, 2), num_threads=1, target_batch=8, gpus=2)
    assert [p["batch_size"] for p in sweep["points"]] == [1, 2]
    assert all(p["peak_memory_bytes"] > 0 and p["n_critic"] == 1 for p in sweep["points"])
    assert sweep["vocab_size"] == PRESETS["tiny"]["vocab_size"] and sweep["per_gpu_batch"] == 4
    assert sweep["target_bytes"] == pytest.approx(sweep["fixed_bytes"] + 8 * sweep["per_item_bytes"])
