"""Export of G and F: the wrappers, ONNX (onnxruntime) and torch.export round trips with a dynamic batch, the
spectral-norm folding that leaves the caller's network alone, EMA pick-up from a training checkpoint, and MONAI's
own ckpt_export / verify_net_in_out driving GeneratorExport from a bundle config."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from bundle.data.errors import DataError
from bundle.data.tokenizer import END, PAD
from bundle.export import (
    GeneratorExport,
    ReportDecoderExport,
    export_onnx,
    export_program,
    export_torch,
    fold_spectral_norm_state,
    load_generator_from_checkpoint,
    load_torch,
    run_onnx,
)
from bundle.networks import Generator, ReportDecoder
from bundle.networks.layers import has_spectral_norm

REPO_ROOT = Path(__file__).resolve().parents[1]
LATENT, K, SIZE = 80, 7, 32  # 32 px: 4 chunks of 20 (the 4x4 grid and three up blocks)
VOCAB, S, W = 30, 2, 4
GENERATOR_ARGS = {
    "latent_dim": LATENT,
    "num_classes": K,
    "image_size": SIZE,
    "base_channels": 8,
    "attention_resolution": 16,
}


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine a busy second thread makes the orthogonal init's QR of
    these tiny matrices hundreds of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _spectral_norm_count(network: nn.Module) -> int:
    return sum(has_spectral_norm(m) for m in network.modules())


def _trained_like_generator(seed: int) -> Generator:
    """A tiny G whose BatchNorm statistics and spectral-norm vectors have moved off their initial values, so that
    eval mode, running statistics and the folded sigma all matter."""
    torch.manual_seed(seed)
    g = Generator(**GENERATOR_ARGS).train()
    with torch.no_grad():
        for _ in range(3):
            g(torch.randn(6, LATENT), torch.randint(0, 2, (6, K)).float())
    return g


def _latent(batch: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (batch, K), generator=gen).float()
    return torch.cat([torch.randn(batch, LATENT, generator=gen), labels], dim=1)


def _images(batch: int, seed: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _random_decoder(seed: int, **kwargs: Any) -> ReportDecoder:
    """A tiny F with large random weights (std 0.7), so that greedy reports differ from image to image."""
    torch.manual_seed(seed)
    sizes = {"encoder_features": 16, "embed_dim": 16, "sentence_hidden": 16, "topic_dim": 16, "word_hidden": 16}
    f = ReportDecoder(VOCAB, max_sentences=S, max_words=W, encoder="small", **sizes, **kwargs)
    with torch.no_grad():
        for module in f.modules():
            if isinstance(module, (nn.Linear, nn.LSTM, nn.LSTMCell, nn.Embedding)):
                for p in module.parameters():
                    p.normal_(0.0, 0.7)
    return f


@pytest.fixture(scope="module")
def generator() -> Generator:
    return _trained_like_generator(0)


@pytest.fixture(scope="module")
def decoder() -> ReportDecoder:
    """A tiny F with large random weights, ``<end>`` favoured and the first stop threshold between the middle
    images, so that greedy reports differ per image, end early and stop after different numbers of sentences (the
    masks that export must keep)."""
    f = _random_decoder(2, word_layers=2)
    with torch.no_grad():
        f.word_out.bias[END] += 1.0
        _, stop_logits = f.eval().sentences(_images(6), S)
        first = stop_logits[:, 0].sort().values  # threshold between the middle images: half stop after one sentence
        f.stop.bias -= (first[2] + first[3]) / 2
    return f


@pytest.fixture(scope="module")
def exported(generator: Generator, decoder: ReportDecoder, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each wrapper exported once (from a batch of 2) and written to ONNX and to a torch.export file."""
    out = tmp_path_factory.mktemp("export")
    g_export, f_export = GeneratorExport(generator), ReportDecoderExport(decoder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation / LSTM attribute notices
        g_program, f_program = export_program(g_export, _latent(2)), export_program(f_export, _images(2))
        paths = {
            # graph optimiser on the decoder only (the harder graph), to keep this file fast
            "g_onnx": export_onnx(g_program, _latent(2), out / "generator.onnx", ["latent"], ["image"], optimize=False),
            "f_onnx": export_onnx(f_program, _images(2), out / "decoder.onnx", ["images"], ["tokens", "num_sentences"]),
            "g_pt2": export_torch(g_program, _latent(2), out / "generator.pt2"),
            "f_pt2": export_torch(f_program, _images(2), out / "decoder.pt2"),
        }
    return {"generator": g_export, "decoder": f_export, **paths}


def test_generator_export_folds_spectral_norm_on_a_copy(generator: Generator) -> None:
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    n_sn = _spectral_norm_count(generator)
    assert n_sn > 0
    wrapped = GeneratorExport(generator)
    assert _spectral_norm_count(wrapped) == 0
    assert not wrapped.training and not any(p.requires_grad for p in wrapped.parameters())
    # the caller's network keeps its spectral norm, mode and weights
    assert _spectral_norm_count(generator) == n_sn and generator.training
    after = generator.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    # folding changes no output: the eval-mode G on (z, labels) equals the wrapper on [z, labels]
    x = _latent(3)
    reference = Generator(**GENERATOR_ARGS)
    reference.load_state_dict(generator.state_dict())
    with torch.no_grad():
        expected = reference.eval()(x[:, :LATENT], x[:, LATENT:])
        image = wrapped(x)
    assert image.shape == (3, 3, SIZE, SIZE)
    torch.testing.assert_close(image, expected, rtol=1e-5, atol=1e-6)
    assert image.abs().max() <= 1.0
    wrapped.train()
    assert not wrapped.training  # an exported network never updates BatchNorm statistics
    with pytest.raises(ValueError, match="latent_dim \\+ num_classes"):
        wrapped(torch.randn(2, LATENT))


def test_make_latent_puts_z_then_labels(generator: Generator) -> None:
    wrapped = GeneratorExport(generator)
    labels, z = torch.tensor([[1.0, 0, 0, 1, 0, 0, 1]]), torch.randn(1, LATENT)
    x = wrapped.make_latent(labels, z)
    assert torch.equal(x[:, :LATENT], z) and torch.equal(x[:, LATENT:], labels)
    assert wrapped.make_latent(labels).shape == (1, LATENT + K)


def test_fold_spectral_norm_state_matches_the_folded_network(generator: Generator) -> None:
    folded = fold_spectral_norm_state(generator.state_dict())
    assert not any("parametrizations" in key for key in folded)
    expected = GeneratorExport(generator).network.state_dict()
    assert folded.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(folded[key], expected[key])


def test_generator_onnx_matches_eager_for_other_batch_sizes(exported: dict) -> None:
    for batch in (1, 5):
        x = _latent(batch, seed=batch)
        with torch.no_grad():
            expected = exported["generator"](x)
        (image,) = run_onnx(exported["g_onnx"], x)
        assert image.shape == (batch, 3, SIZE, SIZE)
        torch.testing.assert_close(image, expected, rtol=1e-4, atol=1e-5)


def test_generator_torch_export_matches_eager_for_other_batch_sizes(exported: dict) -> None:
    program = load_torch(exported["g_pt2"])
    for batch in (1, 4):
        x = _latent(batch, seed=10 + batch)
        with torch.no_grad():
            torch.testing.assert_close(program(x), exported["generator"](x), rtol=1e-5, atol=1e-6)


def test_decoder_fixture_exercises_the_masks(exported: dict) -> None:
    tokens, num_sentences = exported["decoder"](_images(6))
    assert len(set(num_sentences.tolist())) > 1, "fixture no longer varies the number of sentences"
    in_report = torch.arange(S)[None] < num_sentences[:, None]
    ended_early = ((tokens == END)[..., :-1] & in_report[..., None]).any()
    assert ended_early, "fixture no longer ends a sentence before its last word"
    assert (tokens[~in_report] == PAD).all()


def test_report_decoder_onnx_matches_eager_for_other_batch_sizes(exported: dict) -> None:
    for batch in (6, 1):
        images = _images(batch, seed=20 + batch)
        expected_tokens, expected_n = exported["decoder"](images)
        tokens, num_sentences = run_onnx(exported["f_onnx"], images)
        assert tokens.dtype == torch.int64 and num_sentences.dtype == torch.int64
        assert tokens.shape == (batch, S, W) and num_sentences.shape == (batch,)
        assert torch.equal(tokens, expected_tokens) and torch.equal(num_sentences, expected_n)


def test_report_decoder_torch_export_matches_eager(exported: dict) -> None:
    program = load_torch(exported["f_pt2"])
    images = _images(6, seed=30)
    for got, expected in zip(program(images), exported["decoder"](images)):
        assert torch.equal(got, expected)


def test_report_decoder_export_matches_greedy_decode(decoder: ReportDecoder) -> None:
    images = _images(4, seed=40)
    tokens, num_sentences = ReportDecoderExport(decoder)(images)
    reference = decoder.eval().greedy_decode(images)
    assert torch.equal(tokens, reference["tokens"]) and torch.equal(num_sentences, reference["num_sentences"])


def _label_conditioned_decoder() -> ReportDecoder:
    """A tiny label-conditioned F (the demo's kind) whose reports depend on the labels it is given."""
    return _random_decoder(5, num_classes=K, topic_every_step=True, label_conditioned=True).eval()


def test_label_conditioned_decoder_exports_with_its_labels(tmp_path: Path) -> None:
    """``with_labels``: the exported F (ONNX and torch.export, other batch sizes) writes from the given labels,
    exactly as ``greedy_decode(images, labels)``; other labels give other reports."""
    f = _label_conditioned_decoder()
    wrapped = ReportDecoderExport(f, with_labels=True)
    gen = torch.Generator().manual_seed(6)
    labels = torch.randint(0, 2, (6, K), generator=gen).float()
    images = _images(6, seed=50)
    tokens, num_sentences = wrapped(images, labels)
    reference = f.greedy_decode(images, labels)
    assert torch.equal(tokens, reference["tokens"]) and torch.equal(num_sentences, reference["num_sentences"])
    assert not torch.equal(tokens, wrapped(images, 1 - labels)[0]), "the labels do not change the reports"
    example = (_images(2), labels[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = export_program(wrapped, example)
        onnx_path = export_onnx(program, example, tmp_path / "f.onnx", ["images", "labels"], optimize=False)
        pt2_path = export_torch(program, example, tmp_path / "f.pt2")
    for batch in (6, 1):
        x, y = images[:batch], labels[:batch]
        expected = wrapped(x, y)
        for got in (run_onnx(onnx_path, (x, y)), load_torch(pt2_path)(x, y)):
            assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_report_decoder_export_labels_errors(decoder: ReportDecoder) -> None:
    with pytest.raises(ValueError, match="label_conditioned"):
        ReportDecoderExport(decoder, with_labels=True)
    with pytest.raises(ValueError, match="pass labels"):
        ReportDecoderExport(_label_conditioned_decoder(), with_labels=True)(_images(2))


def _checkpoint(tmp_path: Path, with_ema: bool = True) -> tuple[Path, Generator, Generator]:
    """A training checkpoint as MONAI's CheckpointSaver writes it: a dict of state dicts."""
    g, ema = _trained_like_generator(3), _trained_like_generator(4)
    state = {"trainer": {"epoch": 1, "iteration": 7}, "generator": g.state_dict(), "image_discriminator": {}}
    if with_ema:
        state["ema_generator"] = ema.state_dict()
    path = tmp_path / "checkpoint_final.pt"
    torch.save(state, path)
    return path, g, ema


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_load_generator_from_checkpoint_picks_the_ema_weights(tmp_path: Path) -> None:
    path, g, ema = _checkpoint(tmp_path)
    fresh = load_generator_from_checkpoint(path, Generator(**GENERATOR_ARGS))
    assert _same_weights(fresh, ema) and not _same_weights(fresh, g)
    # into an export wrapper (spectral norm folded on load): the same images as the EMA generator's
    wrapped = load_generator_from_checkpoint(path, GeneratorExport(Generator(**GENERATOR_ARGS)))
    x = _latent(2)
    torch.testing.assert_close(wrapped(x), GeneratorExport(ema)(x))
    # a plain state dict (a released models/model.pt) loads as it is
    plain = load_generator_from_checkpoint(ema.state_dict(), Generator(**GENERATOR_ARGS))
    assert _same_weights(plain, ema)


def test_load_generator_from_checkpoint_falls_back_to_the_generator(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, g, _ = _checkpoint(tmp_path, with_ema=False)
    with caplog.at_level(logging.INFO, logger="bundle.export"):
        fresh = load_generator_from_checkpoint(path, Generator(**GENERATOR_ARGS))
    assert _same_weights(fresh, g)
    assert "ema_generator" in caplog.text and "generator" in caplog.text


def test_load_generator_from_checkpoint_names_bad_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="broken.pt"):
        load_generator_from_checkpoint(broken, Generator(**GENERATOR_ARGS))
    no_generator = tmp_path / "discriminators.pt"
    torch.save({"image_discriminator": {"w": torch.zeros(1)}, "trainer": {"epoch": 1}}, no_generator)
    with pytest.raises(DataError, match="neither 'ema_generator' nor 'generator'"):
        load_generator_from_checkpoint(no_generator, Generator(**GENERATOR_ARGS))
    path, _, _ = _checkpoint(tmp_path)
    other = Generator(**{**GENERATOR_ARGS, "base_channels": 4})
    with pytest.raises(DataError, match="do not fit"):
        load_generator_from_checkpoint(path, other)


def test_monai_ckpt_export_and_verify_net_in_out_drive_generator_export(tmp_path: Path) -> None:
    """The packaging path: MONAI builds GeneratorExport from a config, loads the checkpoint's EMA entry into it
    (spectral-norm keys folded on load), traces it to TorchScript, and checks it against the metadata."""
    from monai.bundle import ckpt_export, verify_net_in_out

    path, _, ema = _checkpoint(tmp_path)
    config = {
        "generator": {"_target_": "bundle.networks.Generator", **GENERATOR_ARGS},
        "network_def": {"_target_": "bundle.export.GeneratorExport", "generator": "@generator"},
    }
    config_file = tmp_path / "export.json"
    config_file.write_text(json.dumps(config))
    meta = json.loads((REPO_ROOT / "configs" / "metadata.json").read_text())
    latent = meta["network_data_format"]["inputs"]["latent"]
    latent["num_channels"] = LATENT + K
    meta["network_data_format"]["outputs"]["pred"]["spatial_shape"] = [SIZE, SIZE]
    meta_file = tmp_path / "metadata.json"
    meta_file.write_text(json.dumps(meta))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript tracer notices
        ckpt_export(
            net_id="network_def",
            filepath=str(tmp_path / "model.ts"),
            ckpt_file=str(path),
            meta_file=str(meta_file),
            config_file=str(config_file),
            key_in_ckpt="ema_generator",
            use_trace=True,
            input_shape=[2, LATENT + K],
        )
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    x = _latent(3)
    torch.testing.assert_close(scripted(x), GeneratorExport(ema)(x))
    # MONAI's verify_net_in_out reads inputs#image; the latent entry stands in for it
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(meta_file),
        config_file=str(config_file),
        device="cpu",
        **{"_meta_#network_data_format#inputs#image": latent},
    )


def test_exporting_twice_leaves_the_caller_network_working(generator: Generator) -> None:
    """torch shares a parametrized layer's class between a network and its deep copy; folding the copy must not
    strip the original's weights (a second wrapper, or the caller's own forward, would then fail)."""
    x = _latent(2)
    with torch.no_grad():
        expected = GeneratorExport(generator)(x)
        again = GeneratorExport(generator)(x)
        generator.eval()
        direct = generator(x[:, :LATENT], x[:, LATENT:])
        generator.train()
    torch.testing.assert_close(again, expected)
    torch.testing.assert_close(direct, expected, rtol=1e-5, atol=1e-6)
    assert all(has_spectral_norm(m) for m in generator.modules() if parametrize.is_parametrized(m))
