"""Export of the trained generator G and report decoder F for inference outside this code base.

Two thin wrappers give each network one tensor in and plain tensors out, the form MONAI's bundle tools
(``ckpt_export``, ``onnx_export``, ``verify_net_in_out``) and tracers expect:

- :class:`GeneratorExport`: ``[B, latent_dim + num_classes]`` (``z`` then the multi-hot labels) -> image
  ``[B, C, H, W]`` in [-1, 1], from a deep copy in eval mode with spectral norm folded into plain weights.
- :class:`ReportDecoderExport`: images (and, for a label-conditioned decoder, optionally the labels) -> (``tokens
  [B, S, W]``, ``num_sentences [B]``) by greedy decoding; the sentence and word loops unroll under tracing (S and W
  are fixed at construction).

Both wrappers load a state dict of the network they wrap (as a training checkpoint stores it, spectral-norm
parametrizations included), so MONAI's ``ckpt_export`` / ``onnx_export`` can build the wrapper from the config
and load ``key_in_ckpt`` into it. :func:`export_onnx` / :func:`run_onnx` and :func:`export_torch` /
:func:`load_torch` write and run the two exchange formats; :func:`load_generator_from_checkpoint` picks the EMA
generator out of a training checkpoint.
"""

from __future__ import annotations

import copy
import logging
import pickle
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.export import ExportedProgram

from bundle.data.errors import DataError
from bundle.networks.layers import remove_spectral_norm

__all__ = [
    "GeneratorExport",
    "ReportDecoderExport",
    "fold_spectral_norm_state",
    "export_program",
    "export_onnx",
    "run_onnx",
    "export_torch",
    "load_torch",
    "load_generator_from_checkpoint",
]

logger = logging.getLogger(__name__)

_SN_ORIGINAL = ".parametrizations.weight.original"
_SN_U = ".parametrizations.weight.0._u"
_SN_V = ".parametrizations.weight.0._v"


def fold_spectral_norm_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with spectral-norm parametrizations folded: ``<m>.parametrizations.weight.original`` and its
    ``_u`` / ``_v`` become ``<m>.weight = original / sigma`` with ``sigma = u . (W v)``, the value torch's
    spectral norm gives in eval mode, so it loads into a network folded by ``remove_spectral_norm``."""
    folded: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(_SN_U) or key.endswith(_SN_V):
            continue
        if not key.endswith(_SN_ORIGINAL):
            folded[key] = value
            continue
        prefix = key[: -len(_SN_ORIGINAL)]
        u, v = state.get(prefix + _SN_U), state.get(prefix + _SN_V)
        if u is None or v is None:
            raise KeyError(f"spectral-norm weight {key!r} has no {prefix + _SN_U!r} / {prefix + _SN_V!r} in the state")
        sigma = torch.vdot(u, torch.mv(value.flatten(1), v))
        folded[prefix + ".weight"] = value / sigma
    return folded


class _ExportWrapper(nn.Module):
    """Holds a deep copy of ``network`` in eval mode without gradients; loads the wrapper's own state dict or one of
    the wrapped network (a training checkpoint's entry), folding spectral-norm entries when the copy has none."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        network = copy.deepcopy(network).eval()
        self.network = remove_spectral_norm(network).requires_grad_(False)
        self.eval()

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Accept ``network.``-prefixed keys (this wrapper's state dict) or the wrapped network's own keys, with or
        without spectral-norm parametrizations."""
        if state_dict and all(key.startswith("network.") for key in state_dict):
            state_dict = {key[len("network.") :]: value for key, value in state_dict.items()}
        return self.network.load_state_dict(fold_spectral_norm_state(state_dict), strict=strict, assign=assign)

    def train(self, mode: bool = True) -> _ExportWrapper:
        """Always eval: an exported network uses BatchNorm's running statistics."""
        return super().train(False)


class GeneratorExport(_ExportWrapper):
    """``G`` with one input: ``latent [B, latent_dim + num_classes]`` (``z``, then the multi-hot labels) -> image
    ``[B, out_channels, image_size, image_size]`` in [-1, 1]. Works on a folded deep copy; the caller's generator
    keeps its spectral norm and mode."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__(generator)
        self.latent_dim = int(generator.latent_dim)
        self.num_classes = int(generator.num_classes)

    @property
    def in_features(self) -> int:
        return self.latent_dim + self.num_classes

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if latent.dim() != 2 or latent.shape[1] != self.in_features:
            raise ValueError(
                f"latent must be [B, latent_dim + num_classes = {self.latent_dim} + {self.num_classes}], "
                f"got {tuple(latent.shape)}"
            )
        return self.network(latent[:, : self.latent_dim], latent[:, self.latent_dim :])

    def make_latent(self, labels: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """The exported input for ``labels [B, num_classes]``: ``[z, labels]`` with ``z ~ N(0, I)`` unless given."""
        if z is None:
            z = torch.randn(labels.shape[0], self.latent_dim, device=labels.device)
        return torch.cat([z, labels.to(z.dtype)], dim=1)


class ReportDecoderExport(_ExportWrapper):
    """``F`` with greedy decoding: images ``[B, C, H, W]`` -> (``tokens [B, S, W]`` int64, ``num_sentences [B]`` int64),
    the layout of real report tensors (``<pad>`` after each sentence's ``<end>`` and after the last sentence).

    ``with_labels``: a second input ``labels [B, num_classes]`` (multi-hot, the findings G drew the images for), which
    a ``label_conditioned`` decoder writes from, as ``EMIXERSampler`` does; without it such a decoder writes from its
    own label head's reading of the images. Only a label-conditioned decoder can take labels (an error otherwise).
    """

    def __init__(self, report_decoder: nn.Module, with_labels: bool = False) -> None:
        if with_labels and not getattr(report_decoder, "label_conditioned", False):
            raise ValueError("with_labels=True needs a label_conditioned report decoder (it would ignore the labels)")
        super().__init__(report_decoder)
        self.with_labels = bool(with_labels)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.with_labels and labels is None:
            raise ValueError("this export was built with_labels=True: pass labels [B, num_classes] after the images")
        out = self.network.greedy_decode(images, labels if self.with_labels else None)
        return out["tokens"].long(), out["num_sentences"].long()


def _as_tuple(example: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (example,) if isinstance(example, torch.Tensor) else tuple(example)


def export_program(
    module: nn.Module | ExportedProgram, example: torch.Tensor | Sequence[torch.Tensor], dynamic_batch: bool = True
) -> ExportedProgram:
    """``torch.export`` of ``module`` on ``example`` in eval mode (a program passes through). With
    ``dynamic_batch`` the first axis of every input is one symbolic batch size, so any batch size runs; the greedy
    decoder's sentence and word loops unroll to their fixed lengths."""
    if isinstance(module, ExportedProgram):
        return module
    args = _as_tuple(example)
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1)
        dynamic_shapes = tuple({0: batch} for _ in args)
    with torch.no_grad():
        return torch.export.export(module.eval(), args, dynamic_shapes=dynamic_shapes)


def export_onnx(
    module: nn.Module | ExportedProgram,
    example: torch.Tensor | Sequence[torch.Tensor],
    path: str | PathLike,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    opset_version: int | None = None,
    optimize: bool = True,
) -> Path:
    """Write ``module`` (or a program from :func:`export_program`) to one ONNX file, weights included.

    Uses torch's dynamo exporter (``torch.export`` then ONNX): the legacy TorchScript exporter emits a ``CumSum`` on
    booleans for the decoder's end-of-sentence mask, which onnxruntime rejects. ``optimize`` runs onnxscript's
    graph optimiser (constant folding, dead-code removal).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program = export_program(module, example, dynamic_batch)
    torch.onnx.export(
        program,
        _as_tuple(example),
        str(path),
        input_names=list(input_names) if input_names else None,
        output_names=list(output_names) if output_names else None,
        opset_version=opset_version,
        dynamo=True,
        external_data=False,
        optimize=optimize,
        verbose=False,
    )
    return path


def run_onnx(path: str | PathLike, inputs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Run an ONNX file with onnxruntime on CPU; ``inputs`` are fed in the model's input order."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {arg.name: x.detach().cpu().numpy() for arg, x in zip(session.get_inputs(), _as_tuple(inputs))}
    return [torch.from_numpy(out) for out in session.run(None, feeds)]


def export_torch(
    module: nn.Module | ExportedProgram,
    example: torch.Tensor | Sequence[torch.Tensor],
    path: str | PathLike,
    dynamic_batch: bool = True,
) -> Path:
    """Write ``module`` (or a program from :func:`export_program`) with ``torch.export.save`` (a ``.pt2`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(export_program(module, example, dynamic_batch), str(path))
    return path


def load_torch(path: str | PathLike) -> nn.Module:
    """Load a file written by :func:`export_torch` as a callable module."""
    return torch.export.load(str(path)).module()


def load_generator_from_checkpoint(
    ckpt: str | PathLike | Mapping[str, Any], network: nn.Module, key: str = "ema_generator"
) -> nn.Module:
    """Load G's weights from a training checkpoint into ``network`` (in place, also returned).

    ``ckpt`` is a file written by MONAI's ``CheckpointSaver`` (a dict of state dicts keyed as in
    ``EMIXERTrainer.checkpoint_dict()``), that dict itself, or a plain state dict of the generator. ``key`` (the
    EMA copy by default) is taken when present, else ``"generator"`` with a logged note.
    """
    source = "<checkpoint dict>"
    if isinstance(ckpt, (str, PathLike)):
        source = str(ckpt)
        try:
            ckpt = torch.load(source, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise DataError(source, f"cannot read checkpoint: {error}") from error
    if not isinstance(ckpt, Mapping):
        raise DataError(source, f"checkpoint must be a dict, got {type(ckpt).__name__}")
    if ckpt and all(isinstance(value, torch.Tensor) for value in ckpt.values()):
        state = ckpt  # a plain state dict of the generator (e.g. a released models/model.pt)
    elif isinstance(ckpt.get(key), Mapping):
        state = ckpt[key]
    elif isinstance(ckpt.get("generator"), Mapping):
        logger.warning("note: %s has no %r entry; loading the 'generator' weights instead", source, key)
        state = ckpt["generator"]
    else:
        raise DataError(source, f"checkpoint has neither {key!r} nor 'generator' (keys: {sorted(ckpt)})")
    try:
        network.load_state_dict(state)
    except (RuntimeError, KeyError) as error:
        raise DataError(source, f"weights do not fit the generator: {error}") from error
    return network
