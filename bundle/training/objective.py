"""EMIXER's objective (paper section 3.2, appendix 6.3) as pure functions of the networks and a step's tensors.

Each function returns a dict of named, unweighted terms (``d_*`` for the discriminators' step, ``g_*`` / ``f_*``
for the generator's); :func:`weighted_sum` weighs them by :class:`Objective`. A term whose weight is 0 is not
computed, so a network whose terms are all off may be None. To add a term: compute it in one of these functions
under a new name, give it a weight field in :class:`Objective` and an entry in :data:`TERM_WEIGHTS`, and list it
in :data:`LOSS_KEYS` so the trainer logs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
from torch import nn

from bundle.losses import (
    ADVERSARIAL_LOSSES,
    classification_loss,
    discriminator_loss,
    generator_loss,
    rotate_batch,
    rotation_loss,
)
from bundle.training.gradients import GradientControls, bounded_text_gradient, eval_mode, frozen, text_reader_input

__all__ = [
    "LOSS_KEYS",
    "TERM_WEIGHTS",
    "EMIXERNetworks",
    "Objective",
    "consistency_term",
    "discriminator_terms",
    "generator_objective",
    "image_generator_terms",
    "sample_reports",
    "teacher_forcing_terms",
    "text_generator_terms",
    "weighted_sum",
]

Terms = dict[str, torch.Tensor]


class EMIXERNetworks(NamedTuple):
    """The five networks of EMIXER; a discriminator whose terms are all off may be None."""

    generator: nn.Module
    report_decoder: nn.Module
    image_discriminator: nn.Module | None
    report_discriminator: nn.Module | None
    joint_discriminator: nn.Module | None


@dataclass(frozen=True)
class Objective:
    """Weights of EMIXER's terms (0 switches a term off) and the form of its adversarial losses.

    Attributes:
        image_loss_weight / report_loss_weight / joint_loss_weight: the adversarial terms of D_image (projection),
            D_report and D_joint, for D and G alike.
        alpha: D_image's rotation loss on the four rotations of the real images (the paper's alpha).
        rotation_weight_g: G's rotation loss on the rotated generated images (SS-GAN's beta).
        classification_weight: D_image's auxiliary finding classifier (AC-GAN style, needs ``class_head=True``): D
            learns it on the labelled real images, G gets the same BCE of its images against their labels.
        consistency_weight: BCE of F's label head, read on G's images with F frozen, against their conditioning
            labels (needs F's label head): G is asked to draw what F reads as the requested findings.
        teacher_forcing_weight: F's teacher-forced loss on the real pairs.
        report_label_weight: BCE of F's label head on the labelled real images, inside the teacher-forced loss.
        stop_weight: F's stop-probability loss inside the teacher-forced loss.
        adversarial_loss: ``"hinge"`` (BigGAN) or ``"non_saturating"``.
        gumbel_temperature: temperature of the Gumbel-softmax word sampling of generated reports.
    """

    image_loss_weight: float = 1.0
    report_loss_weight: float = 1.0
    joint_loss_weight: float = 1.0
    alpha: float = 1.0
    rotation_weight_g: float = 0.2
    classification_weight: float = 0.0
    consistency_weight: float = 0.0
    teacher_forcing_weight: float = 1.0
    report_label_weight: float = 1.0
    stop_weight: float = 1.0
    adversarial_loss: str = "hinge"
    gumbel_temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.adversarial_loss not in ADVERSARIAL_LOSSES:
            raise ValueError(f"adversarial_loss={self.adversarial_loss!r} is not one of {ADVERSARIAL_LOSSES}")
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name != "adversarial_loss" and not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{field.name}={value!r} must be a number >= 0")

    @property
    def uses_text(self) -> bool:
        """True when G's reports are judged (D_report or D_joint on)."""
        return self.report_loss_weight > 0 or self.joint_loss_weight > 0

    @property
    def uses_image_discriminator(self) -> bool:
        return (
            self.image_loss_weight > 0 or self.alpha > 0 or self.rotation_weight_g > 0 or self.classification_weight > 0
        )

    def check_networks(self, networks: EMIXERNetworks) -> None:
        """Raise when a term is on and its network is missing or lacks the head it reads."""
        needed = {
            "image_discriminator": self.uses_image_discriminator,
            "report_discriminator": self.report_loss_weight > 0,
            "joint_discriminator": self.joint_loss_weight > 0,
        }
        for name, used in needed.items():
            if used and getattr(networks, name) is None:
                raise ValueError(
                    f"{name} is None but its loss term is switched on; pass the network or set its weight 0"
                )
        if self.consistency_weight and getattr(networks.report_decoder, "label_head", None) is None:
            raise ValueError("consistency_weight > 0 needs a report_decoder built with num_classes > 0 (a label head)")
        if self.classification_weight and getattr(networks.image_discriminator, "classifier", None) is None:
            raise ValueError("classification_weight > 0 needs an image_discriminator built with class_head=True")


#: The weight (an :class:`Objective` field) of each term; terms not listed (e.g. ``f_labels``, already inside the
#: teacher-forced loss) are logged only.
TERM_WEIGHTS = {
    "d_image": "image_loss_weight",
    "d_rotation": "alpha",
    "d_class": "classification_weight",
    "d_report": "report_loss_weight",
    "d_joint": "joint_loss_weight",
    "g_image": "image_loss_weight",
    "g_rotation": "rotation_weight_g",
    "g_class": "classification_weight",
    "g_consistency": "consistency_weight",
    "g_report": "report_loss_weight",
    "g_joint": "joint_loss_weight",
    "f_teacher_forcing": "teacher_forcing_weight",
}
#: Every key ``engine.state.output`` can hold, in logging order (a term switched off is left out).
LOSS_KEYS = (
    "d_image",
    "d_rotation",
    "d_class",
    "d_report",
    "d_joint",
    "d_total",
    "g_image",
    "g_rotation",
    "g_class",
    "g_consistency",
    "g_report",
    "g_joint",
    "f_teacher_forcing",
    "f_labels",
    "g_total",
)


def weighted_sum(terms: Mapping[str, torch.Tensor], objective: Objective, like: torch.Tensor) -> torch.Tensor:
    """The weighted sum of the weighted ``terms`` (a zero scalar on ``like``'s device when there are none)."""
    total = like.new_zeros((), dtype=torch.float32)
    for name, value in terms.items():
        if name in TERM_WEIGHTS:
            total = total + getattr(objective, TERM_WEIGHTS[name]) * value
    return total


def sample_reports(
    report_decoder: nn.Module, images: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Word distributions ``[B, S, W, V]`` of F's straight-through Gumbel-softmax reports for G's ``images`` (a
    ``label_conditioned`` F also reads ``labels``). F reads them in eval mode: its BatchNorms use, and do not update,
    the running statistics of the real images it learns from, so generated images never shift how it reads real
    ones (gradients flow as in train mode)."""
    with eval_mode(report_decoder) as f:
        return f.sample(images, temperature=temperature, hard=True, gumbel=True, labels=labels)["word_probs"]


def _image_discriminator_outputs(
    discriminator: nn.Module, images: torch.Tensor, labels: torch.Tensor, rotation: bool, classes: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One D_image pass: real/fake logits, rotation logits (when ``rotation``) and finding logits (when
    ``classes``) from the same features."""
    outputs = discriminator(images, labels, return_rotation=rotation, return_class=classes)
    if not (rotation or classes):
        return outputs, None, None
    logits, *heads = outputs  # the requested heads, rotation first
    return logits, heads[0] if rotation else None, heads[-1] if classes else None


def _image_discriminator_terms(
    discriminator: nn.Module,
    x_real: torch.Tensor,
    y_real: torch.Tensor,
    x_fake: torch.Tensor,
    y_fake: torch.Tensor,
    objective: Objective,
    labelled_real: torch.Tensor | None,
) -> Terms:
    """D_image: adversarial on (real, fake), rotation on the rotated reals, the auxiliary classifier on the labelled
    reals; reals, their rotations and the fakes go through D_image in one forward pass."""
    b, rotation, classes = x_real.shape[0], objective.alpha > 0, objective.classification_weight > 0
    terms: Terms = {}
    if rotation:
        rotated, targets = rotate_batch(x_real)  # rotation-major: the first b are the reals unrotated
        images, labels = torch.cat([rotated, x_fake]), torch.cat([y_real.repeat(4, 1), y_fake])
        logits, rotation_logits, class_logits = _image_discriminator_outputs(
            discriminator, images, labels, True, classes
        )
        real_logits, fake_logits = logits[:b], logits[4 * b :]
        terms["d_rotation"] = rotation_loss(rotation_logits[: 4 * b].float(), targets)
    else:
        images, labels = torch.cat([x_real, x_fake]), torch.cat([y_real, y_fake])
        logits, _, class_logits = _image_discriminator_outputs(discriminator, images, labels, False, classes)
        real_logits, fake_logits = logits[:b], logits[b:]
    if class_logits is not None:
        terms["d_class"] = classification_loss(class_logits[:b].float(), y_real, labelled_real)
    if objective.image_loss_weight > 0:
        terms["d_image"] = discriminator_loss(real_logits.float(), fake_logits.float(), objective.adversarial_loss)
    return terms


def discriminator_terms(
    networks: EMIXERNetworks,
    real: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    fake: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
    objective: Objective,
    labelled_real: torch.Tensor | None = None,
) -> Terms:
    """The discriminators' terms on ``real = (images, labels, report tokens)`` against ``fake = (images, labels,
    report word distributions)`` (fake reports may be None when no text term is on)."""
    (x_real, y_real, s_real), (x_fake, y_fake, s_fake) = real, fake
    terms: Terms = {}
    if objective.uses_image_discriminator:
        terms.update(
            _image_discriminator_terms(
                networks.image_discriminator, x_real, y_real, x_fake, y_fake, objective, labelled_real
            )
        )
    if objective.report_loss_weight > 0:
        d = networks.report_discriminator
        terms["d_report"] = discriminator_loss(d(s_real).float(), d(s_fake).float(), objective.adversarial_loss)
    if objective.joint_loss_weight > 0:
        d = networks.joint_discriminator
        real_logits, fake_logits = d(x_real, s_real), d(x_fake, s_fake)
        terms["d_joint"] = discriminator_loss(real_logits.float(), fake_logits.float(), objective.adversarial_loss)
    return terms


def image_generator_terms(
    discriminator: nn.Module, x_fake: torch.Tensor, y_fake: torch.Tensor, objective: Objective, labelled: bool = True
) -> Terms:
    """G's image terms: adversarial through D_image, rotation on the rotated fakes, and the auxiliary classifier's
    loss of the fakes against their conditioning labels (when they have labels)."""
    b, rotation, classes = x_fake.shape[0], objective.rotation_weight_g > 0, objective.classification_weight > 0
    terms: Terms = {}
    if rotation:
        rotated, targets = rotate_batch(x_fake)
        logits, rotation_logits, class_logits = _image_discriminator_outputs(
            discriminator, rotated, y_fake.repeat(4, 1), True, classes
        )
        fake_logits = logits[:b]
        terms["g_rotation"] = rotation_loss(rotation_logits.float(), targets)
    else:
        fake_logits, _, class_logits = _image_discriminator_outputs(discriminator, x_fake, y_fake, False, classes)
    if class_logits is not None and labelled:
        terms["g_class"] = classification_loss(class_logits[:b].float(), y_fake)
    if objective.image_loss_weight > 0:
        terms["g_image"] = generator_loss(fake_logits.float(), objective.adversarial_loss)
    return terms


def consistency_term(report_decoder: nn.Module, x_fake: torch.Tensor, y_fake: torch.Tensor) -> torch.Tensor:
    """BCE of F's label head on G's images against their conditioning labels. F's parameters are frozen and its
    BatchNorms read their running (real-image) statistics, as at inference, so only G moves."""
    with frozen([report_decoder]), eval_mode(report_decoder) as f:
        return classification_loss(f.label_logits(x_fake).float(), y_fake)


def text_generator_terms(
    networks: EMIXERNetworks, x_fake: torch.Tensor, s_fake: torch.Tensor, objective: Objective
) -> Terms:
    """G's (and F's) adversarial text terms: the generated reports through D_report, the pairs through D_joint."""
    terms: Terms = {}
    if objective.report_loss_weight > 0:
        terms["g_report"] = generator_loss(networks.report_discriminator(s_fake).float(), objective.adversarial_loss)
    if objective.joint_loss_weight > 0:
        logits = networks.joint_discriminator(x_fake, s_fake)
        terms["g_joint"] = generator_loss(logits.float(), objective.adversarial_loss)
    return terms


def generator_objective(
    networks: EMIXERNetworks,
    x_fake: torch.Tensor,
    y_fake: torch.Tensor,
    objective: Objective,
    controls: GradientControls,
    labelled: bool = True,
) -> tuple[Terms, torch.Tensor]:
    """G's and F's adversarial terms on G's images ``x_fake`` drawn for ``y_fake``, and their weighted sum.

    The image terms (D_image, rotation, auxiliary classifier) and F's label consistency read ``x_fake``; the text
    terms read F's reports of it, sampled from ``x_text`` (:func:`~bundle.training.gradients.text_reader_input`:
    the text path's gradient to G scaled or, when bounded, cut there and added back per image within its bound by
    :func:`~bundle.training.gradients.bounded_text_gradient`). ``labelled`` False: the fakes have no labels (no
    classifier or consistency term). Teacher forcing is not included (:func:`teacher_forcing_terms`)."""
    terms: Terms = {}
    if objective.uses_image_discriminator:
        terms |= image_generator_terms(networks.image_discriminator, x_fake, y_fake, objective, labelled)
    if objective.consistency_weight and labelled:
        terms["g_consistency"] = consistency_term(networks.report_decoder, x_fake, y_fake)
    adversarial = image_total = weighted_sum(terms, objective, x_fake)
    if objective.uses_text:
        x_text = text_reader_input(x_fake, controls)
        s_fake = sample_reports(networks.report_decoder, x_text, y_fake, objective.gumbel_temperature)
        text = text_generator_terms(networks, x_fake, s_fake, objective)
        text_total = weighted_sum(text, objective, x_fake)
        terms |= text
        adversarial = adversarial + text_total
        if controls.bounds_text_gradient:
            ratio, scale = controls.text_grad_max_ratio, controls.text_grad_to_generator
            adversarial = adversarial + bounded_text_gradient(x_fake, x_text, image_total, text_total, ratio, scale)
    return terms, adversarial


def teacher_forcing_terms(
    report_decoder: nn.Module,
    images: torch.Tensor,
    report_tokens: torch.Tensor,
    num_sentences: torch.Tensor | None,
    labels: torch.Tensor,
    labelled: torch.Tensor | None,
    objective: Objective,
) -> Terms:
    """F's teacher-forced loss on real pairs (``f_teacher_forcing``, with its label head's BCE on the labelled
    rows inside it, also logged alone as ``f_labels``)."""
    out = report_decoder.loss(
        images, report_tokens, num_sentences, objective.stop_weight, labels, labelled, objective.report_label_weight
    )
    terms: Terms = {"f_teacher_forcing": out["loss"].float()}
    if "label_loss" in out:
        terms["f_labels"] = out["label_loss"]
    return terms
