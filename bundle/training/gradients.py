"""Gradient routing of EMIXER's generator step: how much of each adversarial gradient reaches the report decoder F,
and how much crosses F into the generator G.

The paper trains G and F end to end on the plain sum of their terms. Adam divides every update by a running
gradient scale, so a fixed weight does not stop a term whose gradients are larger or noisier from setting the
direction of a step; :class:`GradientControls` scales and bounds the two paths where that matters, and the
functions here do it (per parameter tensor for F, per generated image for G).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "GradientControls",
    "add_bounded_grads",
    "backward_split",
    "bound_scale",
    "bounded_text_gradient",
    "eval_mode",
    "frozen",
    "scale_gradient",
    "scale_grads",
    "take_grads",
    "text_reader_input",
]


@dataclass(frozen=True)
class GradientControls:
    """Scales and bounds of the adversarial gradients of G's step (defaults: the paper's plain end-to-end sum).

    Attributes:
        f_adversarial_weight: scale of the gradients F itself gets from the adversarial terms (its Gumbel-softmax
            reports judged by D_report and D_joint); G still gets them through F in full.
        f_image_adversarial_weight: the same scale for F's image reading alone (its encoder and label head,
            ``ReportDecoder.image_reader_parameters``); None = ``f_adversarial_weight``. At 0 F reads images as it
            learnt from real pairs while the adversarial terms still shape how it writes.
        f_adversarial_max_ratio: each of F's parameter tensors takes its (weighted) adversarial gradient scaled
            down, where needed, to at most this fraction of the norm of its teacher-forcing gradient in the same
            step: teacher forcing keeps the direction, the adversarial terms nudge it. None: no bound.
        text_grad_to_generator: scale of the gradient G's report and joint terms send back to G through F's reading
            of its image (1 = end to end, 0 = G's reports are written from a detached copy of its images).
        text_grad_max_ratio: on each generated image, the gradient that crosses F is scaled down, where needed, to
            at most this fraction of the norm of the image terms' gradient on the same image (then times
            ``text_grad_to_generator``). A gradient through a sharp image reader acts like an adversarial-example
            perturbation; under the bound the image terms keep the direction of G's step. None: no bound. Costs
            two extra partial backward passes per iteration.
    """

    f_adversarial_weight: float = 1.0
    f_image_adversarial_weight: float | None = None
    f_adversarial_max_ratio: float | None = None
    text_grad_to_generator: float = 1.0
    text_grad_max_ratio: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "text_grad_to_generator", float(self.text_grad_to_generator))  # bool -> 0 / 1
        if self.f_image_adversarial_weight is None:
            object.__setattr__(self, "f_image_adversarial_weight", float(self.f_adversarial_weight))
        for name in ("f_adversarial_weight", "f_image_adversarial_weight", "text_grad_to_generator"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (a gradient scale)")
        for name in ("f_adversarial_max_ratio", "text_grad_max_ratio"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (or None: no bound)")

    def splits_backward(self, has_teacher: bool) -> bool:
        """True when G's step needs two backward passes (:func:`backward_split`): F's adversarial gradient is scaled,
        or bounded by a teacher-forcing gradient (``has_teacher``)."""
        scaled = self.f_adversarial_weight != 1.0 or self.f_image_adversarial_weight != 1.0
        return scaled or (self.f_adversarial_max_ratio is not None and has_teacher)

    @property
    def bounds_text_gradient(self) -> bool:
        return self.text_grad_max_ratio is not None and self.text_grad_to_generator > 0


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


def scale_gradient(tensor: torch.Tensor, scale: float) -> torch.Tensor:
    """``tensor`` whose gradient is multiplied by ``scale`` on the way back: itself at 1, detached at 0."""
    if scale == 1.0:
        return tensor
    if scale == 0.0:
        return tensor.detach()
    return _ScaleGradient.apply(tensor, float(scale))


def bound_scale(norm: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """The factor that brings a gradient of norm ``norm`` down to at most ``limit`` (1 where it is already within)."""
    return torch.where(norm > limit, limit / norm.clamp(min=torch.finfo(norm.dtype).tiny), torch.ones_like(norm))


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block (BatchNorms read, and do not update, their running statistics;
    gradients still flow), its own mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@contextlib.contextmanager
def frozen(modules: Iterable[nn.Module | None]) -> Iterator[None]:
    """No parameter of ``modules`` takes a gradient inside the block (gradients still flow through them to their
    inputs); each parameter's own ``requires_grad`` is restored after."""
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def text_reader_input(x_fake: torch.Tensor, controls: GradientControls) -> torch.Tensor:
    """What F reads of G's images in G's step: a detached copy when the text gradient is bounded (its gradient is
    then added back, bounded, by :func:`bounded_text_gradient`), else a view whose gradient is scaled by
    ``text_grad_to_generator``."""
    if controls.bounds_text_gradient:
        return x_fake.detach().requires_grad_(True)
    return scale_gradient(x_fake, controls.text_grad_to_generator)


def bounded_text_gradient(
    x_fake: torch.Tensor,
    x_text: torch.Tensor,
    image_terms: torch.Tensor,
    text_terms: torch.Tensor,
    max_ratio: float,
    scale: float,
) -> torch.Tensor:
    """A term whose gradient on G's images ``x_fake`` is the text terms' gradient through F (which read ``x_text``,
    a detached copy of ``x_fake``), scaled per image to at most ``max_ratio`` x the norm of the image terms'
    gradient on that image, times ``scale``."""
    (text_grad,) = torch.autograd.grad(text_terms, x_text, retain_graph=True, allow_unused=True)
    if text_grad is None:
        return x_fake.new_zeros(())
    image_grad = None
    if image_terms.requires_grad:
        (image_grad,) = torch.autograd.grad(image_terms, x_fake, retain_graph=True, allow_unused=True)
    dims = tuple(range(1, x_fake.dim()))
    text_norm = torch.linalg.vector_norm(text_grad, dim=dims, keepdim=True)
    if image_grad is None:
        limit = torch.zeros_like(text_norm)
    else:
        limit = max_ratio * torch.linalg.vector_norm(image_grad, dim=dims, keepdim=True)
    factor = bound_scale(text_norm, limit)
    return (x_fake * (scale * factor * text_grad).detach()).sum()


def scale_grads(module: nn.Module, weight: float, image_weight: float, image_params: set[int]) -> None:
    """Scale the gradients ``module`` holds by ``weight``, those of the parameters whose ``id`` is in
    ``image_params`` by ``image_weight`` (0: drop them)."""
    for p in module.parameters():
        if p.grad is not None:
            w = image_weight if id(p) in image_params else weight
            p.grad.zero_() if w == 0 else p.grad.mul_(w)


def take_grads(module: nn.Module) -> list[torch.Tensor | None]:
    """``module``'s current gradients, removed from its parameters, in parameter order."""
    taken = []
    for p in module.parameters():
        taken.append(p.grad)
        p.grad = None
    return taken


def add_bounded_grads(module: nn.Module, extra: Sequence[torch.Tensor | None], max_ratio: float) -> None:
    """Add each stashed gradient of ``extra`` to the matching parameter's gradient, scaled down to at most
    ``max_ratio`` x that gradient's norm (dropped where the parameter has no gradient)."""
    for p, grad in zip(module.parameters(), extra):
        if grad is None or p.grad is None:
            continue
        limit = max_ratio * torch.linalg.vector_norm(p.grad)
        p.grad.add_(grad * bound_scale(torch.linalg.vector_norm(grad), limit))


def backward_split(
    report_decoder: nn.Module,
    adversarial: torch.Tensor,
    teacher: torch.Tensor | None,
    controls: GradientControls,
    scaler: Any,
    image_params: set[int],
) -> None:
    """Backward of G's step in two passes, so that F's share of the ``adversarial`` gradient can be scaled by
    ``controls`` (its image-reading parameters, ids in ``image_params``, by their own weight) and, with
    ``f_adversarial_max_ratio``, bounded per tensor by the ``teacher``-forcing gradient (``scaler``: the step's
    ``GradScaler``)."""
    scaler.scale(adversarial).backward()
    scale_grads(report_decoder, controls.f_adversarial_weight, controls.f_image_adversarial_weight, image_params)
    bounded = controls.f_adversarial_max_ratio is not None and teacher is not None
    stashed = take_grads(report_decoder) if bounded else None
    if teacher is not None:
        scaler.scale(teacher).backward()
    if stashed is not None:
        add_bounded_grads(report_decoder, stashed, controls.f_adversarial_max_ratio)
