"""The chest X-ray classifier of the evaluation suite: label agreement (AUROC) and the feature network of FID and
the memorisation audit.

* ``configs/train_classifier.json`` trains a multi-label MONAI ``DenseNet121`` on the project's datalist and keeps
  the best model (macro AUROC on the validation split) as ``<output_dir>/classifier/model.pt``;
  :func:`classifier_from_config` rebuilds it from a parser of the same configs (composed by
  :func:`bundle.workflows.load_classifier`) and loads the weights :func:`read_classifier_state` read.
* ``configs/train_classifier_independent.json`` is a second evaluation classifier of another architecture, a MONAI
  ResNet-18, trained the same way on the real training split into ``<output_dir>/classifier_independent/model.pt``.
  The DenseNet does the same task as D's finding classifier and F's label head, which train G; the ResNet is of
  another architecture, is trained before the runs it scores and is never used in a training term, so label
  agreement measured with it (``label_agreement_ratio_independent``) does not rest on one network's reading of the
  images.
* :class:`ClassifierFeatures` turns a convolutional classifier ending in a linear layer (MONAI DenseNet, ResNet,
  EfficientNetBN) into a feature network returning ``(features, logits)``: the input of that final linear layer (the
  pooled penultimate activations: 1024-d for DenseNet121, 512-d for ResNet-18) and the class scores.
* :class:`XRVFeatures` is the same interface over torchxrayvision's pretrained DenseNet-121 (a chest X-ray
  network trained on public datasets, the usual "domain" network for FID). Its weights are read from
  torchxrayvision's local cache only: this bundle never downloads them (:func:`xrv_weights_path` names the file
  and where to get it).
* :func:`predict` runs either feature network over images or a datalist in batches; :func:`auroc_per_class`
  scores the probabilities per class with scikit-learn.
* :class:`MacroAUROC` is MONAI's ``ROCAUC`` handler with a macro mean over the classes that have both label
  values: MONAI's macro mean is NaN as soon as one class is constant in the validation split (common for rare
  findings in small splits), and a NaN key metric would stop ``CheckpointSaver`` from ever keeping a better model.

Images follow the project's contract: float ``[N, channels, H, W]`` in [-1, 1].
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.handlers import IgniteMetricHandler
from monai.metrics import ROCAUCMetric, compute_roc_auc

from bundle.data.errors import DataError

__all__ = [
    "DEFAULT_XRV_WEIGHTS",
    "MacroAUROCMetric",
    "MacroAUROC",
    "classifier_from_config",
    "read_classifier_state",
    "state_sizes",
    "ClassifierFeatures",
    "XRVFeatures",
    "xrv_weights_path",
    "xrv_available",
    "as_feature_network",
    "predict",
    "auroc_per_class",
]

#: torchxrayvision's DenseNet-121 trained on all its public datasets (NIH, PadChest, CheXpert, MIMIC, ...).
DEFAULT_XRV_WEIGHTS = "densenet121-res224-all"
XRV_RESOLUTION = 224
#: torchxrayvision's intensity range: an 8-bit image maps to [-1024, 1024].
XRV_INTENSITY = 1024.0


def _macro_auroc(y_pred: torch.Tensor, y: torch.Tensor) -> float:
    """Mean per-class AUROC over the classes whose labels take both values 0 and 1; NaN when none does."""
    if y_pred.ndim == 1:
        y_pred, y = y_pred[:, None], y[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI warns once per constant class; they are skipped here
        values = [float(compute_roc_auc(y_pred[:, k].float(), y[:, k].float())) for k in range(y.shape[1])]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


class MacroAUROCMetric(ROCAUCMetric):
    """``ROCAUCMetric`` whose macro mean skips classes with a single label value in the accumulated data."""

    def __init__(self) -> None:
        super().__init__(average="macro")

    def aggregate(self, average: str | None = None) -> float:  # type: ignore[override]
        y_pred, y = self.get_buffer()
        if not isinstance(y_pred, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise ValueError("y_pred and y must be PyTorch Tensor.")
        return _macro_auroc(y_pred, y)


class MacroAUROC(IgniteMetricHandler):
    """Ignite metric handler of :class:`MacroAUROCMetric` (MONAI's ``ROCAUC`` handler, constant classes skipped).

    Args:
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``, e.g. ``from_engine(["pred", "label"])``.
    """

    def __init__(self, output_transform: Callable = lambda x: x) -> None:
        super().__init__(metric_fn=MacroAUROCMetric(), output_transform=output_transform, save_details=False)


def read_classifier_state(path: str | PathLike, configs: str = "train_classifier.json") -> dict[str, torch.Tensor]:
    """A network state dict from a ``CheckpointSaver`` file (the bare state dict, or ``{"model": state_dict}``);
    ``configs`` names the configs that train one, for the message when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no classifier checkpoint (train one with {configs})")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise DataError(path, f"not a readable checkpoint ({error})") from error
    if isinstance(saved, Mapping) and isinstance(saved.get("model"), Mapping):
        saved = saved["model"]
    if not isinstance(saved, Mapping) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise DataError(path, "not a network state dict (expected tensors by parameter name)")
    return dict(saved)


def state_sizes(state: Mapping[str, torch.Tensor]) -> tuple[int | None, int | None]:
    """``(input channels, classes)`` of a convolutional classifier's state dict: the first 2D convolution's input
    channels and the last linear layer's outputs. A state dict lists parameters in registration order, and MONAI's
    DenseNet, ResNet and EfficientNetBN register their stem first and their classifier last."""
    convs = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 4]
    linears = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    return (int(convs[0].shape[1]) if convs else None), (int(linears[-1].shape[0]) if linears else None)


def classifier_from_config(
    parser: Any, state: Mapping[str, torch.Tensor], path: str | PathLike, device: str | torch.device = "cpu"
) -> nn.Module:
    """The parser's ``classifier_def`` with the weights ``state`` (read from ``path``, named in errors), in eval mode on
    ``device``, with ``class_names`` set when the config's datalist is at hand (else None)."""
    network = parser.get_parsed_content("classifier_def", lazy=False)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise DataError(path, f"does not fit the configured classifier_def ({error})") from error
    network.class_names = _class_names(parser)
    return network.to(device).eval()


def _class_names(parser: Any) -> list[str] | None:
    """The configured ``class_names`` when the config's datalist is on this machine, else None."""
    if "datalist_path" not in parser or "class_names" not in parser:
        return None
    datalist = Path(parser.get_parsed_content("datalist_path"))
    return list(parser.get_parsed_content("class_names")) if datalist.is_file() else None


def _final_linear(network: nn.Module) -> str | None:
    """The name of ``network``'s last registered ``nn.Linear`` submodule (its classifier), None when it has none."""
    names = [name for name, module in network.named_modules() if name and isinstance(module, nn.Linear)]
    return names[-1] if names else None


class ClassifierFeatures(nn.Module):
    """A convolutional classifier as a feature network: ``forward(images) -> (features, logits)``.

    ``features`` are the input of the network's final linear layer, its pooled penultimate activations: for a
    MONAI DenseNet ``class_layers`` up to its flatten (ReLU, global average pooling), ``[N, 1024]`` for DenseNet121;
    for a MONAI ResNet ``avgpool`` flattened, ``[N, 512]`` for ResNet-18; for EfficientNetBN the pooled head
    (after its dropout, the identity in eval mode). ``logits`` are the class scores ``[N, classes]``, exactly what the
    network itself returns. One forward pass of the network gives both (a hook on the final linear layer, held only
    during the call), so any architecture whose output is that layer's output works without knowing its layer
    names. Shares the network's modules (no copy).

    Raises:
        TypeError: the network has no convolution, or no linear layer after it.
        RuntimeError (in forward): the final linear layer was not called, or its output is not the network's output.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        head = _final_linear(network)
        convolutional = any(isinstance(m, nn.modules.conv._ConvNd) for m in network.modules())
        if head is None or not convolutional:
            raise TypeError(
                "ClassifierFeatures needs a convolutional classifier ending in a linear layer (a MONAI DenseNet, "
                f"ResNet or EfficientNetBN), got {type(network).__name__}"
            )
        self.network = network
        self.head_name = head
        self.class_names = getattr(network, "class_names", None)
        self.training = network.training

    @property
    def head(self) -> nn.Linear:
        """The network's final linear layer (its classifier)."""
        return self.network.get_submodule(self.head_name)

    @property
    def feature_dim(self) -> int:
        return int(self.head.in_features)

    @property
    def num_classes(self) -> int:
        return int(self.head.out_features)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen: dict[str, torch.Tensor] = {}

        def keep(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            seen["features"], seen["logits"] = args[0], output

        handle = self.head.register_forward_hook(keep)
        try:
            logits = self.network(images)
        finally:
            handle.remove()
        name = f"{type(self.network).__name__}.{self.head_name}"
        if "features" not in seen:
            raise RuntimeError(f"{name}, taken as the final linear layer, was not called in the forward pass")
        if seen["logits"] is not logits and not (
            seen["logits"].shape == logits.shape and torch.equal(seen["logits"], logits)
        ):
            raise RuntimeError(f"{name} is not the network's last step: its input would not be the logits' features")
        return seen["features"], logits


def xrv_weights_path(weights: str = DEFAULT_XRV_WEIGHTS, cache_dir: str | PathLike | None = None) -> Path:
    """Where torchxrayvision keeps (or would download) ``weights``: ``cache_dir`` or its default cache
    (``~/.torchxrayvision/models_data/``), file named after the release URL. Never downloads."""
    import torchxrayvision as xrv

    if weights not in xrv.models.model_urls or str(weights).startswith("resnet"):
        known = sorted(k for k in xrv.models.model_urls if k.startswith("densenet"))
        raise ValueError(f"unknown torchxrayvision DenseNet weights {weights!r} (known: {', '.join(known)})")
    url = xrv.models.model_urls[weights]["weights_url"]
    folder = str(cache_dir) if cache_dir is not None else xrv.utils.get_cache_dir()
    return Path(folder).expanduser() / Path(url).name


def xrv_available(weights: str = DEFAULT_XRV_WEIGHTS, cache_dir: str | PathLike | None = None) -> bool:
    """Whether the torchxrayvision weights file is already on this machine."""
    return xrv_weights_path(weights, cache_dir).is_file()


class XRVFeatures(nn.Module):
    """torchxrayvision's pretrained DenseNet-121 as a feature network: ``forward(images) -> (features, logits)``.

    Images in the project's convention (``[N, C, H, W]`` in [-1, 1]) become what the network was trained on: one
    channel (the channel mean), intensities in [-1024, 1024], 224 x 224 (bilinear). ``features`` are its pooled
    1024-d activations (``features2``), ``logits`` its raw scores over ``targets`` (torchxrayvision's 18
    pathologies, no operating-point normalisation).

    The weights file must already be in torchxrayvision's cache (``cache_dir`` or ``~/.torchxrayvision/models_data/``);
    it is never downloaded here. A state dict is loaded with ``weights_only=True``; the files torchxrayvision
    publishes are pickled whole models, which only torchxrayvision's own loader reads (unrestricted unpickling:
    use files from its release page only).

    Raises:
        FileNotFoundError: the weights are not in the cache (the message says where to put which file).
    """

    def __init__(self, weights: str = DEFAULT_XRV_WEIGHTS, cache_dir: str | PathLike | None = None) -> None:
        super().__init__()
        import torchxrayvision as xrv

        path = xrv_weights_path(weights, cache_dir)
        if not path.is_file():
            url = xrv.models.model_urls[weights]["weights_url"]
            raise FileNotFoundError(
                f"{path}: torchxrayvision weights {weights!r} are not on this machine and are not downloaded "
                f"automatically; fetch them on a connected machine (wget {url} -O {path}) or pass cache_dir"
            )
        self.weights = weights
        self.targets = list(xrv.models.model_urls[weights]["labels"])
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            state = None  # a pickled model, the format torchxrayvision publishes
        except (RuntimeError, EOFError) as error:
            raise DataError(path, f"not a readable weights file ({error})") from error
        if state is None:
            model = xrv.models.DenseNet(weights=weights, cache_dir=str(path.parent))
        elif isinstance(state, Mapping):
            model = xrv.models.DenseNet(num_classes=len(self.targets))
            try:
                model.load_state_dict(state)
            except RuntimeError as error:
                raise DataError(path, f"does not fit torchxrayvision's DenseNet-121 ({error})") from error
        else:
            raise DataError(path, f"not a DenseNet state dict or model (found {type(state).__name__})")
        self.model = model.eval().requires_grad_(False)

    @property
    def feature_dim(self) -> int:
        return int(self.model.classifier.in_features)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` in [-1, 1] -> ``[N, 1, 224, 224]`` in [-1024, 1024]."""
        if images.ndim != 4:
            raise ValueError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}")
        low, high = float(images.min()), float(images.max())
        if low < -1.0 - 1e-3 or high > 1.0 + 1e-3:
            raise ValueError(f"expected images in [-1, 1], got values in [{low:.3g}, {high:.3g}]")
        x = images.float().mean(dim=1, keepdim=True) * XRV_INTENSITY
        if tuple(x.shape[-2:]) != (XRV_RESOLUTION, XRV_RESOLUTION):
            x = F.interpolate(x, size=(XRV_RESOLUTION, XRV_RESOLUTION), mode="bilinear", align_corners=False)
        return x

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.features2(self.preprocess(images))
        return features, self.model.classifier(features)


def as_feature_network(network: nn.Module) -> nn.Module:
    """``network`` if it already returns ``(features, logits)`` (:class:`ClassifierFeatures`, :class:`XRVFeatures`),
    else wrapped in :class:`ClassifierFeatures`."""
    return network if isinstance(network, (ClassifierFeatures, XRVFeatures)) else ClassifierFeatures(network)


def _batches(
    data: torch.Tensor | Iterable,
    batch_size: int,
    transform: Callable | None,
    num_workers: int,
) -> Iterable:
    """Batches of images (a tensor) or of dictionaries (datalist items, a Dataset or a DataLoader)."""
    from monai.data import DataLoader, Dataset

    if isinstance(data, torch.Tensor):
        return data.split(batch_size)
    if isinstance(data, torch.utils.data.DataLoader):
        return data
    if not isinstance(data, torch.utils.data.Dataset):
        data = Dataset(data=list(data), transform=transform)
    elif transform is not None:
        raise ValueError("transform applies to a datalist; a Dataset brings its own")
    return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def predict(
    network: nn.Module,
    images_or_datalist: torch.Tensor | Iterable,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    transform: Callable | None = None,
    image_key: str = "image",
    label_key: str = "labels",
    num_workers: int = 0,
) -> dict[str, torch.Tensor]:
    """Class probabilities and features of images, in batches, without gradients and in eval mode.

    Args:
        network: a classifier (MONAI DenseNet, ResNet...), :class:`ClassifierFeatures` or :class:`XRVFeatures`.
        images_or_datalist: a tensor ``[N, C, H, W]`` in [-1, 1], a list of datalist items (loaded by
            ``transform``, e.g. the classifier config's ``validate#preprocessing``), a Dataset or a DataLoader
            of dictionaries.
        batch_size: images per forward pass (not used for a DataLoader).
        device: where to run; default the network's device.
        transform: preprocessing for datalist items.
        image_key / label_key: the dictionary keys of images and (optional) multi-hot labels.
        num_workers: DataLoader workers for a datalist.

    Returns:
        ``{"probs": [N, classes], "logits": [N, classes], "features": [N, feature_dim]}`` on the CPU, plus
        ``"labels"`` when the items carry them.
    """
    model = as_feature_network(network)
    first = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (first.device if first is not None else "cpu")
    modes = {module: module.training for module in (network, *model.modules())}
    model.eval()
    outputs: dict[str, list[torch.Tensor]] = {"features": [], "logits": [], "labels": []}
    try:
        with torch.no_grad():
            for batch in _batches(images_or_datalist, batch_size, transform, num_workers):
                if isinstance(batch, Mapping):
                    if label_key in batch:
                        outputs["labels"].append(torch.as_tensor(batch[label_key]).float().cpu())
                    batch = batch[image_key]
                features, logits = model(torch.as_tensor(batch).to(device).float())
                outputs["features"].append(features.float().cpu())
                outputs["logits"].append(logits.float().cpu())
    finally:
        for module, training in modes.items():
            module.training = training
    if not outputs["logits"]:
        raise ValueError("predict got no images")
    result = {key: torch.cat(values) for key, values in outputs.items() if values}
    result["probs"] = torch.sigmoid(result["logits"])
    for key in ("features", "logits", "probs"):  # MetaTensor in, MetaTensor out: return plain tensors
        result[key] = result[key].as_subclass(torch.Tensor)
    return result


def auroc_per_class(
    probs: torch.Tensor | np.ndarray | Sequence,
    labels: torch.Tensor | np.ndarray | Sequence,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Per-class AUROC (scikit-learn ``roc_auc_score``) and their macro mean.

    Items whose label is neither 0 nor 1 for a class (uncertain kept as -1) are left out of that class. A class
    whose remaining labels take a single value has no AUROC: it is reported as ``None`` with a note, and left out
    of the macro mean (``None`` when no class can be scored).

    Returns:
        ``{"auroc": {class: float | None}, "macro_auroc": float | None, "notes": {class: why it is None}}``
    """
    from sklearn.metrics import roc_auc_score

    p = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs, dtype=np.float64)
    y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.float64)
    if p.ndim != 2 or p.shape != y.shape or p.shape[1] != len(class_names):
        shapes = f"probs {p.shape} and labels {y.shape}"
        raise ValueError(f"{shapes} must both be [items, {len(class_names)} classes]: {list(class_names)}")
    if not np.isfinite(p).all():
        raise ValueError("probs hold NaN or infinite values")
    auroc: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    for k, name in enumerate(class_names):
        known = (y[:, k] == 0) | (y[:, k] == 1)
        values = np.unique(y[known, k])
        if len(values) < 2:
            kind = "no items with a 0/1 label" if not known.any() else f"only {'positive' if values[0] else 'negative'}"
            notes[name] = f"{kind} ({int(known.sum())} of {len(y)} items): AUROC undefined"
            auroc[name] = None
            continue
        auroc[name] = float(roc_auc_score(y[known, k], p[known, k]))
    scored = [v for v in auroc.values() if v is not None]
    return {"auroc": auroc, "macro_auroc": float(np.mean(scored)) if scored else None, "notes": notes}
