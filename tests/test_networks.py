"""Tests of the EMIXER networks at tiny sizes: shapes, ranges, spectral norm, gradient paths, masking, errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bundle.data.errors import DataError
from bundle.losses import generator_loss, rotate_batch, rotation_loss
from bundle.networks import Generator, ImageDiscriminator, JointDiscriminator, ReportDecoder, ReportDiscriminator
from bundle.networks.layers import END_ID, PAD_ID, START_ID, has_spectral_norm, remove_spectral_norm
from bundle.networks.report_decoder import report_loss, stop_targets

VOCAB, S, W, K = 50, 3, 6, 7
TINY_TEXT = {"embed_dim": 16, "hidden": 24}
TINY_DECODER = {
    "max_sentences": S,
    "max_words": W,
    "encoder": "small",
    "encoder_features": 32,
    "embed_dim": 16,
    "sentence_hidden": 32,
    "topic_dim": 32,
    "word_hidden": 32,
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def make_report(batch: int, num_sentences: list[int], s: int = S, w: int = W) -> torch.Tensor:
    """Report tokens in the contract's layout: words (ids >= 4), <end>, pads; empty rows after the report."""
    tokens = torch.full((batch, s, w), PAD_ID, dtype=torch.long)
    for b in range(batch):
        for i in range(num_sentences[b]):
            length = int(torch.randint(1, w, ()))
            tokens[b, i, :length] = torch.randint(4, VOCAB, (length,))
            tokens[b, i, length] = END_ID
    return tokens


def linear_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def labels(batch: int) -> torch.Tensor:
    y = torch.zeros(batch, K)
    y[0, [1, 4]] = 1.0
    return y


@pytest.mark.parametrize("image_size,attention", [(32, 16), (64, 32), (128, 64)])
def test_generator_shape_and_range(image_size: int, attention: int) -> None:
    g = Generator(latent_dim=120, num_classes=K, image_size=image_size, base_channels=8, attention_resolution=attention)
    image = g(torch.randn(3, 120), labels(3))
    assert image.shape == (3, 3, image_size, image_size)
    assert image.abs().max() <= 1.0 and image.std() > 0.05
    assert len(g.blocks) + 1 == 120 // g.chunk_size
    assert len(g.attention) == 1


def test_generator_grey_and_label_conditioning() -> None:
    g = Generator(latent_dim=60, image_size=32, out_channels=1, base_channels=8, attention_resolution=None).eval()
    z = torch.randn(2, 60)
    a, b = g(z, labels(2)), g(z, torch.zeros(2, K))
    assert a.shape == (2, 1, 32, 32)
    assert not torch.allclose(a[0], b[0])  # labels change item 0 ...
    assert torch.allclose(a[1], b[1])  # ... and not item 1, whose labels are zero in both


def test_generator_invalid_config_names_keys() -> None:
    with pytest.raises(ValueError, match=r"latent_dim=100.*image_size=128"):
        Generator(latent_dim=100, image_size=128, base_channels=8)
    with pytest.raises(ValueError, match=r"latent_dim=120.*chunk_size=20"):
        Generator(latent_dim=120, chunk_size=20, image_size=64, base_channels=8)
    with pytest.raises(ValueError, match="attention_resolution=64"):
        Generator(image_size=32, base_channels=8, attention_resolution=64)
    with pytest.raises(ValueError, match="image_size=100"):
        Generator(image_size=100, base_channels=8)
    with pytest.raises(ValueError, match="channel_multipliers"):
        Generator(latent_dim=80, image_size=32, base_channels=8, channel_multipliers=[4, 4], attention_resolution=None)


@pytest.mark.parametrize("image_size", [32, 64])
def test_image_discriminator_outputs(image_size: int) -> None:
    d = ImageDiscriminator(image_size=image_size, base_channels=8, attention_resolution=image_size // 2).eval()
    x = torch.rand(4, 3, image_size, image_size) * 2 - 1
    y = torch.zeros(4, K)
    y[:2, 2] = 1.0
    logits, rotation = d(x, y, return_rotation=True)
    assert logits.shape == (4,) and rotation.shape == (4, 4)
    assert torch.allclose(rotation, d.rotation_logits(x)) and torch.allclose(logits, d(x, y))
    unconditional = d(x)
    assert torch.allclose(unconditional, d(x, torch.zeros(4, K)))  # all-zero rows: no projection term
    assert torch.allclose(logits[2:], unconditional[2:]) and not torch.allclose(logits[:2], unconditional[:2])
    assert d.features(x).shape == (4, d.trunk.out_channels)


def test_spectral_norm_placement() -> None:
    g = Generator(latent_dim=80, image_size=32, base_channels=8, attention_resolution=16)
    d = ImageDiscriminator(image_size=32, base_channels=8, attention_resolution=16)
    j = JointDiscriminator(VOCAB, image_size=32, base_channels=8, joint_hidden=16, **TINY_TEXT)
    r = ReportDiscriminator(VOCAB, mlp_hidden=16, **TINY_TEXT)
    for net in (g, d, j, r):
        layers = linear_layers(net)
        assert len(layers) >= 2
        for name, layer in layers:
            assert has_spectral_norm(layer) == (name != "label_embedding"), name
        for module in net.modules():
            if isinstance(module, (nn.LSTM, nn.Embedding)):
                assert not hasattr(module, "parametrizations")
    assert not has_spectral_norm(g.label_embedding)
    plain = Generator(latent_dim=80, image_size=32, base_channels=8, attention_resolution=16, spectral_norm=False)
    assert not any(has_spectral_norm(m) for _, m in linear_layers(plain))


def test_remove_spectral_norm_folds_weights() -> None:
    d = ImageDiscriminator(image_size=32, base_channels=8, attention_resolution=16)
    x = torch.randn(2, 3, 32, 32)
    d(x)  # one training-mode pass updates the power-iteration vectors
    d.eval()
    before = d(x, labels(2))
    folded = remove_spectral_norm(copy.deepcopy(d))
    assert not any(has_spectral_norm(m) for m in folded.modules())
    assert torch.allclose(folded(x, labels(2)), before, atol=1e-5)
    # Folding the copy leaves the original intact (deepcopy shares torch's parametrized classes).
    assert any(has_spectral_norm(m) for m in d.modules())
    assert torch.allclose(d(x, labels(2)), before, atol=1e-6)


def test_report_discriminator_ids_equal_one_hots_and_masks_pads() -> None:
    r = ReportDiscriminator(VOCAB, mlp_hidden=16, **TINY_TEXT)
    tokens = make_report(3, [3, 1, 2])
    from_ids = r(tokens)
    assert from_ids.shape == (3,)
    assert torch.allclose(r(F.one_hot(tokens, VOCAB).float()), from_ids, atol=1e-6)
    longer = torch.full((3, S + 2, W + 3), PAD_ID, dtype=torch.long)
    longer[:, :S, :W] = tokens
    assert torch.allclose(r(longer), from_ids, atol=1e-6)  # trailing pads change nothing
    changed = tokens.clone()
    changed[1, 0, 0] = (changed[1, 0, 0] + 1 - 4) % (VOCAB - 4) + 4
    out = r(changed)
    assert not torch.isclose(out[1], from_ids[1]) and torch.allclose(out[[0, 2]], from_ids[[0, 2]])


def test_joint_discriminator_shape_and_one_hots() -> None:
    j = JointDiscriminator(VOCAB, image_size=64, base_channels=8, joint_hidden=16, **TINY_TEXT)
    x = torch.randn(2, 3, 64, 64)
    tokens = make_report(2, [2, 3])
    out = j(x, tokens)
    assert out.shape == (2,)
    assert torch.allclose(j(x, F.one_hot(tokens, VOCAB).float()), out, atol=1e-6)
    assert not torch.allclose(j(x.flip(0), tokens), out)


@pytest.mark.parametrize("topic_every_step", [False, True])
def test_decoder_teacher_forcing_shapes_and_causality(topic_every_step: bool) -> None:
    f = ReportDecoder(VOCAB, topic_every_step=topic_every_step, **TINY_DECODER).eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = make_report(2, [3, 2])
    word_logits, stop_logits = f(x, tokens)
    assert word_logits.shape == (2, S, W, VOCAB) and stop_logits.shape == (2, S)
    changed = tokens.clone()
    changed[:, :, 2] = 7
    changed_logits, _ = f(x, changed)
    assert torch.allclose(changed_logits[:, :, :3], word_logits[:, :, :3])  # word j sees words < j only
    assert not torch.allclose(changed_logits[:, :, 3], word_logits[:, :, 3])


def test_report_loss_masks_pads_and_stop_targets() -> None:
    assert stop_targets(torch.tensor([2, 1, 4]), 4).tolist() == [[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]]
    tokens = make_report(2, [2, 1])
    word_logits, stop_logits = torch.randn(2, S, W, VOCAB), torch.randn(2, S)
    loss = report_loss(word_logits, stop_logits, tokens, torch.tensor([2, 1]))
    noisy = word_logits + 5 * torch.randn_like(word_logits) * (tokens == PAD_ID)[..., None]
    assert torch.allclose(report_loss(noisy, stop_logits, tokens)["loss"], loss["loss"])  # pads ignored
    expected = F.cross_entropy(word_logits[tokens != PAD_ID], tokens[tokens != PAD_ID])
    assert torch.allclose(loss["word_loss"], expected)


def test_decoder_overfits_two_examples() -> None:
    f = ReportDecoder(VOCAB, **dict(TINY_DECODER, sentence_hidden=64, topic_dim=64, word_hidden=64))
    x, tokens = torch.randn(2, 3, 32, 32), make_report(2, [3, 2])
    optimizer = torch.optim.Adam(f.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = f.loss(x, tokens)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("topic_every_step", [False, True])
def test_greedy_decoding_follows_the_teacher_forced_model(topic_every_step: bool) -> None:
    """Free-running and teacher-forced decoding are one model: re-reading its own greedy report, F predicts each
    word it wrote (so the word LSTM gets the same inputs on both paths)."""
    f = ReportDecoder(VOCAB, topic_every_step=topic_every_step, **TINY_DECODER).eval()
    x = torch.randn(3, 3, 32, 32)
    out = f.greedy_decode(x)
    word_logits, _ = f(x, out["tokens"])
    predicted = word_logits.masked_fill(f.never_generated, float("-inf")).argmax(-1)
    written = out["tokens"] != PAD_ID
    assert written.any() and torch.equal(predicted[written], out["tokens"][written])


def test_topic_every_step_feeds_the_topic_to_every_word() -> None:
    """With ``topic_every_step`` the word LSTM reads [word, topic] at each step; without, the topic once."""
    every = ReportDecoder(VOCAB, topic_every_step=True, **TINY_DECODER)
    once = ReportDecoder(VOCAB, **TINY_DECODER)
    embed = TINY_DECODER["embed_dim"]
    assert every.word_lstm.input_size == 2 * embed and once.word_lstm.input_size == embed
    tokens = make_report(1, [2])
    topics = torch.randn(1, S, embed, requires_grad=True)
    late = torch.zeros(1, S, W, dtype=torch.bool)
    late[..., 3:] = True  # words far from the start: the topic reaches them directly only when fed every step
    grad = torch.autograd.grad(every._teacher_forced_words(topics, tokens)[late].sum(), topics)[0]
    assert grad.abs().sum() > 0
    every.eval()
    with torch.no_grad():  # moving only the topic half of the input weights moves every word's logits
        base = every._teacher_forced_words(topics, tokens)
        every.word_lstm.weight_ih_l0[:, embed:].add_(0.5)
        moved = every._teacher_forced_words(topics, tokens)
    assert not torch.allclose(base[:, :, -1], moved[:, :, -1])


@pytest.mark.parametrize("topic_every_step", [False, True])
@pytest.mark.parametrize("gumbel,hard", [(True, True), (True, False), (False, True)])
def test_decoder_sample_layout(gumbel: bool, hard: bool, topic_every_step: bool) -> None:
    f = ReportDecoder(VOCAB, topic_every_step=topic_every_step, **TINY_DECODER)
    out = f.sample(torch.randn(4, 3, 32, 32), gumbel=gumbel, hard=hard)
    probs, tokens, n = out["word_probs"], out["tokens"], out["num_sentences"]
    assert probs.shape == (4, S, W, VOCAB) and tokens.shape == (4, S, W) and tokens.dtype == torch.long
    assert out["stop_probs"].shape == (4, S) and ((n >= 1) & (n <= S)).all()
    assert torch.equal(probs.argmax(-1), tokens)
    assert torch.allclose(probs.sum(-1), torch.ones(4, S, W), atol=1e-5)
    for b in range(4):
        assert (tokens[b, n[b] :] == PAD_ID).all()
        for row in tokens[b, : n[b]]:
            ends = (row == END_ID).nonzero()
            real = row if len(ends) == 0 else row[: ends[0] + 1]
            assert (real != PAD_ID).all() and (real != START_ID).all()
            assert (row[len(real) :] == PAD_ID).all()


def test_greedy_decode_is_deterministic() -> None:
    f = ReportDecoder(VOCAB, **TINY_DECODER).eval()
    x = torch.randn(2, 3, 32, 32)
    first, second = f.greedy_decode(x), f.greedy_decode(x)
    assert torch.equal(first["tokens"], second["tokens"]) and not first["word_probs"].requires_grad


def test_decoder_densenet121_encoder_shape() -> None:
    settings = dict(TINY_DECODER, encoder="densenet121")
    f = ReportDecoder(VOCAB, in_channels=1, **settings)
    word_logits, stop_logits = f(torch.randn(2, 1, 64, 64), make_report(2, [1, 3]))
    assert word_logits.shape == (2, S, W, VOCAB) and stop_logits.shape == (2, S)
    assert sum(p.numel() for p in f.encoder.parameters()) > 6_000_000  # the real DenseNet-121


def test_decoder_pretrained_encoder(tmp_path) -> None:
    source = ReportDecoder(VOCAB, **TINY_DECODER)
    path = tmp_path / "encoder.pt"
    torch.save(source.encoder.state_dict(), path)
    loaded = ReportDecoder(VOCAB, pretrained_encoder_path=str(path), **TINY_DECODER)
    for a, b in zip(source.encoder.state_dict().values(), loaded.encoder.state_dict().values()):
        assert torch.equal(a, b)
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        ReportDecoder(VOCAB, pretrained_encoder_path=str(bad), **TINY_DECODER)


def test_gradients_reach_generator_from_every_term() -> None:
    g = Generator(latent_dim=80, num_classes=K, image_size=32, base_channels=8, attention_resolution=16)
    d = ImageDiscriminator(num_classes=K, image_size=32, base_channels=8, attention_resolution=16)
    f = ReportDecoder(VOCAB, **TINY_DECODER)
    r = ReportDiscriminator(VOCAB, mlp_hidden=16, **TINY_TEXT)
    j = JointDiscriminator(VOCAB, image_size=32, base_channels=8, joint_hidden=16, **TINY_TEXT)
    first = g.linear.parametrizations.weight.original
    z, y = torch.randn(2, 80), labels(2)

    def image_term(x):
        return generator_loss(d(x, y))

    def rotation_term(x):
        return rotation_loss(d.rotation_logits(rotate_batch(x)[0]), rotate_batch(x)[1])

    def report_term(x):  # through F's Gumbel sampling only
        return generator_loss(r(f.sample(x)["word_probs"]))

    def joint_report_term(x):  # the joint discriminator's report branch alone
        return generator_loss(j(x.detach(), f.sample(x)["word_probs"]))

    def joint_term(x):
        return generator_loss(j(x, f.sample(x)["word_probs"]))

    for term in (image_term, rotation_term, report_term, joint_report_term, joint_term):
        g.zero_grad(set_to_none=True)
        term(g(z, y)).backward()
        grad = first.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, term.__name__


def test_image_discriminator_class_head_shares_the_forward_pass() -> None:
    d = ImageDiscriminator(image_size=32, base_channels=8, attention_resolution=None, class_head=True).eval()
    x, y = torch.rand(3, 3, 32, 32) * 2 - 1, labels(3)
    logits, rotation, classes = d(x, y, return_rotation=True, return_class=True)
    assert classes.shape == (3, K) and torch.allclose(classes, d.class_logits(d.features(x)))
    assert torch.allclose(logits, d(x, y)) and torch.allclose(rotation, d.rotation_logits(x))
    only_logits, only_classes = d(x, y, return_class=True)
    assert torch.allclose(only_logits, logits) and torch.allclose(only_classes, classes)
    assert not has_spectral_norm(d.classifier)  # a plain head: BCE needs confident logits
    with pytest.raises(RuntimeError, match="class_head"):
        ImageDiscriminator(image_size=32, base_channels=8, attention_resolution=None)(x, y, return_class=True)


def test_decoder_label_head_conditions_the_sentences_and_is_trained() -> None:
    f = ReportDecoder(VOCAB, num_classes=K, **TINY_DECODER).eval()  # BatchNorm on running stats: rows independent
    x, tokens, y = torch.randn(2, 3, 32, 32), make_report(2, [3, 2]), labels(2)
    assert f.label_logits(x).shape == (2, K)
    topics, stops = f.sentences(x, S)
    with torch.no_grad():  # the sentence LSTM reads the head's probabilities: moving the head moves the topics
        f.label_head.bias.add_(3.0)
    moved, _ = f.sentences(x, S)
    assert not torch.allclose(topics, moved)
    losses = f.loss(x, tokens, labels=y)
    plain = f.loss(x, tokens)
    assert "label_loss" not in plain and torch.allclose(losses["loss"], plain["loss"] + losses["label_loss"])
    expected = F.binary_cross_entropy_with_logits(f.label_logits(x), y)
    assert torch.allclose(losses["label_loss"], expected)
    # unlabelled rows do not count
    only_first = f.loss(x, tokens, labels=y, labelled=torch.tensor([1.0, 0.0]))["label_loss"]
    assert torch.allclose(only_first, F.binary_cross_entropy_with_logits(f.label_logits(x[:1]), y[:1]))
    assert torch.autograd.grad(losses["label_loss"], f.label_head.weight)[0].abs().sum() > 0
    with pytest.raises(RuntimeError, match="num_classes=0"):
        ReportDecoder(VOCAB, **TINY_DECODER).label_logits(x)


def test_label_conditioned_decoder_learns_from_the_true_labels_of_labelled_rows() -> None:
    """``label_conditioned``: in the teacher-forced loss the sentences read the true findings of labelled rows
    (the head still learns them from its BCE); unlabelled rows read the head's predictions."""
    f = ReportDecoder(VOCAB, num_classes=K, label_conditioned=True, **TINY_DECODER).eval()
    x, tokens, y = torch.randn(2, 3, 32, 32), make_report(2, [3, 2]), labels(2)
    head = f.label_head.weight

    def word_grad(labelled: torch.Tensor) -> torch.Tensor:
        loss = f.loss(x, tokens, labels=y, labelled=labelled)["word_loss"]
        return torch.autograd.grad(loss, head, allow_unused=True)[0]

    labelled_grad = word_grad(torch.ones(2))
    assert labelled_grad is None or not labelled_grad.any()  # the words read y, not the head
    assert word_grad(torch.tensor([1.0, 0.0])).abs().sum() > 0  # the unlabelled row reads the head
    label_loss = f.loss(x, tokens, labels=y)["label_loss"]
    assert torch.autograd.grad(label_loss, head)[0].abs().sum() > 0  # the head still learns from its BCE


def test_label_conditioned_decoder_writes_from_the_given_labels() -> None:
    """A ``label_conditioned`` F reads the labels it is given (a generated image's conditioning labels), its head
    when given none; a plain F always reads its head."""
    f = ReportDecoder(VOCAB, num_classes=K, label_conditioned=True, **TINY_DECODER).eval()
    plain = ReportDecoder(VOCAB, num_classes=K, **TINY_DECODER).eval()
    x, y = torch.randn(2, 3, 32, 32), labels(2)
    given, own, plain_given = f.sentences(x, S, y)[0], f.sentences(x, S)[0], plain.sentences(x, S, y)[0]
    with torch.no_grad():
        f.label_head.bias.add_(3.0)
        plain.label_head.bias.add_(3.0)
    assert torch.allclose(f.sentences(x, S, y)[0], given) and not torch.allclose(f.sentences(x, S)[0], own)
    assert not torch.allclose(plain.sentences(x, S, y)[0], plain_given)  # ignores y: follows its head
    assert not torch.allclose(f.sentences(x, S, 1 - y)[0], given)  # other findings, other topics
    first = f.greedy_decode(x, y)
    assert torch.equal(f.greedy_decode(x, y)["tokens"], first["tokens"])
    with pytest.raises(ValueError, match="num_classes"):
        ReportDecoder(VOCAB, label_conditioned=True, **TINY_DECODER)
