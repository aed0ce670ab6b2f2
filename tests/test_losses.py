"""Losses: BigGAN hinge, non-saturating, and SS-GAN rotation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bundle.losses import discriminator_loss, generator_loss, rotate_batch, rotation_loss


def test_hinge_matches_biggan_definition():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 3.0])
    # relu(1 - real) = [0, 0.5, 2] -> mean 5/6; relu(1 + fake) = [0, 1, 4] -> mean 5/3
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(5 / 6 + 5 / 3)
    assert generator_loss(fake, "hinge").item() == pytest.approx(-1 / 3)


def test_hinge_is_not_tanh_squashed():
    """A confident discriminator (logits far beyond 1) reaches zero loss; tanh-squashed hinge never would."""
    assert discriminator_loss(torch.tensor([10.0]), torch.tensor([-10.0]), "hinge").item() == 0.0


def test_non_saturating_matches_bce_with_logits():
    real, fake = torch.randn(8), torch.randn(8)
    expected = F.binary_cross_entropy_with_logits(real, torch.ones(8)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros(8)
    )
    assert discriminator_loss(real, fake, "non_saturating").item() == pytest.approx(expected.item(), rel=1e-5)
    g_expected = F.binary_cross_entropy_with_logits(fake, torch.ones(8))
    assert generator_loss(fake, "non_saturating").item() == pytest.approx(g_expected.item(), rel=1e-5)


def test_unknown_loss_named():
    with pytest.raises(ValueError, match="wasserstein"):
        generator_loss(torch.zeros(2), "wasserstein")


def test_rotate_batch_orders_and_rotates():
    images = torch.zeros(2, 1, 4, 4)
    images[:, :, 0, 0] = 1.0  # a marker in the top-left corner
    rotated, targets = rotate_batch(images)
    assert rotated.shape == (8, 1, 4, 4)
    assert targets.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    corners = [(0, 0), (3, 0), (3, 3), (0, 3)]  # where the marker goes after k counter-clockwise quarter turns
    for k, (r, c) in enumerate(corners):
        assert rotated[2 * k, 0, r, c] == 1.0 and rotated[2 * k].sum() == 1.0


def test_rotate_batch_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        rotate_batch(torch.zeros(1, 1, 4, 6))


def test_rotation_loss_low_for_correct_prediction():
    targets = torch.tensor([0, 1, 2, 3])
    good = F.one_hot(targets, 4).float() * 20
    bad = F.one_hot((targets + 1) % 4, 4).float() * 20
    assert rotation_loss(good, targets) < 1e-3 < rotation_loss(bad, targets)


def test_classification_loss_averages_labelled_rows_only():
    from bundle.losses import classification_loss

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 3.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    full = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    assert torch.allclose(classification_loss(logits, labels), full)
    rows = torch.nn.functional.binary_cross_entropy_with_logits(logits[[0, 2]], labels[[0, 2]])
    assert torch.allclose(classification_loss(logits, labels, torch.tensor([1.0, 0.0, 1.0])), rows)
    assert classification_loss(logits, labels, torch.zeros(3)) == 0  # nothing labelled: no signal, no NaN
