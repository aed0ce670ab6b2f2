"""The EMIXER trainer: ``n_critic`` steps of the three discriminators, then one step of G and F together.

:class:`EMIXERTrainer` is a ``monai.engines.Trainer`` that overrides ``_iteration`` (as the Model Zoo's
brats_mri_generative_diffusion trainer does) and only orders the steps: the terms are the pure functions of
:mod:`bundle.training.objective`, the routing of G's gradients is :mod:`bundle.training.gradients`. Each critic step
scores the real batch (or its ``n_critic`` chunks with ``d_split_batch``) against fresh fakes ``G(z, y')`` and F's
reports of them, made without gradients; G's step freezes the discriminators. The fake labels ``y'`` are rows of the
batch's labelled items (zeros when none is labelled, which zeroes D_image's projection term). ``state.output`` holds
one float per term computed (``d_*`` averaged over the critic steps) and the weighted totals ``d_total`` / ``g_total``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from monai.engines import Trainer
from monai.engines.workflow import Workflow
from torch import nn
from torch.optim import Optimizer

from bundle.training import batch as batches
from bundle.training import gradients as grads
from bundle.training import objective as terms_of
from bundle.training.batch import IMAGE, NUM_SENTENCES, REPORT, masked_labels, prepare_emixer_batch
from bundle.training.distributed import all_reduce_gradients, all_reduce_mean, broadcast_modules, is_distributed
from bundle.training.ema import GeneratorEMA
from bundle.training.gradients import GradientControls, frozen
from bundle.training.handlers import RNGState
from bundle.training.objective import LOSS_KEYS, EMIXERNetworks, Objective
from bundle.training.warmup import ReportDecoderWarmup

__all__ = ["EMIXERTrainer"]


class EMIXERTrainer(Trainer):
    """EMIXER's adversarial trainer (see the module docstring for one iteration).

    Networks are used where they are (move them to ``device`` before, as MONAI's trainers expect).

    Args:
        device: device of the batches and networks.
        max_epochs / epoch_length: as in ``monai.engines.Trainer``.
        train_data_loader: dict batches with ``image``, ``labels``, ``report_tokens`` and optionally
            ``report_num_sentences`` and ``labelled`` (:func:`bundle.training.batch.prepare_emixer_batch`).
        generator / report_decoder / image_discriminator / report_discriminator / joint_discriminator: the networks
            (a discriminator whose terms all have weight 0 may be None).
        g_optimizer: optimiser of G (and of F when ``f_optimizer`` is None).
        d_optimizer: one optimiser over the discriminators in use.
        f_optimizer: F's own optimiser (stepped with G's), or None.
        objective: the terms' weights and the adversarial loss (:class:`~bundle.training.objective.Objective`).
        gradients: scales and bounds of the adversarial gradients of G's step
            (:class:`~bundle.training.gradients.GradientControls`).
        n_critic: discriminator steps per generator step (2 in the paper).
        d_split_batch: give each critic step its own ``1 / n_critic`` chunk of the real batch.
        report_warmup_iterations: teacher-forcing steps of F alone before the first GAN iteration of a fresh run.
        ema_decay / ema_start: the generator's moving average (:class:`~bundle.training.ema.GeneratorEMA`, kept as
            ``ema_generator``); ``ema_decay`` None = none.
        amp / amp_kwargs: mixed precision on CUDA (``torch.autocast`` and one ``GradScaler`` each for D and G/F); other
            devices run in fp32.
        distributed: data-parallel over a ``torch.distributed`` process group (:mod:`bundle.training.distributed`);
            None = on when a group of more than one process is initialised.
        prepare_batch: batch -> dict of device tensors.
        train_handlers: Ignite / MONAI handlers to attach.
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
        objective: Objective | None = None,
        gradients: GradientControls | None = None,
        n_critic: int = 2,
        d_split_batch: bool = False,
        report_warmup_iterations: int = 0,
        ema_decay: float | None = None,
        ema_start: int = 0,
        epoch_length: int | None = None,
        amp: bool = False,
        amp_kwargs: dict | None = None,
        distributed: bool | None = None,
        prepare_batch: Callable = prepare_emixer_batch,
        train_handlers: Sequence | None = None,
    ) -> None:
        if n_critic < 1:
            raise ValueError(f"n_critic={n_critic} must be >= 1")
        self.objective = Objective() if objective is None else objective
        self.gradients = GradientControls() if gradients is None else gradients
        nets = EMIXERNetworks(generator, report_decoder, image_discriminator, report_discriminator, joint_discriminator)
        self.objective.check_networks(nets)
        # Only the discriminators with a term on are stepped (and frozen in G's step).
        o = self.objective
        used = (o.uses_image_discriminator, o.report_loss_weight > 0, o.joint_loss_weight > 0)
        self._discriminators = [d for d, on in zip(nets[2:], used) if on and d is not None]
        self.networks = nets
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            prepare_batch=prepare_batch,
            amp=amp,
            decollate=False,  # the output is a dict of floats
            amp_kwargs=amp_kwargs,
        )
        self.generator, self.report_decoder = generator, report_decoder
        self.image_discriminator, self.report_discriminator = image_discriminator, report_discriminator
        self.joint_discriminator = joint_discriminator
        self.g_optimizer, self.d_optimizer, self.f_optimizer = g_optimizer, d_optimizer, f_optimizer
        self.latent_dim = int(generator.latent_dim)
        self.n_critic, self.d_split_batch = int(n_critic), bool(d_split_batch)
        reader = getattr(report_decoder, "image_reader_parameters", None)
        self._f_image_params = {id(p) for p in reader()} if callable(reader) else set()
        ReportDecoderWarmup(report_warmup_iterations).attach(self)

        # Mixed precision only where it helps and GradScaler works: CUDA. Elsewhere fp32 and no-op scalers.
        self.use_autocast = bool(amp) and self.state.device is not None and self.state.device.type == "cuda"
        self.d_scaler = torch.amp.GradScaler("cuda", enabled=self.use_autocast)
        self.g_scaler = torch.amp.GradScaler("cuda", enabled=self.use_autocast)
        self._d_params = [p for d in self._discriminators for p in d.parameters() if p.requires_grad]
        self._g_step_params = [
            p for opt in (g_optimizer, f_optimizer) if opt for g in opt.param_groups for p in g["params"]
        ]
        self.distributed = is_distributed() if distributed is None else bool(distributed)
        if self.distributed:  # every process starts from rank 0's weights (before the EMA copy is taken)
            broadcast_modules([generator, report_decoder, *self._discriminators])
        self.ema = None if ema_decay is None else GeneratorEMA(generator, ema_decay, ema_start)
        if train_handlers is not None:
            self._register_handlers(train_handlers)

    @property
    def ema_generator(self) -> nn.Module | None:
        """The moving average of G's weights (None without EMA)."""
        return None if self.ema is None else self.ema.module

    def run(self) -> None:  # type: ignore[override]
        """Run training. ``Trainer.run`` would replace the scalers by a single new one, so go to ``Workflow``."""
        Workflow.run(self)

    def checkpoint_dict(self, include_rng: bool = True) -> dict[str, Any]:
        """Everything a resumed run needs, for MONAI's ``CheckpointSaver`` / ``CheckpointLoader``: the trainer (epoch
        and iteration), every network (EMA copy included), optimiser and grad scaler, and the RNG states."""
        objects = {"trainer": self, **{k: getattr(self, k) for k in EMIXERNetworks._fields}}
        objects["ema_generator"] = self.ema_generator
        objects |= {"g_optimizer": self.g_optimizer, "f_optimizer": self.f_optimizer, "d_optimizer": self.d_optimizer}
        objects |= {"g_scaler": self.g_scaler, "d_scaler": self.d_scaler, "rng": RNGState() if include_rng else None}
        return {key: value for key, value in objects.items() if value is not None}

    def report_decoder_step(self, batchdata: Mapping[str, Any]) -> float:
        """One teacher-forcing step of F alone (its optimiser) on ``batchdata``; returns the loss."""
        batch = self.prepare_batch(batchdata, self.state.device, self.non_blocking)
        optimizer = self.f_optimizer or self.g_optimizer
        with self._autocast():
            loss = self._teacher_forcing(batch)["f_teacher_forcing"]
        optimizer.zero_grad(set_to_none=True)
        self._step(loss, [optimizer], self.g_scaler, [p for p in self.report_decoder.parameters() if p.requires_grad])
        return float(loss.detach())

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(device_type="cuda", **self.amp_kwargs) if self.use_autocast else contextlib.nullcontext()

    def _teacher_forcing(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels, labelled = masked_labels(batch)
        return terms_of.teacher_forcing_terms(
            self.report_decoder, batch[IMAGE], batch[REPORT], batch.get(NUM_SENTENCES), labels, labelled, self.objective
        )

    def _fakes(self, labels: torch.Tensor, index: torch.Tensor | None, step: int, size: int) -> tuple:
        """Fake labels of one step (rows of the batch's labels, zeros when none is labelled) and G's images."""
        y_fake = labels.new_zeros(size, labels.shape[1]) if index is None else labels[index[step]]
        return self.generator(torch.randn(size, self.latent_dim, device=labels.device), y_fake), y_fake

    def _step(
        self, loss: torch.Tensor | None, optimizers: Sequence[Optimizer | None], scaler: Any, params: list
    ) -> None:
        """Backward of ``loss`` (None: done already), gradient all-reduce, the optimisers' steps."""
        if loss is not None:
            scaler.scale(loss).backward()
        if self.distributed:
            all_reduce_gradients(params)
        for optimizer in (o for o in optimizers if o is not None):
            scaler.step(optimizer)
        scaler.update()

    # ------------------------------------------------------------------ one iteration
    def _iteration(self, engine: EMIXERTrainer, batchdata: Mapping[str, Any]) -> dict[str, float]:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        batch = self.prepare_batch(batchdata, self.state.device, self.non_blocking)
        labels, labelled = masked_labels(batch)
        b = batch[IMAGE].shape[0]
        if self.d_split_batch and b % self.n_critic:
            raise ValueError(f"d_split_batch needs a batch size divisible by n_critic={self.n_critic}, got {b}")
        chunk = b // self.n_critic if self.d_split_batch else b
        index = batches.fake_label_rows(batchdata, b, self.n_critic + 1, chunk, labels.device, self.non_blocking)

        log: dict[str, torch.Tensor] = {}
        for step in range(self.n_critic):
            part = slice(step * chunk, (step + 1) * chunk) if self.d_split_batch else slice(None)
            real = (batch[IMAGE][part], labels[part], batch[REPORT][part])
            d_terms = self._discriminator_step(real, None if labelled is None else labelled[part], labels, index, step)
            for key, value in d_terms.items():
                value = value.detach().float() / self.n_critic
                log[key] = log[key] + value if key in log else value
        log.update({k: v.detach().float() for k, v in self._generator_step(batch, labels, index, chunk).items()})
        if self.ema is not None:
            self.ema.update(self.state.iteration)

        keys = [key for key in LOSS_KEYS if key in log]
        stacked = torch.stack([log[key] for key in keys])
        if self.distributed:  # log the global batch's losses; a NaN anywhere stops every rank together
            stacked = all_reduce_mean(stacked)
        return dict(zip(keys, stacked.tolist()))  # the iteration's only host sync

    def _discriminator_step(
        self, real: tuple, labelled: torch.Tensor | None, labels: torch.Tensor, index: Any, step: int
    ) -> dict:
        """One critic step against fresh fakes made without gradients; returns its terms and ``d_total``."""
        objective = self.objective
        with self._autocast():
            with torch.no_grad():
                x_fake, y_fake = self._fakes(labels, index, step, real[0].shape[0])
                s_fake = None
                if objective.uses_text:
                    s_fake = terms_of.sample_reports(self.report_decoder, x_fake, y_fake, objective.gumbel_temperature)
            d_terms = terms_of.discriminator_terms(self.networks, real, (x_fake, y_fake, s_fake), objective, labelled)
            d_total = terms_of.weighted_sum(d_terms, objective, real[0])
        if d_total.requires_grad:
            self.d_optimizer.zero_grad(set_to_none=True)
            self._step(d_total, [self.d_optimizer], self.d_scaler, self._d_params)
        return {**d_terms, "d_total": d_total}

    def _generator_step(self, batch: Mapping, labels: torch.Tensor, index: Any, size: int) -> dict:
        """One step of G and F with the discriminators frozen; returns its terms and ``g_total``."""
        controls, optimizers = self.gradients, [self.g_optimizer, self.f_optimizer]
        with frozen(self._discriminators):
            with self._autocast():
                x_fake, y_fake = self._fakes(labels, index, self.n_critic, size)
                g_terms, adversarial = terms_of.generator_objective(
                    self.networks, x_fake, y_fake, self.objective, controls, index is not None
                )
                if self.objective.teacher_forcing_weight > 0:
                    g_terms |= self._teacher_forcing(batch)
            teacher = g_terms.get("f_teacher_forcing")
            teacher = None if teacher is None else self.objective.teacher_forcing_weight * teacher
            g_total = adversarial if teacher is None else adversarial + teacher
            for optimizer in optimizers:
                if optimizer is not None:
                    optimizer.zero_grad(set_to_none=True)
            if g_total.requires_grad:
                if controls.splits_backward(teacher is not None) and adversarial.requires_grad:
                    scaler, image_params = self.g_scaler, self._f_image_params
                    grads.backward_split(self.report_decoder, adversarial, teacher, controls, scaler, image_params)
                    self._step(None, optimizers, self.g_scaler, self._g_step_params)
                else:
                    self._step(g_total, optimizers, self.g_scaler, self._g_step_params)
        return {**g_terms, "g_total": g_total}
