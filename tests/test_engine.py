"""Tests of the EMIXER trainer and the limited-label setting, at tiny sizes on the CPU.

The networks are the real ones at 32 px with few channels; one iteration (2 critic steps + 1 generator step)
takes a few tenths of a second.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ignite.engine import Events

from bundle.data.errors import DataError
from bundle.data.label_fraction import apply_label_fraction
from bundle.networks import Generator, ImageDiscriminator, JointDiscriminator, ReportDecoder, ReportDiscriminator
from bundle.networks.layers import END_ID, PAD_ID
from bundle.training import LOSS_KEYS, EMIXERTrainer, GradientControls, Objective
from bundle.training.batch import fake_label_indices
from bundle.training.gradients import add_bounded_grads, scale_gradient, take_grads
from bundle.training.warmup import ReportDecoderWarmup

VOCAB, S, W, K = 40, 3, 6, 3
CLASS_NAMES = ["Pleural Effusion", "Cardiomegaly", "Lung Lesion"]
# Template sentence (word ids >= 4) per class, and the sentence of a report with no finding.
SENTENCES = {0: [4, 5, 6, 7], 1: [8, 9, 5, 10], 2: [11, 12, 13, 5, 14], None: [15, 16, 17]}


def build_networks(seed: int = 0, heads: bool = False) -> dict[str, torch.nn.Module]:
    """G, F and the three discriminators at tiny sizes (32 px, few channels, small text layers); ``heads`` adds
    D_image's auxiliary finding classifier and F's label head."""
    torch.manual_seed(seed)
    return {
        "generator": Generator(
            latent_dim=40,
            num_classes=K,
            image_size=32,
            base_channels=8,
            channel_multipliers=(2, 2, 1, 1),
            attention_resolution=16,
            label_embed_dim=16,
        ),
        "image_discriminator": ImageDiscriminator(
            num_classes=K,
            image_size=32,
            base_channels=8,
            channel_multipliers=(1, 1, 2, 2),
            attention_resolution=16,
            class_head=heads,
        ),
        "report_decoder": ReportDecoder(
            VOCAB,
            max_sentences=S,
            max_words=W,
            encoder="small",
            encoder_features=32,
            embed_dim=16,
            sentence_hidden=32,
            topic_dim=32,
            word_hidden=32,
            num_classes=K if heads else 0,
        ),
        "report_discriminator": ReportDiscriminator(VOCAB, embed_dim=16, hidden=24, mlp_hidden=16),
        "joint_discriminator": JointDiscriminator(
            VOCAB, image_size=32, base_channels=4, embed_dim=16, hidden=24, joint_hidden=16
        ),
    }


OBJECTIVE_FIELDS = set(Objective.__dataclass_fields__)
GRADIENT_FIELDS = set(GradientControls.__dataclass_fields__)
NO_ROTATION = {"alpha": 0.0, "rotation_weight_g": 0.0}


def make_trainer(
    data, networks: dict | None = None, g_lr: float = 1e-4, f_lr: float | None = None, d_lr: float = 2e-4, **kwargs
) -> EMIXERTrainer:
    """An EMIXERTrainer over ``data`` (a list of batches or a DataLoader) with Adam(betas=(0, 0.999)) optimisers;
    keyword arguments named like :class:`Objective` or :class:`GradientControls` fields go to those."""
    objective = Objective(**{k: kwargs.pop(k) for k in list(kwargs) if k in OBJECTIVE_FIELDS})
    gradients = GradientControls(**{k: kwargs.pop(k) for k in list(kwargs) if k in GRADIENT_FIELDS})
    nets = build_networks() if networks is None else networks
    g_params = list(nets["generator"].parameters())
    f_params = list(nets["report_decoder"].parameters())
    if f_lr is None:
        g_params += f_params
    discriminators = [nets[k] for k in ("image_discriminator", "report_discriminator", "joint_discriminator")]
    d_params = [p for d in discriminators if d is not None for p in d.parameters()]
    kwargs.setdefault("max_epochs", 1)
    return EMIXERTrainer(
        device="cpu",
        train_data_loader=data,
        g_optimizer=torch.optim.Adam(g_params, lr=g_lr, betas=(0.0, 0.999)),
        f_optimizer=None if f_lr is None else torch.optim.Adam(f_params, lr=f_lr, betas=(0.0, 0.999)),
        d_optimizer=torch.optim.Adam(d_params, lr=d_lr, betas=(0.0, 0.999)),
        objective=objective,
        gradients=gradients,
        **nets,
        **kwargs,
    )


def report_tokens(labels: list[float]) -> tuple[torch.Tensor, int]:
    """The contract's report layout: one template sentence per positive class (or the normal one), <end>, pads."""
    classes = [c for c, v in enumerate(labels) if v > 0][:S] or [None]
    tokens = torch.full((S, W), PAD_ID, dtype=torch.long)
    for row, c in enumerate(classes):
        words = SENTENCES[c]
        tokens[row, : len(words)] = torch.tensor(words)
        tokens[row, len(words)] = END_ID
    return tokens, len(classes)


def synthetic_pairs(n: int = 32, seed: int = 0) -> list[dict]:
    """Paired items: a dark noisy image with one drawn sign per positive class, and its template report."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        labels = (torch.rand(K, generator=g) < 0.4).float()
        image = -0.8 + 0.05 * torch.randn(1, 32, 32, generator=g)
        if labels[0]:
            image[:, 24:30, 4:28] = 0.8  # effusion: a bright band at the base
        if labels[1]:
            image[:, 10:22, 10:22] = 0.5  # cardiomegaly: a large central blob
        if labels[2]:
            image[:, 4:8, 4:8] = 1.0  # lesion: a small bright spot
        tokens, count = report_tokens(labels.tolist())
        items.append(
            {
                "image": image.expand(3, -1, -1).clamp(-1, 1).clone(),
                "labels": labels,
                "report_tokens": tokens,
                "report_num_sentences": torch.tensor(count),
            }
        )
    return items


def collate(items: list[dict], labelled: list[float] | None = None) -> dict:
    batch = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    if labelled is not None:
        batch["labelled"] = torch.tensor(labelled)
    return batch


def record_outputs(trainer: EMIXERTrainer) -> list[dict]:
    outputs: list[dict] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    return outputs


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a busy 2-core machine two OpenMP threads wait on each other (20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def batch() -> dict:
    return collate(synthetic_pairs(4, seed=1))


def params_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


HEAD_TERMS = ["d_class", "g_class", "f_labels", "g_consistency"]


@pytest.mark.parametrize(
    "switches,absent",
    [
        ({}, HEAD_TERMS),
        (
            {"report_loss_weight": 0.0, "joint_loss_weight": 0.0},
            ["d_report", "d_joint", "g_report", "g_joint"] + HEAD_TERMS,
        ),
        (
            {**NO_ROTATION, "teacher_forcing_weight": 0.0},
            ["d_rotation", "g_rotation", "f_teacher_forcing"] + HEAD_TERMS,
        ),
        ({"heads": True, "classification_weight": 1.0, "consistency_weight": 1.0}, []),
        (
            {"heads": True, "classification_weight": 1.0, **NO_ROTATION},
            ["d_rotation", "g_rotation", "g_consistency"],
        ),
    ],
    ids=["all_terms", "sm_gan", "no_rotation_no_teacher_forcing", "auxiliary_heads", "heads_no_rotation"],
)
def test_one_iteration_outputs_every_enabled_term(batch, switches, absent) -> None:
    switches = dict(switches)
    networks = build_networks(heads=switches.pop("heads", False))
    trainer = make_trainer([batch], networks, **switches)
    before = {k: params_of(getattr(trainer, k)) for k in ("report_discriminator", "joint_discriminator", "generator")}
    trainer.run()
    output = trainer.state.output
    assert set(output) == set(LOSS_KEYS) - set(absent)
    assert all(isinstance(v, float) and np.isfinite(v) for v in output.values()), output
    assert trainer.state.iteration == 1
    changed = {
        name: any(not torch.equal(a, b) for a, b in zip(old, getattr(trainer, name).parameters()))
        for name, old in before.items()
    }
    assert changed["generator"]
    for name in ("report_discriminator", "joint_discriminator"):
        network = getattr(trainer, name)
        term_on = switches.get(f"{name.split('_')[0]}_loss_weight", 1.0) > 0
        assert changed[name] == term_on, name  # a switched-off discriminator is never trained ...
        if not term_on:
            assert all(p.grad is None for p in network.parameters()), name  # ... nor reached by any gradient
    # the generator step froze the discriminators and gave their parameters back
    assert all(p.requires_grad for p in trainer.image_discriminator.parameters())


def test_unused_networks_may_be_none(batch) -> None:
    networks = dict(build_networks(), report_discriminator=None, joint_discriminator=None)
    trainer = make_trainer([batch], networks, report_loss_weight=0.0, joint_loss_weight=0.0)
    trainer.run()
    assert "d_total" in trainer.state.output and "g_report" not in trainer.state.output
    assert "report_discriminator" not in trainer.checkpoint_dict(include_rng=False)
    with pytest.raises(ValueError, match="report_discriminator is None"):
        make_trainer([batch], dict(build_networks(), report_discriminator=None))
    with pytest.raises(ValueError, match="adversarial_loss"):
        make_trainer([batch], adversarial_loss="wasserstein")


def count_steps(optimizer: torch.optim.Optimizer) -> list[int]:
    calls = [0]
    step = optimizer.step

    def counted(*args, **kwargs):
        calls[0] += 1
        return step(*args, **kwargs)

    optimizer.step = counted
    return calls


def test_n_critic_discriminator_steps_per_generator_step(batch) -> None:
    trainer = make_trainer([batch, batch], f_lr=1e-3, n_critic=3, joint_loss_weight=0.0, report_loss_weight=0.0)
    d_calls, g_calls = count_steps(trainer.d_optimizer), count_steps(trainer.g_optimizer)
    f_calls = count_steps(trainer.f_optimizer)
    trainer.run()
    assert g_calls[0] == 2 and f_calls[0] == 2
    assert d_calls[0] == 3 * g_calls[0]


def capture_image_d_inputs(trainer: EMIXERTrainer) -> list[tuple[torch.Tensor, torch.Tensor]]:
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module, args, kwargs):
        calls.append((args[0].detach().clone(), args[1].detach().clone()))

    trainer.image_discriminator.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


def test_unlabelled_items_enter_without_labels_and_fake_labels_follow_labelled_items() -> None:
    items = synthetic_pairs(4, seed=2)
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    for item, row in zip(items, labels):
        item["labels"] = row
    trainer = make_trainer(
        [collate(items, labelled=[1.0, 0.0, 1.0, 0.0])], report_loss_weight=0.0, joint_loss_weight=0.0
    )
    calls = capture_image_d_inputs(trainer)
    trainer.run()
    d_calls = calls[:2]  # two critic steps: [4 rotations of the 4 reals, 4 fakes]; then the generator step
    for images, y in d_calls:
        assert images.shape[0] == 4 * 4 + 4
        real_rows = y[:4]
        assert torch.equal(real_rows[[0, 2]], labels[[0, 2]])
        assert torch.equal(real_rows[[1, 3]], torch.zeros(2, K))  # unlabelled: zero rows, no projection term
        for row in y[16:]:  # fake labels: rows of labelled items only
            assert torch.equal(row, labels[0]) or torch.equal(row, labels[2]), row
    images, y = calls[2]
    assert images.shape[0] == 4 * 4  # generator step: 4 rotations of the 4 fakes
    assert all(torch.equal(row, labels[0]) or torch.equal(row, labels[2]) for row in y)

    # no labelled item at all: fakes are generated and scored unconditionally
    trainer = make_trainer([collate(items, labelled=[0.0] * 4)], report_loss_weight=0.0, joint_loss_weight=0.0)
    calls = capture_image_d_inputs(trainer)
    trainer.run()
    assert all(torch.count_nonzero(y) == 0 for _, y in calls)
    assert np.isfinite(trainer.state.output["d_image"])


def test_split_batch_gives_each_critic_step_its_own_reals(batch) -> None:
    trainer = make_trainer([batch], d_split_batch=True, report_loss_weight=0.0, joint_loss_weight=0.0)
    calls = capture_image_d_inputs(trainer)
    trainer.run()
    first, second = calls[0][0], calls[1][0]
    assert first.shape[0] == 4 * 2 + 2 and second.shape[0] == 4 * 2 + 2
    assert torch.equal(first[:2], batch["image"][:2]) and torch.equal(second[:2], batch["image"][2:])


def test_fake_label_indices() -> None:
    permutations = fake_label_indices(None, 5, draws=3)
    assert permutations.shape == (3, 5) and all(sorted(p.tolist()) == list(range(5)) for p in permutations)
    drawn = fake_label_indices(torch.tensor([0.0, 1.0, 0.0, 1.0]), 4, draws=10)
    assert set(drawn.flatten().tolist()) <= {1, 3}
    assert fake_label_indices(torch.zeros(4), 4, draws=2) is None


def test_ema_generator_follows_generator(batch) -> None:
    trainer = make_trainer([batch], ema_decay=0.5, report_loss_weight=0.0, joint_loss_weight=0.0, amp=True)
    assert not trainer.use_autocast  # amp is a CUDA feature: the CPU runs in fp32
    start = params_of(trainer.generator)
    trainer.run()
    for ema, initial, current in zip(trainer.ema_generator.parameters(), start, trainer.generator.parameters()):
        assert torch.allclose(ema, 0.5 * initial + 0.5 * current.detach(), atol=1e-6)
    assert not trainer.ema_generator.training and not any(p.requires_grad for p in trainer.ema_generator.parameters())
    for ema_buffer, buffer in zip(trainer.ema_generator.buffers(), trainer.generator.buffers()):
        assert torch.equal(ema_buffer, buffer)


def test_learns_on_synthetic_pairs() -> None:
    """F's teacher-forced loss falls well below its start; the discriminator losses move and stay finite."""
    items = synthetic_pairs(32, seed=0)
    batches = [collate(items[i : i + 8]) for i in range(0, 32, 8)]
    trainer = make_trainer(batches, f_lr=3e-3, max_epochs=12, ema_decay=0.99)
    outputs = record_outputs(trainer)
    trainer.run()
    assert len(outputs) == 48
    teacher = [o["f_teacher_forcing"] for o in outputs]
    assert np.mean(teacher[-4:]) < 0.6 * np.mean(teacher[:4]), teacher
    for key in ("d_image", "d_rotation", "d_report", "d_joint"):
        values = np.array([o[key] for o in outputs])
        assert np.isfinite(values).all() and values.std() > 1e-3, (key, values)
    # the discriminator learns to tell real from fake images at all
    assert np.mean([o["d_image"] for o in outputs[-8:]]) < np.mean([o["d_image"] for o in outputs[:4]])


def test_auxiliary_heads_learn_the_findings() -> None:
    """With D_image's finding classifier and F's label head on, both BCE terms fall on the synthetic pairs; the
    classifier needs its head."""
    items = synthetic_pairs(32, seed=0)
    batches = [collate(items[i : i + 8]) for i in range(0, 32, 8)]
    networks = build_networks(heads=True)
    trainer = make_trainer(
        batches, networks, f_lr=3e-3, d_lr=1e-3, max_epochs=6, classification_weight=1.0, joint_loss_weight=0.0
    )
    outputs = record_outputs(trainer)
    trainer.run()
    for key in ("d_class", "f_labels"):
        values = [o[key] for o in outputs]
        assert np.mean(values[-4:]) < 0.8 * np.mean(values[:4]), (key, values)
    assert np.isfinite([o["g_class"] for o in outputs]).all()
    with pytest.raises(ValueError, match="class_head"):
        make_trainer(batches, classification_weight=1.0)


def test_consistency_term_moves_g_through_a_frozen_label_head(batch) -> None:
    """g_consistency is F's label-head BCE on the fakes: it trains G, leaves F (weights and BatchNorm statistics)
    alone, and needs F's label head."""
    networks = build_networks(heads=True)
    f = networks["report_decoder"]
    trainer = make_trainer(
        [batch],
        networks,
        f_lr=1e-2,
        consistency_weight=1.0,
        teacher_forcing_weight=0.0,
        report_loss_weight=0.0,
        joint_loss_weight=0.0,
    )
    f_before, g_before = copy.deepcopy(f.state_dict()), params_of(trainer.generator)
    trainer.run()
    assert np.isfinite(trainer.state.output["g_consistency"])
    assert all(torch.equal(v, f.state_dict()[k]) for k, v in f_before.items())  # weights and running stats
    assert f.training and all(p.requires_grad for p in f.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(g_before, trainer.generator.parameters()))
    with pytest.raises(ValueError, match="label head"):
        make_trainer([batch], consistency_weight=1.0)


def test_f_adversarial_weight_scales_only_what_f_learns_from_the_adversarial_terms(batch) -> None:
    """F's share of the text-adversarial gradient is scaled (0: dropped); G's is untouched, so G takes the same
    step either way."""
    results = {}
    for weight in (1.0, 0.0):
        torch.manual_seed(0)
        networks = build_networks(heads=True)
        before = {k: params_of(networks[k]) for k in ("generator", "report_decoder")}
        trainer = make_trainer([batch], networks, f_lr=1e-2, teacher_forcing_weight=0.0, f_adversarial_weight=weight)
        trainer.run()
        results[weight] = {k: params_of(networks[k]) for k in ("generator", "report_decoder")}
        moved = [not torch.equal(a, b) for a, b in zip(before["report_decoder"], results[weight]["report_decoder"])]
        assert any(moved) == (weight > 0), weight
        assert any(not torch.equal(a, b) for a, b in zip(before["generator"], results[weight]["generator"]))
    for a, b in zip(results[1.0]["generator"], results[0.0]["generator"]):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="f_adversarial_weight"):
        make_trainer([batch], f_adversarial_weight=-1.0)


def test_f_image_adversarial_weight_keeps_fs_image_reading_to_real_pairs(batch) -> None:
    """``f_image_adversarial_weight`` 0: with only adversarial terms on, F's encoder and label head do not move while
    its language part and G do; None follows ``f_adversarial_weight`` (everything in F moves)."""
    moved = {}
    for image_weight in (0.0, None):
        torch.manual_seed(0)
        networks = build_networks()
        decoder = networks["report_decoder"]
        reader = {id(p) for p in decoder.image_reader_parameters()}
        assert reader and len(reader) < len(list(decoder.parameters()))
        before = {id(p): p.detach().clone() for p in decoder.parameters()}
        g_before = params_of(networks["generator"])
        trainer = make_trainer(
            [batch], networks, f_lr=1e-2, teacher_forcing_weight=0.0, f_image_adversarial_weight=image_weight
        )
        trainer.run()
        changed = {id(p) for p in decoder.parameters() if not torch.equal(before[id(p)], p.detach())}
        moved[image_weight] = (bool(changed & reader), bool(changed - reader))
        assert any(not torch.equal(a, b) for a, b in zip(g_before, networks["generator"].parameters()))
    assert moved[0.0] == (False, True)
    assert moved[None] == (True, True)
    with pytest.raises(ValueError, match="f_image_adversarial_weight"):
        make_trainer([batch], f_image_adversarial_weight=-1.0)


def test_f_adversarial_max_ratio_bounds_each_tensor_by_its_teacher_forcing_gradient(batch) -> None:
    """The bound: each of F's adversarial gradients is scaled to at most ``ratio`` x the norm of the same tensor's
    teacher-forcing gradient (kept as is when smaller, dropped where that tensor got none); in a run, ratio 0 trains
    F exactly as with no adversarial share at all."""
    trainer = make_trainer([batch], f_lr=1e-2)
    params = list(trainer.report_decoder.parameters())
    for k, p in enumerate(params):
        p.grad = torch.full_like(p, 10.0) if k % 2 else torch.full_like(p, 0.001)
    adversarial = take_grads(trainer.report_decoder)
    assert all(p.grad is None for p in params)
    for p in params[:-1]:
        p.grad = torch.ones_like(p)
    add_bounded_grads(trainer.report_decoder, adversarial, 0.5)
    for k, (p, extra) in enumerate(zip(params[:-1], adversarial)):
        added = p.grad - 1.0
        limit = 0.5 * float(torch.linalg.vector_norm(torch.ones_like(p)))
        if k % 2:
            assert torch.allclose(torch.linalg.vector_norm(added), torch.tensor(limit), rtol=1e-4)
        else:
            assert torch.allclose(added, extra, atol=1e-6)
    assert params[-1].grad is None
    with pytest.raises(ValueError, match="f_adversarial_max_ratio"):
        make_trainer([batch], f_adversarial_max_ratio=-0.1)

    after = {}
    for setting in ({"f_adversarial_max_ratio": 0.0}, {"f_adversarial_weight": 0.0}):
        torch.manual_seed(0)
        networks = build_networks()
        make_trainer([batch], networks, f_lr=1e-2, **setting).run()
        after[str(setting)] = [p.detach().clone() for p in networks["report_decoder"].parameters()]
    first, second = after.values()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(first, second))


def test_text_grad_to_generator_off_keeps_the_report_term_from_moving_g(batch) -> None:
    """With only the report term on, G moves through F's reading of its image; with ``text_grad_to_generator``
    off it does not, while F still does (``f_adversarial_weight`` 1). The joint term still reaches G (image
    branch)."""
    moved = {}
    for flag, joint in ((True, False), (False, False), (False, True)):
        torch.manual_seed(0)
        networks = build_networks()
        before = {k: params_of(networks[k]) for k in ("generator", "report_decoder")}
        trainer = make_trainer(
            [batch],
            networks,
            f_lr=1e-2,
            image_loss_weight=0.0,
            **NO_ROTATION,
            joint_loss_weight=float(joint),
            teacher_forcing_weight=0.0,
            text_grad_to_generator=flag,
        )
        trainer.run()
        moved[flag, joint] = {
            k: any(not torch.equal(a, b) for a, b in zip(before[k], networks[k].parameters())) for k in before
        }
    assert moved[True, False] == {"generator": True, "report_decoder": True}
    assert moved[False, False] == {"generator": False, "report_decoder": True}
    assert moved[False, True]["generator"]


def test_scale_gradient_scales_only_the_backward() -> None:
    """``scale_gradient``: the same values forward; the gradient times the scale back (0 detaches, 1 is a no-op)."""
    x = torch.randn(3, 4, requires_grad=True)
    for scale in (0.25, 1.0, 3.0):
        x.grad = None
        y = scale_gradient(x, scale)
        assert torch.equal(y, x)
        (y * torch.arange(4.0)).sum().backward()
        assert torch.allclose(x.grad, scale * torch.arange(4.0).expand(3, 4))
    assert not scale_gradient(x, 0.0).requires_grad


def test_text_grad_to_generator_weight_scales_gs_report_gradient(batch) -> None:
    """A fractional ``text_grad_to_generator`` keeps the text path on: G's parameters move through F, by a step that
    grows with the weight (SGD, one iteration, only the report term on); a negative weight is refused."""
    shifts = {}
    for weight in (0.0, 0.1, 1.0):
        torch.manual_seed(0)
        networks = build_networks()
        before = params_of(networks["generator"])
        trainer = make_trainer(
            [batch],
            networks,
            image_loss_weight=0.0,
            **NO_ROTATION,
            joint_loss_weight=0.0,
            teacher_forcing_weight=0.0,
            text_grad_to_generator=weight,
        )
        trainer.g_optimizer = torch.optim.SGD(networks["generator"].parameters(), lr=1.0)
        trainer.run()
        after = networks["generator"].parameters()
        shifts[weight] = sum(float((a - b.detach()).abs().sum()) for a, b in zip(before, after))
    assert shifts[0.0] == 0.0
    assert 0.0 < shifts[0.1] < shifts[1.0]
    with pytest.raises(ValueError, match="text_grad_to_generator"):
        make_trainer([batch], text_grad_to_generator=-0.5)


def test_text_grad_max_ratio_bounds_gs_gradient_through_f(batch) -> None:
    """``text_grad_max_ratio``: G's step is the image terms' plus the gradient through F scaled per image to at most
    ratio x the image terms' norm. Ratio 0 gives G exactly the step of ``text_grad_to_generator`` 0; a large ratio
    the step of the unbounded path (the bound then never binds); a small one something between."""

    def g_after(**kwargs: float | None) -> list[torch.Tensor]:
        torch.manual_seed(0)
        networks = build_networks()
        trainer = make_trainer(
            [batch],
            networks,
            teacher_forcing_weight=0.0,
            **NO_ROTATION,
            joint_loss_weight=0.0,
            report_loss_weight=1e3,  # the path through F must stand out from float noise in G's step
            f_adversarial_weight=0.0,
            **kwargs,
        )
        trainer.g_optimizer = torch.optim.SGD(networks["generator"].parameters(), lr=1.0)
        trainer.run()
        return [p.detach().clone() for p in networks["generator"].parameters()]

    def distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
        return sum(float((x - y).abs().sum()) for x, y in zip(a, b))

    off = g_after(text_grad_to_generator=0.0)
    free = g_after(text_grad_to_generator=1.0)
    assert distance(off, free) > 0
    assert distance(g_after(text_grad_to_generator=1.0, text_grad_max_ratio=0.0), off) < 1e-5
    assert distance(g_after(text_grad_to_generator=1.0, text_grad_max_ratio=1e9), free) < 1e-4 * distance(off, free)
    gaps = [distance(g_after(text_grad_to_generator=1.0, text_grad_max_ratio=r), off) for r in (1e-2, 1e-4, 1e-6)]
    assert gaps[-1] < 0.5 * distance(free, off) and gaps == sorted(gaps, reverse=True)
    with pytest.raises(ValueError, match="text_grad_max_ratio"):
        make_trainer([batch], text_grad_max_ratio=-1.0)


def test_f_reads_generated_images_without_moving_its_batchnorm_statistics(batch) -> None:
    """F's BatchNorm running statistics come from the real images of teacher forcing alone: a run whose text terms make
    F read G's images (D's and G's steps) ends with the same statistics as one where F never reads them."""
    stats = {}
    for text in (True, False):
        torch.manual_seed(0)
        networks = build_networks()
        make_trainer([batch], networks, report_loss_weight=float(text), joint_loss_weight=float(text)).run()
        stats[text] = {
            name: buffer.clone() for name, buffer in networks["report_decoder"].named_buffers() if "running" in name
        }
    assert stats[True]
    for name, value in stats[True].items():
        assert torch.allclose(value, stats[False][name], atol=1e-6), name


def test_report_decoder_warm_up_trains_f_alone_before_the_first_iteration() -> None:
    data = [collate(synthetic_pairs(8, seed=s)) for s in range(2)]
    networks = build_networks(heads=True)
    f_before, g_before = params_of(networks["report_decoder"]), params_of(networks["generator"])
    trainer = make_trainer(data, networks, f_lr=3e-3, report_warmup_iterations=30)
    seen = {}

    def at_first_iteration(engine) -> None:
        seen["f"], seen["g"] = params_of(networks["report_decoder"]), params_of(networks["generator"])

    trainer.add_event_handler(Events.ITERATION_STARTED(once=1), at_first_iteration)  # after the warm-up's handler
    trainer.run()
    assert all(torch.equal(a, b) for a, b in zip(g_before, seen["g"]))  # G untouched by the warm-up
    assert any(not torch.equal(a, b) for a, b in zip(f_before, seen["f"]))
    losses = ReportDecoderWarmup(30)(trainer)  # 30 more steps, cycling over the 2 batches
    assert len(losses) == 30 and np.mean(losses[-5:]) < np.mean(losses[:5])
    with pytest.raises(ValueError, match="report_warmup_iterations"):
        make_trainer(data, report_warmup_iterations=-1)


# ---------------------------------------------------------------------------------------------- label fraction
def datalist(n: int = 300, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    prevalence = np.array([0.35, 0.2, 0.08])
    return [
        {"image": f"img_{i}.png", "report": "r", "labels": (rng.random(K) < prevalence).astype(float).tolist()}
        for i in range(n)
    ]


def test_label_fraction_keeps_the_fraction_of_each_class() -> None:
    items = datalist()
    out = apply_label_fraction(items, 0.3, CLASS_NAMES, seed=0)
    full = np.array([o["labels_full"] for o in out])
    kept = np.array([o["labelled"] for o in out]) == 1.0
    assert np.array_equal(full, np.array([i["labels"] for i in items]))  # originals kept for evaluation
    groups = [full[:, c] > 0 for c in range(K)] + [~(full > 0).any(axis=1)]
    for members in groups:  # each class, and the items with no positive class, keep 30% (rounded)
        assert kept[members].sum() == round(0.3 * members.sum()), (kept[members].sum(), members.sum())
    assert any(full[kept].sum(axis=1) > 1)  # multi-label items kept once count for all their classes
    for o in out:
        assert o["labels"] == (o["labels_full"] if o["labelled"] else [0.0] * K)
    assert items[0].keys() == {"image", "report", "labels"}  # inputs untouched


def test_label_fraction_is_deterministic_and_full_fraction_keeps_all() -> None:
    items = datalist(120)
    first = apply_label_fraction(items, 0.3, CLASS_NAMES, seed=3)
    assert first == apply_label_fraction(items, 0.3, CLASS_NAMES, seed=3)
    other = apply_label_fraction(items, 0.3, CLASS_NAMES, seed=4)
    assert [o["labelled"] for o in first] != [o["labelled"] for o in other]
    everything = apply_label_fraction(items, 1.0, CLASS_NAMES)
    assert all(o["labelled"] == 1.0 and o["labels"] == i["labels"] for o, i in zip(everything, items))
    assert all(o["labelled"] == 0.0 for o in apply_label_fraction(items, 0.0, CLASS_NAMES))
    with pytest.raises(ValueError, match="label_fraction"):
        apply_label_fraction(items, 1.5, CLASS_NAMES)
    bad = copy.deepcopy(items)
    bad[7]["labels"] = [1.0]
    with pytest.raises(DataError, match="img_7.png"):
        apply_label_fraction(bad, 0.3, CLASS_NAMES)


def test_label_fraction_items_train() -> None:
    """Datalist items after apply_label_fraction collate into batches the trainer takes."""
    items = synthetic_pairs(8, seed=3)
    marked = apply_label_fraction([dict(i, labels=i["labels"].tolist()) for i in items], 0.3, CLASS_NAMES)
    for item in marked:
        item["labels"], item["labelled"] = torch.tensor(item.pop("labels")), torch.tensor(item["labelled"])
        item.pop("labels_full")
    trainer = make_trainer(
        torch.utils.data.DataLoader(marked, batch_size=4), report_loss_weight=0.0, joint_loss_weight=0.0
    )
    trainer.run()
    assert trainer.state.iteration == 2 and np.isfinite(trainer.state.output["g_total"])
