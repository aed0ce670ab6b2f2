"""The EMIXER training engine: n_critic steps of the three discriminators, then one step of G and F.

:class:`EMIXERTrainer` is a ``monai.engines.Trainer`` that overrides ``_iteration``, as the Model Zoo's
brats_mri_generative_diffusion trainer does. MONAI's ``GanTrainer`` steps one G/D pair without labels or AMP;
EMIXER (paper section 3.2, appendix 6.3) steps an image discriminator with a projection term and SS-GAN's
rotation head, a report discriminator and a joint (image, report) discriminator against the image generator
G and the image-to-report decoder F, with D:G = n_critic:1.

One iteration on a real batch ``(I, S, y)``:

* ``n_critic`` discriminator steps, each on the whole real batch (or on its ``n_critic`` chunks with
  ``d_split_batch``, BigGAN's way) against fresh fakes ``I' = G(z, y')``, ``S' = F.sample(I')`` made without
  gradients. ``D_image`` scores ``(I, y)`` vs ``(I', y')`` (hinge or non-saturating), plus ``alpha`` x the
  rotation loss on the four rotations of the REAL images (the rotation-0 copy doubles as the real input,
  so reals, their rotations and the fakes go through ``D_image`` in one forward pass); ``D_report`` scores
  ``S`` vs ``S'``; ``D_joint`` scores ``(I, S)`` vs ``(I', S')``.
* One generator step of G and F together: the adversarial terms through all three discriminators on new
  fakes (text kept differentiable by straight-through Gumbel-softmax word distributions), plus
  ``rotation_weight_g`` x the rotation loss on the rotated FAKE images, plus ``teacher_forcing_weight`` x F's
  teacher-forced loss on the real pairs. The discriminators' parameters are frozen for this step, so no
  gradient is computed for them.
* The fake labels ``y'`` are rows of the real batch's labels drawn among its labelled items (a permutation
  when all are labelled), so the generated label distribution follows the data; they are drawn on the CPU
  before the transfer. Unlabelled items (``labelled`` = 0) enter ``D_image`` with an all-zero label row,
  which zeroes its projection term: they still train the unconditional and rotation terms.

``engine.state.output`` is a dict of Python floats, one per enabled term (unweighted, averaged over the
critic steps for the ``d_*`` terms) plus the weighted totals ``d_total`` / ``g_total``; all of them come to
the host in one transfer per iteration.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from ignite.engine import Engine, Events
from monai.engines import Trainer
from monai.engines.utils import default_metric_cmp_fn
from monai.engines.workflow import Workflow
from torch.optim import Optimizer

from bundle.diff_augment import DiffAugment
from bundle.distributed import all_reduce_gradients, all_reduce_mean, broadcast_modules, is_distributed
from bundle.losses import (
    ADVERSARIAL_LOSSES,
    classification_loss,
    discriminator_loss,
    generator_loss,
    rotate_batch,
    rotation_loss,
)

__all__ = ["EMIXERTrainer", "prepare_emixer_batch", "fake_label_indices", "scale_gradient", "BATCH_KEYS", "LOSS_KEYS"]

IMAGE, LABELS, REPORT, NUM_SENTENCES, LABELLED = "image", "labels", "report_tokens", "report_num_sentences", "labelled"
#: Batch keys the trainer reads; ``report_num_sentences`` and ``labelled`` are optional.
BATCH_KEYS = (IMAGE, LABELS, REPORT, NUM_SENTENCES, LABELLED)
#: Every key ``engine.state.output`` can hold (a term switched off is left out).
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
    "f_extra_teacher_forcing",
    "g_total",
)


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


def bound_scale(norm: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """The factor that brings a gradient of norm ``norm`` down to at most ``limit`` (1 where it is already within)."""
    return torch.where(norm > limit, limit / norm.clamp(min=torch.finfo(norm.dtype).tiny), torch.ones_like(norm))


def _plain(tensor: Any) -> Any:
    """A MetaTensor as a plain tensor (metadata tracking costs time in every op), anything else unchanged."""
    as_tensor = getattr(tensor, "as_tensor", None)
    return as_tensor() if callable(as_tensor) else tensor


def prepare_emixer_batch(
    batchdata: Mapping[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
) -> dict[str, torch.Tensor]:
    """Pick the trainer's keys from a collated batch and move them to ``device``.

    Returns ``image`` (float), ``labels`` (float ``[B, k]``), ``report_tokens`` (long ``[B, S, W]``), optionally
    ``report_num_sentences`` (long ``[B]``) and ``labelled`` (float ``[B]``, 1 = labels kept; all ones if absent).
    """
    if not isinstance(batchdata, Mapping):
        raise TypeError(f"the EMIXER trainer needs dict batches, got {type(batchdata).__name__}")
    missing = [key for key in (IMAGE, LABELS, REPORT) if key not in batchdata]
    if missing:
        needs = list(BATCH_KEYS[:3])
        raise KeyError(f"batch has no {missing}; the EMIXER trainer needs {needs}; got {list(batchdata)}")
    out: dict[str, torch.Tensor] = {}
    for key in BATCH_KEYS:
        if key not in batchdata:
            continue
        value = torch.as_tensor(_plain(batchdata[key]))
        if key in (IMAGE, LABELS, LABELLED):
            value = value.float()
        else:
            value = value.long()
        out[key] = value.to(device=device, non_blocking=non_blocking, **kwargs)
    return out


def fake_label_indices(
    labelled: torch.Tensor | None, batch_size: int, draws: int, size: int | None = None
) -> torch.Tensor | None:
    """Row indices ``[draws, size]`` into a batch's labels for ``draws`` sets of fake labels.

    All items labelled: a random permutation per draw (the batch's label multiset exactly). Some labelled:
    uniform draws with replacement among the labelled rows. None labelled: ``None`` (fakes get zero labels).
    Runs on the CPU (no device synchronisation). ``size`` defaults to ``batch_size``.
    """
    size = batch_size if size is None else size
    if labelled is None or bool((labelled > 0).all()):
        if size == batch_size:
            return torch.argsort(torch.rand(draws, batch_size), dim=1)
        return torch.randint(batch_size, (draws, size))
    rows = torch.nonzero(labelled > 0).flatten()
    if rows.numel() == 0:
        return None
    return rows[torch.randint(rows.numel(), (draws, size))]


class EMIXERTrainer(Trainer):
    """EMIXER's adversarial trainer (see the module docstring for one iteration).

    Networks are used where they are (move them to ``device`` before, as MONAI's trainers expect).

    Args:
        device: device of the batches (and of the networks).
        max_epochs: epochs to run.
        train_data_loader: yields dict batches with ``image``, ``labels``, ``report_tokens`` and optionally
            ``report_num_sentences`` and ``labelled``.
        generator: image generator G(z, y).
        report_decoder: image-to-report decoder F (``loss`` for teacher forcing, ``sample`` for fakes).
        image_discriminator: projection discriminator with rotation head; may be None when both
            ``use_image_loss`` and ``use_rotation_loss`` are off.
        g_optimizer: optimiser of G, or of G and F together when ``f_optimizer`` is None.
        d_optimizer: one optimiser over all the discriminators in use (stepped once per critic step).
        report_discriminator: D_report; may be None when ``use_report_loss`` is off.
        joint_discriminator: D_joint; may be None when ``use_joint_loss`` is off.
        f_optimizer: separate optimiser of F (stepped with G's); None when ``g_optimizer`` holds F's parameters.
        latent_dim: size of z; None takes ``generator.latent_dim``.
        n_critic: discriminator steps per generator step (2 in the paper).
        d_split_batch: give each critic step its own ``1 / n_critic`` chunk of the real batch (BigGAN, with a
            loader batch of ``n_critic x`` the step batch) instead of the whole batch every step.
        alpha: weight of the rotation loss of D_image on rotated real images (the paper's alpha).
        rotation_weight_g: weight of the rotation loss of G on rotated fake images (SS-GAN's beta, 0.2).
        adversarial_loss: ``"hinge"`` (BigGAN) or ``"non_saturating"``.
        use_image_loss / use_report_loss / use_joint_loss / use_rotation_loss / use_teacher_forcing: switch
            each term off (the SM-GAN ablation turns report and joint off).
        image_loss_weight / report_loss_weight / joint_loss_weight: weights of the adversarial terms (for D
            and G alike).
        teacher_forcing_weight: weight of F's teacher-forced loss in the generator step.
        classification_weight: weight of the auxiliary finding classifier of D_image (AC-GAN style; 0, the paper's
            setting, switches it off; needs ``class_head=True``): D learns it on the labelled real images (BCE) and
            G gets the same BCE of its fakes against their conditioning labels (``d_class`` / ``g_class``).
        report_label_weight: weight of the BCE of F's label head on the labelled real images (``f_labels``; only
            when F was built with ``num_classes`` > 0).
        consistency_weight: weight of G's label consistency term (``g_consistency``; 0 = off, the paper's setting;
            needs F's label head): the BCE of F's label head, read on G's images, against their conditioning labels.
            F is frozen for this term (it learns its head on real images only), so only G moves: G is asked to draw
            what F reads as the requested findings, the findings F's reports are conditioned on.
        stop_weight: weight of the stop-probability loss inside F's teacher-forced loss.
        f_adversarial_weight: scale of the gradients F itself gets from G's adversarial terms (its Gumbel-softmax
            reports judged by D_report and D_joint); G still gets them through F in full. 1 = the paper's
            end-to-end training; below 1, F leans on teacher forcing: on the CPU demo the full adversarial gradient
            undid in about 150 iterations the language a warmed-up F had learnt (teacher-forcing loss 1.3 -> 3.0).
        f_image_adversarial_weight: the same scale for F's image reading alone (its encoder and label head:
            ``ReportDecoder.image_reader_parameters``); None = ``f_adversarial_weight``. At 0 F reads images as it
            learnt from real pairs (teacher forcing, the head's BCE) while the adversarial terms still shape how it
            writes (sentence and word LSTMs, embeddings); G's gradient through F is unaffected (that is
            ``text_grad_to_generator``).
        f_adversarial_max_ratio: bound on F's adversarial gradient relative to its teacher-forcing gradient: each of
            F's parameter tensors takes the (weighted) adversarial gradient scaled down, where needed, to at most
            this fraction of the norm of its teacher-forcing gradient in the same step. Adam divides every update by
            a running gradient scale, so a fixed weight does not stop a term whose gradients are larger or noisier
            from setting the direction; under the bound, teacher forcing keeps the direction and the adversarial
            terms nudge it. None: no bound (the paper's plain sum).
        text_grad_to_generator: scale of the gradient G's report and joint terms send back to G through F's reading
            of its image (the paper's end-to-end path; ``True`` = 1, ``False`` = 0). At 0 G's reports are written
            from a detached copy of its images, so D_joint judges G's images through its image branch only; between
            0 and 1 the path stays on with a smaller step: the forward pass is unchanged, only the gradient that
            crosses F into G is scaled.
        text_grad_max_ratio: bound on that gradient relative to the image terms' (D_image, rotation, auxiliary
            classifier, consistency): on each generated image, the gradient that crosses F is scaled down, where
            needed, to at most this fraction of the norm of the image terms' gradient on the same image (then times
            ``text_grad_to_generator``). A gradient through a sharp image reader acts like an adversarial-example
            perturbation; under the bound the image terms keep the direction of G's step. None: no bound. Costs
            two extra partial backward passes per iteration.
        report_warmup_iterations: teacher-forcing steps of F alone (its optimiser, the training batches) before
            the first GAN iteration of a fresh run (not of a resumed one). A decoder that already writes reports
            gives the report and joint discriminators real text to judge from the start, and one F step costs a
            fraction of a GAN iteration. 0 = none (the paper's setting).
        consistency_snapshot_iteration: warm-up step (1 .. ``report_warmup_iterations``) after which G's consistency
            term reads a frozen copy of F (``consistency_decoder``, taken then and kept in checkpoints) instead of
            F as it goes on training. F can then warm up for longer, for its reports, while G is asked to satisfy
            the head of that earlier, smoother F. None: F itself (the default).
        report_steps_per_iteration: extra teacher-forcing steps of F alone after each GAN iteration, on batches of
            their own (as in the warm-up). One F step costs a fraction of a GAN iteration, and F's reports improve
            with steps long after the images stop needing it. 0 = none.
        diff_augment: DiffAugment policies (``bundle.diff_augment``: ``"brightness"``, ``"contrast"``,
            ``"translation"``, ``"cutout"``) applied to every image D_image reads, real and generated, in D's step and
            in G's (a callable ``images -> images`` is used as given). None or empty: off (the paper's setting).
            D_joint and F's consistency head read G's images unaugmented.
        gumbel_temperature: temperature of the Gumbel-softmax word sampling of generated reports.
        ema_decay: decay of the exponential moving average of G's weights kept in ``ema_generator`` (updated
            after each generator step; buffers such as BatchNorm statistics are copied); None = no EMA.
        ema_start: iterations before which the EMA copy just follows G (BigGAN starts averaging late).
        amp: mixed precision on CUDA (``torch.autocast`` + one ``GradScaler`` for D and one for G/F); ignored
            on other devices, which run in fp32.
        amp_kwargs: arguments of ``torch.autocast`` (e.g. ``{"dtype": torch.bfloat16}``).
        optim_set_to_none: ``zero_grad(set_to_none=...)``.
        distributed: data-parallel over a ``torch.distributed`` process group (torchrun): rank 0's weights are
            broadcast at construction, gradients averaged after each backward and the logged losses averaged
            over the processes (see :mod:`bundle.distributed` for why not DDP wrappers). None = on when a
            process group of more than one process is initialised.
        epoch_length, non_blocking, prepare_batch, iteration_update, key_train_metric, additional_metrics,
        metric_cmp_fn, train_handlers, event_names, event_to_attr, to_kwargs: as in ``monai.engines.Trainer``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        generator: nn.Module,
        report_decoder: nn.Module,
        image_discriminator: nn.Module | None,
        g_optimizer: Optimizer,
        d_optimizer: Optimizer,
        report_discriminator: nn.Module | None = None,
        joint_discriminator: nn.Module | None = None,
        f_optimizer: Optimizer | None = None,
        latent_dim: int | None = None,
        n_critic: int = 2,
        d_split_batch: bool = False,
        alpha: float = 1.0,
        rotation_weight_g: float = 0.2,
        adversarial_loss: str = "hinge",
        use_image_loss: bool = True,
        use_report_loss: bool = True,
        use_joint_loss: bool = True,
        use_rotation_loss: bool = True,
        use_teacher_forcing: bool = True,
        image_loss_weight: float = 1.0,
        report_loss_weight: float = 1.0,
        joint_loss_weight: float = 1.0,
        teacher_forcing_weight: float = 1.0,
        classification_weight: float = 0.0,
        report_label_weight: float = 1.0,
        consistency_weight: float = 0.0,
        stop_weight: float = 1.0,
        f_adversarial_weight: float = 1.0,
        f_image_adversarial_weight: float | None = None,
        f_adversarial_max_ratio: float | None = None,
        text_grad_to_generator: bool | float = True,
        text_grad_max_ratio: float | None = None,
        report_warmup_iterations: int = 0,
        consistency_snapshot_iteration: int | None = None,
        report_steps_per_iteration: int = 0,
        diff_augment: Sequence[str] | Callable[[torch.Tensor], torch.Tensor] | None = None,
        gumbel_temperature: float = 1.0,
        ema_decay: float | None = None,
        ema_start: int = 0,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = prepare_emixer_batch,
        iteration_update: Callable | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        optim_set_to_none: bool = True,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
        distributed: bool | None = None,
    ) -> None:
        if adversarial_loss not in ADVERSARIAL_LOSSES:
            raise ValueError(f"adversarial_loss={adversarial_loss!r} is not one of {ADVERSARIAL_LOSSES}")
        if n_critic < 1:
            raise ValueError(f"n_critic={n_critic} must be >= 1")
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay={ema_decay} must be in [0, 1), or null for no EMA")
        needed = {
            "image_discriminator": (image_discriminator, use_image_loss or use_rotation_loss),
            "report_discriminator": (report_discriminator, use_report_loss),
            "joint_discriminator": (joint_discriminator, use_joint_loss),
        }
        for name, (network, used) in needed.items():
            if used and network is None:
                raise ValueError(f"{name} is None but its loss term is switched on; pass the network or switch it off")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            handlers=None,  # attached at the end, once every attribute a handler may read exists
            amp=amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=False,  # the output is a dict of floats, nothing to decollate
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.generator, self.report_decoder = generator, report_decoder
        self.image_discriminator = image_discriminator
        self.report_discriminator = report_discriminator
        self.joint_discriminator = joint_discriminator
        self.g_optimizer, self.d_optimizer, self.f_optimizer = g_optimizer, d_optimizer, f_optimizer
        self.latent_dim = int(latent_dim if latent_dim is not None else generator.latent_dim)
        self.n_critic, self.d_split_batch = int(n_critic), bool(d_split_batch)
        self.alpha, self.rotation_weight_g = float(alpha), float(rotation_weight_g)
        self.adversarial_loss = adversarial_loss
        self.use_image_loss, self.use_report_loss, self.use_joint_loss = use_image_loss, use_report_loss, use_joint_loss
        self.use_rotation_loss, self.use_teacher_forcing = use_rotation_loss, use_teacher_forcing
        self.image_loss_weight, self.report_loss_weight = float(image_loss_weight), float(report_loss_weight)
        self.joint_loss_weight, self.teacher_forcing_weight = float(joint_loss_weight), float(teacher_forcing_weight)
        self.stop_weight, self.gumbel_temperature = float(stop_weight), float(gumbel_temperature)
        if f_adversarial_weight < 0:
            raise ValueError(f"f_adversarial_weight={f_adversarial_weight} must be >= 0")
        self.f_adversarial_weight = float(f_adversarial_weight)
        if f_image_adversarial_weight is None:
            f_image_adversarial_weight = self.f_adversarial_weight
        if f_image_adversarial_weight < 0:
            raise ValueError(f"f_image_adversarial_weight={f_image_adversarial_weight} must be >= 0 (or None)")
        self.f_image_adversarial_weight = float(f_image_adversarial_weight)
        if f_adversarial_max_ratio is not None and f_adversarial_max_ratio < 0:
            raise ValueError(f"f_adversarial_max_ratio={f_adversarial_max_ratio} must be >= 0 (or None)")
        self.f_adversarial_max_ratio = None if f_adversarial_max_ratio is None else float(f_adversarial_max_ratio)
        reader = getattr(report_decoder, "image_reader_parameters", None)
        self._f_image_params = {id(p) for p in reader()} if callable(reader) else set()
        if float(text_grad_to_generator) < 0:
            raise ValueError(f"text_grad_to_generator={text_grad_to_generator} must be >= 0 (a gradient scale)")
        self.text_grad_to_generator = float(text_grad_to_generator)
        if text_grad_max_ratio is not None and text_grad_max_ratio < 0:
            raise ValueError(f"text_grad_max_ratio={text_grad_max_ratio} must be >= 0 (or None)")
        self.text_grad_max_ratio = None if text_grad_max_ratio is None else float(text_grad_max_ratio)
        if diff_augment is None or callable(diff_augment):
            self.diff_augment = diff_augment
        else:
            self.diff_augment = DiffAugment(diff_augment) if len(diff_augment) else None
        self.classification_weight, self.report_label_weight = float(classification_weight), float(report_label_weight)
        self.consistency_weight = float(consistency_weight)
        if self.consistency_weight and getattr(report_decoder, "label_head", None) is None:
            raise ValueError("consistency_weight > 0 needs a report_decoder built with num_classes > 0 (a label head)")
        if self.classification_weight and getattr(image_discriminator, "classifier", None) is None:
            raise ValueError("classification_weight > 0 needs an image_discriminator built with class_head=True")
        self.optim_set_to_none = optim_set_to_none
        if report_warmup_iterations < 0:
            raise ValueError(f"report_warmup_iterations={report_warmup_iterations} must be >= 0")
        self.report_warmup_iterations = int(report_warmup_iterations)
        if self.report_warmup_iterations:  # iteration 1 only: a resumed run starts later and skips it
            self.add_event_handler(Events.ITERATION_STARTED(once=1), self.warm_up_report_decoder)
        self.consistency_snapshot_iteration = consistency_snapshot_iteration
        self.consistency_decoder: nn.Module | None = None
        if consistency_snapshot_iteration is not None:
            if not 1 <= consistency_snapshot_iteration <= self.report_warmup_iterations:
                raise ValueError(
                    f"consistency_snapshot_iteration={consistency_snapshot_iteration} must be a warm-up step, in "
                    f"1..report_warmup_iterations={self.report_warmup_iterations}"
                )
            if not self.consistency_weight:
                raise ValueError("consistency_snapshot_iteration is set but consistency_weight is 0 (nothing reads it)")
            # made now so that a resumed run has it to load into; its weights are F's at the snapshot step
            self.consistency_decoder = copy.deepcopy(report_decoder).eval().requires_grad_(False)
        if report_steps_per_iteration < 0:
            raise ValueError(f"report_steps_per_iteration={report_steps_per_iteration} must be >= 0")
        self.report_steps_per_iteration = int(report_steps_per_iteration)
        self._report_batches: Iterator | None = None

        # Mixed precision only where it helps and GradScaler works: CUDA. Elsewhere fp32 and no-op scalers.
        self.use_autocast = bool(amp) and self.state.device is not None and self.state.device.type == "cuda"
        self.d_scaler = torch.amp.GradScaler("cuda", enabled=self.use_autocast)
        self.g_scaler = torch.amp.GradScaler("cuda", enabled=self.use_autocast)

        self._discriminators = [
            d for d in (image_discriminator, report_discriminator, joint_discriminator) if d is not None
        ]
        self._d_params = [p for d in self._discriminators for p in d.parameters() if p.requires_grad]

        self.distributed = is_distributed() if distributed is None else bool(distributed)
        if self.distributed:  # every process starts from rank 0's weights (before the EMA copy is taken)
            broadcast_modules([generator, report_decoder, *self._discriminators])
        self._g_step_params = [
            p
            for opt in (g_optimizer, f_optimizer)
            if opt is not None
            for group in opt.param_groups
            for p in group["params"]
        ]

        self.ema_decay, self.ema_start = ema_decay, int(ema_start)
        self.ema_generator: nn.Module | None = None
        if ema_decay is not None:
            self.ema_generator = copy.deepcopy(generator).eval().requires_grad_(False)
            self._ema_params = [p for p in self.ema_generator.parameters()]
            self._g_params = [p for p in generator.parameters()]
            self._ema_buffers = list(zip(self.ema_generator.buffers(), generator.buffers()))

        if train_handlers is not None:
            self._register_handlers(train_handlers)

    def warm_up_report_decoder(self, engine: Engine | None = None) -> list[float]:
        """``report_warmup_iterations`` teacher-forcing steps of F alone on the training batches (with its label
        head's BCE when it has one); the other networks are untouched. Takes the ``consistency_decoder`` snapshot
        at its step. Returns the losses."""
        losses: list[float] = []
        while len(losses) < self.report_warmup_iterations:
            losses.append(self.report_decoder_step())
            if len(losses) == self.consistency_snapshot_iteration and self.consistency_decoder is not None:
                self.consistency_decoder.load_state_dict(self.report_decoder.state_dict())
            if len(losses) % 100 == 0 or len(losses) == self.report_warmup_iterations:
                self.logger.info(
                    f"report decoder warm-up {len(losses)}/{self.report_warmup_iterations}: "
                    f"teacher-forcing loss {sum(losses[-100:]) / len(losses[-100:]):.3f}"
                )
        if not self.report_steps_per_iteration:
            self._report_batches = None  # release the warm-up's pass over the data (and its loader workers)
        return losses

    def report_decoder_step(self) -> float:
        """One teacher-forcing step of F alone (its optimiser) on the next batch of its own pass over the training
        data; returns the loss."""
        optimizer = self.f_optimizer or self.g_optimizer
        batchdata = next(self._report_batches, None) if self._report_batches is not None else None
        if batchdata is None:
            self._report_batches = iter(self.data_loader)
            batchdata = next(self._report_batches, None)
            if batchdata is None:
                raise ValueError("the training data loader yields no batches")
        batch = self.prepare_batch(batchdata, self.state.device, self.non_blocking, **self.to_kwargs)
        with self._autocast():
            out = self._teacher_forcing_loss(batch)
        optimizer.zero_grad(set_to_none=self.optim_set_to_none)
        self.g_scaler.scale(out["loss"].float()).backward()
        if self.distributed:
            all_reduce_gradients([p for p in self.report_decoder.parameters() if p.requires_grad])
        self.g_scaler.step(optimizer)
        self.g_scaler.update()
        return float(out["loss"].detach())

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _labels_of(batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch's labels (zeros on unlabelled rows) and its ``labelled`` mask (None when absent)."""
        labelled = batch.get(LABELLED)
        labels = batch[LABELS] if labelled is None else batch[LABELS] * labelled.reshape(-1, 1)
        return labels, labelled

    def _teacher_forcing_loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """F's teacher-forced loss on a batch of real pairs (with its label head's BCE on the labelled rows)."""
        labels, labelled = self._labels_of(batch)
        return self.report_decoder.loss(
            batch[IMAGE],
            batch[REPORT],
            batch.get(NUM_SENTENCES),
            self.stop_weight,
            labels,
            labelled,
            self.report_label_weight,
        )

    def run(self) -> None:  # type: ignore[override]
        """Run training. ``Trainer.run`` would replace the scalers by a single new one, so go to ``Workflow``."""
        Workflow.run(self)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.use_autocast:
            return torch.autocast(device_type="cuda", **self.amp_kwargs)
        return contextlib.nullcontext()

    def _sample_reports(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Word distributions ``[B, S, W, V]`` of F's straight-through Gumbel-softmax reports for G's ``images`` drawn
        for ``labels`` (which a ``label_conditioned`` F writes from). F reads them in eval mode: its BatchNorms use,
        and do not update, the running statistics of the real images it learns from, so generated images never
        shift how it reads real ones (gradients flow as in train mode)."""
        with eval_mode(self.report_decoder) as f:
            return f.sample(images, temperature=self.gumbel_temperature, hard=True, gumbel=True, labels=labels)[
                "word_probs"
            ]

    @staticmethod
    def _fake_labels(labels: torch.Tensor, index: torch.Tensor | None, step: int, size: int) -> torch.Tensor:
        """Fake labels of one step: rows of the batch's labels, or zeros when no item of the batch is labelled."""
        return labels.new_zeros(size, labels.shape[1]) if index is None else labels[index[step]]

    @torch.no_grad()
    def update_ema(self) -> None:
        """Move ``ema_generator`` towards G (copy before ``ema_start``); copy G's buffers."""
        if self.ema_generator is None:
            return
        weight = 1.0 if self.state.iteration < self.ema_start else 1.0 - self.ema_decay
        torch._foreach_lerp_(self._ema_params, self._g_params, weight)
        for ema_buffer, buffer in self._ema_buffers:
            ema_buffer.copy_(buffer)

    def checkpoint_dict(self, include_rng: bool = True) -> dict[str, Any]:
        """Everything a resumed run needs, for MONAI's ``CheckpointSaver`` / ``CheckpointLoader``: the trainer (epoch
        and iteration), every network (EMA copy included), optimiser and grad scaler, and the RNG states."""
        objects: dict[str, Any] = {
            "trainer": self,
            "generator": self.generator,
            "report_decoder": self.report_decoder,
            "image_discriminator": self.image_discriminator,
            "report_discriminator": self.report_discriminator,
            "joint_discriminator": self.joint_discriminator,
            "ema_generator": self.ema_generator,
            "consistency_decoder": self.consistency_decoder,
            "g_optimizer": self.g_optimizer,
            "f_optimizer": self.f_optimizer,
            "d_optimizer": self.d_optimizer,
            "g_scaler": self.g_scaler,
            "d_scaler": self.d_scaler,
        }
        if include_rng:
            from bundle.handlers import RNGState

            objects["rng"] = RNGState()
        return {key: value for key, value in objects.items() if value is not None}

    # ------------------------------------------------------------------ one iteration
    def _iteration(  # type: ignore[override]
        self, engine: EMIXERTrainer, batchdata: Mapping[str, Any]
    ) -> dict[str, float]:
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        labelled_cpu = batchdata.get(LABELLED) if isinstance(batchdata, Mapping) else None
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        real, report = batch[IMAGE], batch[REPORT]
        labels, labelled = engine._labels_of(batch)
        b = real.shape[0]
        if engine.d_split_batch and b % engine.n_critic:
            raise ValueError(f"d_split_batch needs a batch size divisible by n_critic={engine.n_critic}, got {b}")
        chunk = b // engine.n_critic if engine.d_split_batch else b
        if labelled_cpu is not None:
            labelled_cpu = torch.as_tensor(_plain(labelled_cpu)).flatten().cpu()
        index = fake_label_indices(labelled_cpu, b, engine.n_critic + 1, chunk)
        if index is not None:
            index = index.to(device=labels.device, non_blocking=engine.non_blocking)

        use_text = engine.use_report_loss or engine.use_joint_loss
        use_image_d = engine.use_image_loss or engine.use_rotation_loss
        terms: dict[str, torch.Tensor] = {}

        def add(key: str, value: torch.Tensor, scale: float = 1.0) -> None:
            value = value.detach().float() * scale
            terms[key] = terms[key] + value if key in terms else value

        # ---- n_critic discriminator steps
        for step in range(engine.n_critic):
            part = slice(step * chunk, (step + 1) * chunk) if engine.d_split_batch else slice(None)
            x_real, y_real, s_real = real[part], labels[part], report[part]
            labelled_real = None if labelled is None else labelled[part]
            y_fake = engine._fake_labels(labels, index, step, chunk)
            with engine._autocast():
                with torch.no_grad():
                    x_fake = engine.generator(torch.randn(chunk, engine.latent_dim, device=real.device), y_fake)
                    s_fake = engine._sample_reports(x_fake, y_fake) if use_text else None
                d_total = real.new_zeros(())
                if use_image_d:
                    d_total = d_total + engine._image_d_loss(x_real, y_real, x_fake, y_fake, add, labelled_real)
                if engine.use_report_loss:
                    real_logits = engine.report_discriminator(s_real)
                    fake_logits = engine.report_discriminator(s_fake)
                    loss = discriminator_loss(real_logits.float(), fake_logits.float(), engine.adversarial_loss)
                    add("d_report", loss, 1.0 / engine.n_critic)
                    d_total = d_total + engine.report_loss_weight * loss
                if engine.use_joint_loss:
                    real_logits = engine.joint_discriminator(x_real, s_real)
                    fake_logits = engine.joint_discriminator(x_fake, s_fake)
                    loss = discriminator_loss(real_logits.float(), fake_logits.float(), engine.adversarial_loss)
                    add("d_joint", loss, 1.0 / engine.n_critic)
                    d_total = d_total + engine.joint_loss_weight * loss
            add("d_total", d_total, 1.0 / engine.n_critic)
            if d_total.requires_grad:
                engine.d_optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
                engine.d_scaler.scale(d_total).backward()
                if engine.distributed:
                    all_reduce_gradients(engine._d_params)
                engine.d_scaler.step(engine.d_optimizer)
                engine.d_scaler.update()

        # ---- one generator step of G and F (discriminators frozen)
        g_size = chunk
        y_fake = engine._fake_labels(labels, index, engine.n_critic, g_size)
        engine._set_d_requires_grad(False)
        try:
            with engine._autocast():
                x_fake = engine.generator(torch.randn(g_size, engine.latent_dim, device=real.device), y_fake)
                g_total = real.new_zeros(())
                if use_image_d:
                    g_total = g_total + engine._image_g_loss(x_fake, y_fake, add, labelled_fakes=index is not None)
                if engine.consistency_weight and index is not None:
                    loss = engine._consistency_loss(x_fake, y_fake)
                    add("g_consistency", loss)
                    g_total = g_total + engine.consistency_weight * loss
                if use_text:
                    bound = engine.text_grad_max_ratio is not None and engine.text_grad_to_generator > 0
                    image_terms = g_total
                    x_text = x_fake.detach().requires_grad_(True) if bound else x_fake
                    s_fake = engine._sample_reports(
                        x_text if bound else scale_gradient(x_fake, engine.text_grad_to_generator), y_fake
                    )
                    text_terms = real.new_zeros(())
                    if engine.use_report_loss:
                        loss = generator_loss(engine.report_discriminator(s_fake).float(), engine.adversarial_loss)
                        add("g_report", loss)
                        text_terms = text_terms + engine.report_loss_weight * loss
                    if engine.use_joint_loss:
                        logits = engine.joint_discriminator(x_fake, s_fake)
                        loss = generator_loss(logits.float(), engine.adversarial_loss)
                        add("g_joint", loss)
                        text_terms = text_terms + engine.joint_loss_weight * loss
                    g_total = g_total + text_terms
                    if bound:
                        g_total = g_total + engine._bounded_text_gradient(x_fake, x_text, image_terms, text_terms)
                adversarial, teacher = g_total, None
                if engine.use_teacher_forcing:
                    f_losses = engine._teacher_forcing_loss(batch)
                    loss = f_losses["loss"].float()
                    if "label_loss" in f_losses:
                        add("f_labels", f_losses["label_loss"])
                    add("f_teacher_forcing", loss)
                    teacher = engine.teacher_forcing_weight * loss
                    g_total = adversarial + teacher
            add("g_total", g_total)
            engine.g_optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
            if engine.f_optimizer is not None:
                engine.f_optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
            if g_total.requires_grad:
                scaled = engine.f_adversarial_weight != 1.0 or engine.f_image_adversarial_weight != 1.0
                bounded = engine.f_adversarial_max_ratio is not None and teacher is not None
                if (scaled or bounded) and adversarial.requires_grad:
                    engine.g_scaler.scale(adversarial).backward()
                    engine._scale_decoder_grads(engine.f_adversarial_weight, engine.f_image_adversarial_weight)
                    stashed = engine._take_decoder_grads() if bounded else None
                    if teacher is not None:
                        engine.g_scaler.scale(teacher).backward()
                    if stashed is not None:
                        engine._add_bounded_decoder_grads(stashed, engine.f_adversarial_max_ratio)
                else:
                    engine.g_scaler.scale(g_total).backward()
                if engine.distributed:
                    all_reduce_gradients(engine._g_step_params)
                engine.g_scaler.step(engine.g_optimizer)
                if engine.f_optimizer is not None:
                    engine.g_scaler.step(engine.f_optimizer)
                engine.g_scaler.update()
        finally:
            engine._set_d_requires_grad(True)
        engine.update_ema()
        if engine.report_steps_per_iteration:
            extra = [engine.report_decoder_step() for _ in range(engine.report_steps_per_iteration)]
            terms["f_extra_teacher_forcing"] = real.new_tensor(sum(extra) / len(extra), dtype=torch.float32)

        keys = [key for key in LOSS_KEYS if key in terms]
        stacked = torch.stack([terms[key] for key in keys])
        if engine.distributed:  # log the global batch's losses; a NaN anywhere stops every rank together
            stacked = all_reduce_mean(stacked)
        values = stacked.tolist()  # the iteration's only host sync
        return dict(zip(keys, values))

    def _image_d_outputs(
        self, images: torch.Tensor, labels: torch.Tensor, rotation: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """One D_image pass: real/fake logits, rotation logits (when ``rotation``) and finding logits (when the
        auxiliary classifier is on) from the same features."""
        classes = bool(self.classification_weight)
        outputs = self.image_discriminator(images, labels, return_rotation=rotation, return_class=classes)
        if not (rotation or classes):
            return outputs, None, None
        logits, *heads = outputs  # the requested heads, rotation first
        return logits, heads[0] if rotation else None, heads[-1] if classes else None

    def _image_d_loss(
        self,
        x_real: torch.Tensor,
        y_real: torch.Tensor,
        x_fake: torch.Tensor,
        y_fake: torch.Tensor,
        add: Callable,
        labelled_real: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """D_image's loss: adversarial on (real, fake) + alpha x rotation on the rotated reals (+ the auxiliary
        classifier on the labelled reals), one forward pass."""
        b = x_real.shape[0]
        total = x_real.new_zeros(())
        if self.diff_augment is not None:
            x_real, x_fake = self.diff_augment(x_real), self.diff_augment(x_fake)
        if self.use_rotation_loss:
            rotated, targets = rotate_batch(x_real)  # rotation-major: the first b are the reals unrotated
            images = torch.cat([rotated, x_fake])
            labels = torch.cat([y_real.repeat(4, 1), y_fake])
            logits, rotation_logits, class_logits = self._image_d_outputs(images, labels, rotation=True)
            real_logits, fake_logits = logits[:b], logits[4 * b :]
            rotation = rotation_loss(rotation_logits[: 4 * b].float(), targets)
            add("d_rotation", rotation, 1.0 / self.n_critic)
            total = total + self.alpha * rotation
        else:
            logits, _, class_logits = self._image_d_outputs(
                torch.cat([x_real, x_fake]), torch.cat([y_real, y_fake]), rotation=False
            )
            real_logits, fake_logits = logits[:b], logits[b:]
        if class_logits is not None:
            loss = classification_loss(class_logits[:b].float(), y_real, labelled_real)
            add("d_class", loss, 1.0 / self.n_critic)
            total = total + self.classification_weight * loss
        if self.use_image_loss:
            loss = discriminator_loss(real_logits.float(), fake_logits.float(), self.adversarial_loss)
            add("d_image", loss, 1.0 / self.n_critic)
            total = total + self.image_loss_weight * loss
        return total

    def _image_g_loss(
        self, x_fake: torch.Tensor, y_fake: torch.Tensor, add: Callable, labelled_fakes: bool = True
    ) -> torch.Tensor:
        """G's image terms: adversarial through D_image + rotation_weight_g x rotation on the rotated fakes (+ the
        auxiliary classifier's loss on the fakes against their conditioning labels, when they have labels)."""
        b = x_fake.shape[0]
        total = x_fake.new_zeros((), dtype=torch.float32)
        if self.diff_augment is not None:
            x_fake = self.diff_augment(x_fake)
        if self.use_rotation_loss:
            rotated, targets = rotate_batch(x_fake)
            logits, rotation_logits, class_logits = self._image_d_outputs(rotated, y_fake.repeat(4, 1), rotation=True)
            fake_logits = logits[:b]
            rotation = rotation_loss(rotation_logits.float(), targets)
            add("g_rotation", rotation)
            total = total + self.rotation_weight_g * rotation
        else:
            fake_logits, _, class_logits = self._image_d_outputs(x_fake, y_fake, rotation=False)
        if class_logits is not None and labelled_fakes:
            loss = classification_loss(class_logits[:b].float(), y_fake)
            add("g_class", loss)
            total = total + self.classification_weight * loss
        if self.use_image_loss:
            loss = generator_loss(fake_logits.float(), self.adversarial_loss)
            add("g_image", loss)
            total = total + self.image_loss_weight * loss
        return total

    def _consistency_loss(self, x_fake: torch.Tensor, y_fake: torch.Tensor) -> torch.Tensor:
        """BCE of F's label head on G's images against their conditioning labels. F's parameters are frozen and its
        BatchNorms read their running (real-image) statistics, as at inference, without updating them."""
        if self.consistency_decoder is not None:  # the frozen snapshot: no parameter to protect
            return classification_loss(self.consistency_decoder.label_logits(x_fake).float(), y_fake)
        f = self.report_decoder
        f_params = [p for p in f.parameters() if p.requires_grad]
        for p in f_params:
            p.requires_grad_(False)
        try:
            with eval_mode(f):
                return classification_loss(f.label_logits(x_fake).float(), y_fake)
        finally:
            for p in f_params:
                p.requires_grad_(True)

    def _scale_decoder_grads(self, weight: float, image_weight: float) -> None:
        """Scale the gradients F got so far (those of the adversarial terms) by ``weight``, and those of its image
        reading by ``image_weight`` (0: drop them)."""
        for p in self.report_decoder.parameters():
            if p.grad is not None:
                w = image_weight if id(p) in self._f_image_params else weight
                p.grad.zero_() if w == 0 else p.grad.mul_(w)

    def _bounded_text_gradient(
        self, x_fake: torch.Tensor, x_text: torch.Tensor, image_terms: torch.Tensor, text_terms: torch.Tensor
    ) -> torch.Tensor:
        """A term whose gradient on G's images is the text terms' gradient through F (read on ``x_text``, a detached
        copy of ``x_fake``), scaled per image to at most ``text_grad_max_ratio`` x the norm of the image terms'
        gradient on that image, times ``text_grad_to_generator``."""
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
            limit = self.text_grad_max_ratio * torch.linalg.vector_norm(image_grad, dim=dims, keepdim=True)
        scale = bound_scale(text_norm, limit)
        return (x_fake * (self.text_grad_to_generator * scale * text_grad).detach()).sum()

    def _take_decoder_grads(self) -> list[torch.Tensor | None]:
        """F's current gradients (its adversarial ones), removed from the parameters, in parameter order."""
        taken = []
        for p in self.report_decoder.parameters():
            taken.append(p.grad)
            p.grad = None
        return taken

    def _add_bounded_decoder_grads(self, adversarial: Sequence[torch.Tensor | None], ratio: float) -> None:
        """Add each stashed adversarial gradient to F's (teacher-forcing) gradient, scaled down to at most ``ratio``
        x that gradient's norm (dropped where F's tensor got no teacher-forcing gradient)."""
        for p, extra in zip(self.report_decoder.parameters(), adversarial):
            if extra is None or p.grad is None:
                continue
            limit = ratio * torch.linalg.vector_norm(p.grad)
            p.grad.add_(extra * bound_scale(torch.linalg.vector_norm(extra), limit))

    def _set_d_requires_grad(self, flag: bool) -> None:
        for p in self._d_params:
            p.requires_grad_(flag)
