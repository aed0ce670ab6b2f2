"""Tests of the EMIXER training handlers: resume equivalence through MONAI's checkpoint handlers and
:class:`RNGState`, the non-finite loss stop, TensorBoard scalars / sample grids / report tables."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from monai.handlers import CheckpointLoader, CheckpointSaver, TensorBoardStatsHandler
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_engine import _one_thread  # noqa: F401  (autouse fixture)
from test_engine import CLASS_NAMES, build_networks, collate, make_trainer, record_outputs, synthetic_pairs
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from bundle.data.tokenizer import ReportTokenizer
from bundle.training.handlers import (
    NonFiniteLossError,
    RNGState,
    StopOnNonFinite,
    TensorBoardSampleHandler,
    image_grid,
    prefix_keys,
    reports_markdown,
)

SWITCHES = {"ema_decay": 0.9}


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def loader() -> DataLoader:
    """8 items, batches of 4, shuffled with the global torch RNG: 2 iterations per epoch."""
    return DataLoader(synthetic_pairs(8, seed=5), batch_size=4, shuffle=True)


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path) -> None:
    seed_everything(7)
    straight = make_trainer(loader(), build_networks(0), max_epochs=2, **SWITCHES)
    expected = record_outputs(straight)
    straight.run()
    assert len(expected) == 4

    seed_everything(7)
    first = make_trainer(loader(), build_networks(0), max_epochs=1, **SWITCHES)
    saver = CheckpointSaver(str(tmp_path), first.checkpoint_dict(), save_interval=2, epoch_level=False, n_saved=1)
    saver.attach(first)
    first.run()
    files = list(tmp_path.glob("*.pt"))
    assert [f.name for f in files] == ["checkpoint_iteration=2.pt"]

    seed_everything(1234)  # another init and another random stream: the checkpoint must restore both
    resumed = make_trainer(loader(), build_networks(99), max_epochs=2, **SWITCHES)
    CheckpointLoader(str(files[0]), resumed.checkpoint_dict(), map_location="cpu").attach(resumed)
    iterations: list[int] = []
    resumed.add_event_handler(Events.ITERATION_COMPLETED, lambda e: iterations.append(e.state.iteration))
    outputs = record_outputs(resumed)
    resumed.run()
    assert iterations == [3, 4] and resumed.state.epoch == 2
    for got, want in zip(outputs, expected[2:]):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
    for a, b in zip(resumed.ema_generator.state_dict().values(), straight.ema_generator.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_rng_state_round_trip(tmp_path) -> None:
    seed_everything(3)
    path = tmp_path / "rng.pt"
    torch.save(RNGState().state_dict(), path)
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    seed_everything(4)
    RNGState().load_state_dict(torch.load(path, weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], again[0]) and np.array_equal(drawn[1], again[1]) and drawn[2] == again[2]


def test_non_finite_loss_stops_with_a_named_error_and_saves_nothing(tmp_path) -> None:
    batch = collate(synthetic_pairs(4, seed=1))
    trainer = make_trainer([batch, batch], max_epochs=2, joint_loss_weight=0.0)
    saver = CheckpointSaver(
        str(tmp_path), trainer.checkpoint_dict(), save_final=True, save_interval=1, epoch_level=False
    )
    trainer.report_discriminator.register_forward_hook(lambda module, args, out: out * float("nan"))
    StopOnNonFinite().attach(trainer)
    saver.attach(trainer)
    with pytest.raises(NonFiniteLossError, match=r"iteration 1 \(epoch 1\).*d_report=nan") as error:
        trainer.run()
    assert "d_image" not in str(error.value)  # only the broken terms are named
    assert trainer.state.iteration == 1
    assert not list(tmp_path.iterdir())  # neither the interval nor the final checkpoint of the broken state


def test_stop_on_non_finite_leaves_other_errors_alone(tmp_path) -> None:
    def fail(engine, batch):
        raise ValueError("broken batch")

    alone = Engine(fail)
    StopOnNonFinite().attach(alone)
    with pytest.raises(ValueError, match="broken batch"):  # not swallowed when no other handler re-raises
        alone.run([0], max_epochs=1)

    engine = Engine(fail)
    StopOnNonFinite().attach(engine)
    CheckpointSaver(str(tmp_path), {"net": torch.nn.Linear(1, 1)}, save_final=True).attach(engine)
    with pytest.raises(ValueError, match="broken batch"):
        engine.run([0], max_epochs=1)
    assert [f.name for f in tmp_path.iterdir()] == ["net_final_iteration=1.pt"]  # the final save still runs

    finite = Engine(lambda e, b: {"loss": 1.0, "other": torch.tensor([0.5, 2.0])})
    StopOnNonFinite().attach(finite)
    finite.run([0, 1], max_epochs=1)
    assert finite.state.iteration == 2


def tokenizer() -> ReportTokenizer:
    return ReportTokenizer.train(["There is pleural effusion. The heart is enlarged.", "No acute disease."], 1)


def test_tensorboard_losses_samples_and_reports(tmp_path) -> None:
    batch = collate(synthetic_pairs(4, seed=1))
    log_dir = tmp_path / "runs"
    writer = SummaryWriter(log_dir=str(log_dir))
    samples = TensorBoardSampleHandler(
        CLASS_NAMES, tokenizer(), summary_writer=writer, output_dir=str(tmp_path), interval=2, samples_per_label=2
    )
    handlers = [
        StopOnNonFinite(),
        TensorBoardStatsHandler(summary_writer=writer, output_transform=prefix_keys("train/")),
        samples,
    ]
    trainer = make_trainer([batch, batch], train_handlers=handlers, ema_decay=0.9)
    ProgressBar(persist=False).attach(trainer)
    outputs = record_outputs(trainer)
    trainer.run()
    writer.close()

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for key, value in outputs[-1].items():
        scalars = events.Scalars(f"train/{key}")
        assert [s.step for s in scalars] == [1, 2]
        assert scalars[-1].value == pytest.approx(value, rel=1e-5)
    (image,) = events.Images("samples/images")
    rows = len(CLASS_NAMES) + 1  # one row per class and one all-zero row, 2 samples each
    assert image.step == 2 and (image.height, image.width) == (2 + rows * 34, 2 + 2 * 34)
    assert "samples/reports/text_summary" in tags["tensors"]
    (text,) = events.Tensors("samples/reports/text_summary")
    table = text.tensor_proto.string_val[0].decode()
    assert table.startswith("| # | labels | report |") and "| Cardiomegaly |" in table
    assert len(table.splitlines()) == 2 + 2 * rows

    png = tmp_path / "samples" / "samples_iteration_0000002.png"
    assert Image.open(png).size == (image.width, image.height)
    assert (tmp_path / "samples" / "samples_iteration_0000002.md").read_text().strip() == table


def test_sample_handler_is_fixed_and_leaves_training_state_alone(tmp_path) -> None:
    networks = build_networks(0)
    trainer = make_trainer([collate(synthetic_pairs(4))], networks, ema_decay=0.5)
    handler = TensorBoardSampleHandler(CLASS_NAMES, tokenizer(), log_dir=str(tmp_path), seed=3)
    rng = torch.get_rng_state()
    images, reports, labels = handler.generate(trainer)
    assert torch.equal(torch.get_rng_state(), rng)  # the training random stream is untouched
    assert networks["generator"].training and networks["report_decoder"].training  # modes restored
    assert images.shape == (4 * (len(CLASS_NAMES) + 1), 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert len(reports) == images.shape[0] and all(isinstance(r, str) for r in reports)
    assert torch.equal(labels[:4], torch.tensor([[1.0, 0, 0]]).repeat(4, 1)) and labels[-1].sum() == 0
    again, _, _ = handler.generate(trainer)
    assert torch.equal(images, again)  # fixed z and labels
    with torch.no_grad():  # it samples with the EMA copy when the trainer has one
        trainer.ema_generator.output_conv.bias.add_(0.5)
    flipped, _, _ = handler.generate(trainer)
    assert not torch.allclose(flipped, images)
    handler.close()


def test_grid_and_table_helpers() -> None:
    images = torch.stack([torch.full((1, 2, 2), v) for v in (0.0, 0.25, 0.5)])
    grid = image_grid(images, columns=2, padding=1, pad_value=1.0)
    assert grid.shape == (1, 7, 7) and grid[0, 1, 4] == 0.25 and grid[0, 4, 1] == 0.5 and grid[0, 4, 4] == 1.0
    table = reports_markdown([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], ["a | b.", ""], CLASS_NAMES)
    assert table.splitlines()[2:] == [
        "| 0 | Pleural Effusion, Lung Lesion | a \\| b. |",
        "| 1 | (no class) | (empty) |",
    ]
