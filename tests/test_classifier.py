"""The evaluation classifier: configs/train_classifier.json (on top of configs/train.json) trains and keeps the best
model as a MONAI ``ConfigWorkflow``, ``bundle.classifier`` reloads it, extracts features and scores AUROC, and the
torchxrayvision feature network loads from a local cache only (faked here with untrained weights). The independent
classifier (configs/train_classifier_independent.json, a ResNet-18) trains and reloads the same way into its own
folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from monai.data import load_decathlon_datalist
from monai.metrics import ROCAUCMetric
from monai.networks.nets import DenseNet121, EfficientNetBN, ResNet, resnet18
from sklearn.metrics import roc_auc_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bundle.classifier import (
    ClassifierFeatures,
    MacroAUROCMetric,
    XRVFeatures,
    auroc_per_class,
    predict,
    xrv_available,
    xrv_weights_path,
)
from bundle.data.errors import DataError
from bundle.workflows import INDEPENDENT_CONFIGS, independent_overrides, load_classifier
from bundle.workflows import CLASSIFIER_CONFIGS as DEFAULT_CONFIGS
from tests.tiny import TINY_CLASSIFIER_DEF, make_tiny_dataset

TINY = {
    "classifier_def": TINY_CLASSIFIER_DEF,
    "batch_size": 16,
    "num_workers": 0,
    "num_threads": 1,
    "image_size": 64,
    "learning_rate": 3e-3,
    "log_interval": 1,
}
EASY_FINDINGS = ("Cardiomegaly", "Support Devices", "Edema")


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 embedded studies at 64 px, split at random by patient (about 70 / 16 / 33) so that the validation and
    test splits hold both label values of the easy findings."""
    out = tmp_path_factory.mktemp("embedded_split")
    make_tiny_dataset(out, 120, split="random", val_fraction=0.15, test_fraction=0.25, quiet=True)
    return out


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def workflow(
    dataset_dir: Path,
    output_dir: Path,
    configs: tuple[str, ...] = DEFAULT_CONFIGS,
    base: dict[str, object] = TINY,
    **overrides: object,
) -> ConfigWorkflow:
    settings = {**base, "dataset_dir": str(dataset_dir), "output_dir": str(output_dir), **overrides}
    flow = ConfigWorkflow(config_file=list(configs), logging_file=False, workflow_type="train", **settings)
    flow.initialize()
    return flow


def test_config_trains_saves_best_and_reloads(split_dataset: Path, tmp_path: Path) -> None:
    flow = workflow(split_dataset, tmp_path, max_epochs=2, epoch_length=2)
    assert flow.check_properties() == []
    iterations: list[int] = []
    flow.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: iterations.append(e.state.iteration))
    flow.run()
    flow.finalize()
    assert iterations == [1, 2, 3, 4]
    evaluator = flow.evaluator
    assert evaluator.state.key_metric_name == "val_auroc" and 0.0 <= evaluator.state.best_metric <= 1.0

    ckpt = tmp_path / "classifier" / "model.pt"
    assert flow.parser.get_parsed_content("classifier_checkpoint") == str(ckpt) and ckpt.is_file()
    events = list((tmp_path / "classifier" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    scalars = EventAccumulator(str(events[0])).Reload().Tags()["scalars"]
    assert {"train_loss", "val_auroc"} <= set(scalars)

    # Rebuilt from the same configs: the saved weights, the datalist's class names, the same predictions.
    network = load_classifier(
        dataset_dir=str(split_dataset), output_dir=str(tmp_path), image_size=64, classifier_def=TINY_CLASSIFIER_DEF
    )
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert all(torch.equal(network.state_dict()[k], v) for k, v in saved.items())
    class_names = json.loads((split_dataset / "datalist.json").read_text())["class_names"]
    assert network.class_names == class_names and not network.training

    items = load_decathlon_datalist(split_dataset / "datalist.json", data_list_key="test", base_dir=split_dataset)
    out = predict(network, items[:5], batch_size=2, transform=flow.parser.get_parsed_content("validate#preprocessing"))
    feature_dim = network.class_layers.out.in_features  # 30 for the tiny DenseNet, 1024 for DenseNet121
    assert out["probs"].shape == (5, len(class_names)) and out["features"].shape == (5, feature_dim)
    assert out["labels"].shape == (5, len(class_names))
    images = torch.stack([flow.parser.get_parsed_content("validate#preprocessing")(i)["image"] for i in items[:5]])
    assert images.shape == (5, 3, 64, 64)  # train.json's preprocessing: image_channels x image_size, in [-1, 1]
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    with torch.no_grad():
        assert torch.allclose(out["probs"], torch.sigmoid(network(images)), atol=1e-5)

    # From the checkpoint alone: class and channel counts come from the weights, no datalist needed.
    alone = load_classifier(str(ckpt), classifier_def=TINY_CLASSIFIER_DEF, dataset_dir=str(tmp_path / "missing"))
    assert alone.class_names is None
    with torch.no_grad():
        assert torch.allclose(alone(images), network(images))


def test_the_two_configs_build_different_networks_in_different_folders(tmp_path: Path) -> None:
    """The independent config builds a ResNet-18 where the default builds a DenseNet-121, writes elsewhere, and keeps
    its architecture when given the first classifier's overrides (a tiny DenseNet ``classifier_def`` here)."""
    from monai.bundle import ConfigParser

    def parse(configs: tuple[str, ...], overrides: dict) -> ConfigParser:
        parser = ConfigParser()
        parser.read_config(list(configs))
        for key, value in {"output_dir": str(tmp_path), "num_classes": 14, **overrides}.items():
            parser[key] = value
        return parser

    first, second = parse(DEFAULT_CONFIGS, {}), parse(INDEPENDENT_CONFIGS, {})
    densenet, resnet = first.get_parsed_content("classifier_def"), second.get_parsed_content("classifier_def")
    assert isinstance(densenet, DenseNet121) and isinstance(resnet, ResNet) and type(densenet) is not type(resnet)
    assert second.get_parsed_content("network_def") is resnet  # the trainer's network is the ResNet
    assert ClassifierFeatures(resnet).feature_dim == 512 and resnet.fc.out_features == 14
    assert resnet.conv1.in_channels == first.get_parsed_content("image_channels") == 3
    assert first.get_parsed_content("classifier_checkpoint") == str(tmp_path / "classifier" / "model.pt")
    assert second.get_parsed_content("classifier_checkpoint") == str(tmp_path / "classifier_independent" / "model.pt")

    shared = {**TINY, "classifier_dir": str(tmp_path / "elsewhere"), "max_epochs": 3}
    kept = independent_overrides(shared)
    assert "classifier_def" not in kept and "classifier_dir" not in kept and kept["max_epochs"] == 3
    tiny_second = parse(INDEPENDENT_CONFIGS, kept)
    assert isinstance(tiny_second.get_parsed_content("classifier_def"), ResNet)
    assert tiny_second.get_parsed_content("classifier_dir") == str(tmp_path / "classifier_independent")
    assert independent_overrides(None) == {}


def test_independent_config_trains_a_resnet18_into_its_own_folder_and_reloads(
    split_dataset: Path, tmp_path: Path
) -> None:
    """configs/train_classifier_independent.json through MONAI's ConfigWorkflow (what ``python -m monai.bundle run``
    runs): two iterations of the real ResNet-18 at 64 px, its best model in ``classifier_independent/``, reloaded by
    load_classifier as a ResNet with 512-d features."""
    base = independent_overrides(TINY)  # the tiny DenseNet classifier_def dropped: the config's ResNet-18 trains
    flow = workflow(split_dataset, tmp_path, INDEPENDENT_CONFIGS, base, max_epochs=1, epoch_length=2)
    assert flow.check_properties() == []
    flow.run()
    flow.finalize()
    assert isinstance(flow.parser.get_parsed_content("classifier"), ResNet)
    ckpt = tmp_path / "classifier_independent" / "model.pt"
    assert ckpt.is_file() and not (tmp_path / "classifier").exists()
    assert len(list((tmp_path / "classifier_independent" / "tensorboard").glob("events.out.tfevents.*"))) == 1

    network = load_classifier(
        INDEPENDENT_CONFIGS, dataset_dir=str(split_dataset), output_dir=str(tmp_path), image_size=64
    )
    assert isinstance(network, ResNet) and not network.training
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert all(torch.equal(network.state_dict()[k], v) for k, v in saved.items())
    class_names = json.loads((split_dataset / "datalist.json").read_text())["class_names"]
    assert network.class_names == class_names

    items = load_decathlon_datalist(split_dataset / "datalist.json", data_list_key="test", base_dir=split_dataset)
    transform = flow.parser.get_parsed_content("validate#preprocessing")
    images = torch.stack([transform(item)["image"] for item in items[:3]]).as_subclass(torch.Tensor)
    features, logits = ClassifierFeatures(network)(images)
    assert features.shape == (3, 512) and logits.shape == (3, len(class_names))
    out = predict(network, items[:3], batch_size=2, transform=transform)
    assert out["features"].shape == (3, 512) and out["probs"].shape == (3, len(class_names))
    with torch.no_grad():
        assert torch.allclose(out["probs"], torch.sigmoid(network(images)), atol=1e-5)

    # From the checkpoint and the independent configs alone (sizes from the weights); the DenseNet configs refuse it.
    alone = load_classifier(INDEPENDENT_CONFIGS, ckpt, dataset_dir=str(tmp_path / "missing"))
    assert isinstance(alone, ResNet) and alone.class_names is None and alone.fc.out_features == len(class_names)
    with torch.no_grad():
        assert torch.allclose(alone(images), network(images))
    with pytest.raises(DataError, match="does not fit the configured classifier_def"):
        load_classifier(str(ckpt), dataset_dir=str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="train_classifier_independent.json"):
        load_classifier(INDEPENDENT_CONFIGS, output_dir=str(tmp_path / "untrained"))


def test_classifier_learns_the_easy_findings(split_dataset: Path, tmp_path: Path) -> None:
    """Trained by the config for 10 short epochs (~6 s), the tiny DenseNet reads cardiomegaly, support devices
    and edema from held-out test images far better than chance (an untrained one scores about 0.5)."""
    flow = workflow(split_dataset, tmp_path, max_epochs=10, log_interval=1000)
    flow.run()
    flow.finalize()
    network = load_classifier(
        dataset_dir=str(split_dataset), output_dir=str(tmp_path), image_size=64, classifier_def=TINY_CLASSIFIER_DEF
    )
    items = load_decathlon_datalist(split_dataset / "datalist.json", data_list_key="test", base_dir=split_dataset)
    out = predict(network, items, transform=flow.parser.get_parsed_content("validate#preprocessing"))
    scores = auroc_per_class(out["probs"], out["labels"], network.class_names)["auroc"]
    easy = [scores[name] for name in EASY_FINDINGS]
    assert None not in easy, scores
    assert np.mean(easy) > 0.75 and min(easy) > 0.6, scores


def test_load_classifier_refuses_bad_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.pt"):
        load_classifier(output_dir=str(tmp_path), classifier_def=TINY_CLASSIFIER_DEF)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pt"):
        load_classifier(str(junk))
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pt")
    with pytest.raises(DataError, match="not a network state dict"):
        load_classifier(str(tmp_path / "list.pt"))
    from monai.networks.nets import DenseNet

    torch.save(DenseNet(2, 3, 7, init_features=8, growth_rate=4, block_config=(2, 2)).state_dict(), tmp_path / "m.pt")
    with pytest.raises(DataError, match="does not fit the configured classifier_def"):
        load_classifier(str(tmp_path / "m.pt"), classifier_def=TINY_CLASSIFIER_DEF)


def test_classifier_features_are_densenet121_pooled_features() -> None:
    torch.manual_seed(0)
    network = DenseNet121(spatial_dims=2, in_channels=3, out_channels=7).eval()
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    features, logits = ClassifierFeatures(network)(images)
    with torch.no_grad():
        expected = torch.relu(network.features(images)).mean(dim=(2, 3))
        assert torch.allclose(logits, network(images), atol=1e-5)
    assert features.shape == (2, 1024) and ClassifierFeatures(network).feature_dim == 1024
    assert torch.allclose(features, expected, atol=1e-5)
    with pytest.raises(TypeError, match="convolutional classifier ending in a linear layer"):
        ClassifierFeatures(torch.nn.Linear(4, 2))


def test_classifier_features_of_a_resnet_and_an_efficientnet() -> None:
    """The features are the final linear layer's input whatever the layer names: ResNet's flattened ``avgpool``
    (512-d for ResNet-18), EfficientNetBN's pooled head; the logits are the network's own output, and no hook is
    left on the network."""
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    network = resnet18(spatial_dims=2, n_input_channels=3, num_classes=7, conv1_t_stride=2).eval()
    extractor = ClassifierFeatures(network)
    features, logits = extractor(images)
    with torch.no_grad():
        x = network.maxpool(network.act(network.bn1(network.conv1(images))))
        x = network.layer4(network.layer3(network.layer2(network.layer1(x))))
        expected = x.mean(dim=(2, 3))
        assert torch.allclose(logits, network(images), atol=1e-5)
    assert extractor.head is network.fc and extractor.feature_dim == 512 and extractor.num_classes == 7
    assert features.shape == (2, 512) and logits.shape == (2, 7)
    assert torch.allclose(features, expected, atol=1e-5)
    assert not network.fc._forward_hooks and not network._forward_hooks

    efficient = EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=3, num_classes=5)
    features, logits = ClassifierFeatures(efficient.eval())(images)
    with torch.no_grad():
        assert torch.allclose(logits, efficient(images), atol=1e-5)
        assert torch.allclose(efficient._fc(features), logits, atol=1e-5)
    assert features.shape == (2, efficient._fc.in_features) and logits.shape == (2, 5)

    # A network whose output is not its last linear layer's output has no features that match its logits.
    layers = (torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    squashed = torch.nn.Sequential(*layers, torch.nn.Tanh())
    with pytest.raises(RuntimeError, match="not the network's last step"):
        ClassifierFeatures(squashed)(images)


def test_predict_batches_and_restores_the_mode() -> None:
    from monai.networks.nets import DenseNet

    torch.manual_seed(0)
    network = DenseNet(2, 1, 4, init_features=8, growth_rate=4, block_config=(2, 2)).train()
    network.features.norm5.eval()  # a mixed state, to be put back as it was
    images = torch.rand(7, 1, 32, 32) * 2 - 1
    whole = predict(network, images, batch_size=7)
    batched = predict(network, images, batch_size=3)
    assert network.training and network.features.denseblock1.training and not network.features.norm5.training
    network.eval()
    predict(network, images)
    assert not any(module.training for module in network.modules())
    assert whole["probs"].shape == (7, 4) and whole["features"].shape == (7, network.class_layers.out.in_features)
    assert torch.allclose(whole["probs"], batched["probs"], atol=1e-6)
    assert torch.allclose(whole["features"], batched["features"], atol=1e-6)
    assert torch.allclose(whole["probs"], torch.sigmoid(whole["logits"]))
    items = [{"image": images[i], "labels": torch.tensor([1.0, 0, 0, 1])} for i in range(7)]
    from_items = predict(network, items, batch_size=4)
    assert torch.allclose(from_items["probs"], whole["probs"], atol=1e-6) and from_items["labels"].shape == (7, 4)


def test_auroc_per_class_matches_sklearn_and_skips_constant_classes() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 4)) < 0.4).astype(np.float32)
    labels[:, 2] = 0.0  # no positive: AUROC undefined
    labels[:3, 3] = -1.0  # uncertain, kept as -1: left out of that class
    probs = np.clip(labels * 0.3 + rng.random((40, 4)) * 0.7, 0, 1)
    names = ["No Finding", "Cardiomegaly", "Pneumothorax", "Edema"]
    result = auroc_per_class(torch.from_numpy(probs), torch.from_numpy(labels), names)
    expected = [
        roc_auc_score(labels[:, 0], probs[:, 0]),
        roc_auc_score(labels[:, 1], probs[:, 1]),
        roc_auc_score(labels[3:, 3], probs[3:, 3]),
    ]
    assert result["auroc"]["No Finding"] == pytest.approx(expected[0])
    assert result["auroc"]["Cardiomegaly"] == pytest.approx(expected[1])
    assert result["auroc"]["Edema"] == pytest.approx(expected[2])
    assert result["auroc"]["Pneumothorax"] is None and "only negative" in result["notes"]["Pneumothorax"]
    assert result["macro_auroc"] == pytest.approx(np.mean(expected))
    # The textbook case: one positive ranked below one negative out of four pairs.
    textbook = auroc_per_class([[0.1], [0.4], [0.35], [0.8]], [[0], [0], [1], [1]], ["Edema"])
    assert textbook["auroc"]["Edema"] == pytest.approx(0.75) and textbook["macro_auroc"] == pytest.approx(0.75)
    assert auroc_per_class([[0.2], [0.3]], [[1], [1]], ["Edema"])["macro_auroc"] is None
    with pytest.raises(ValueError, match="must both be"):
        auroc_per_class(probs[:, :3], labels, names)
    with pytest.raises(ValueError, match="NaN"):
        auroc_per_class(np.full((40, 4), np.nan), labels, names)


def test_macro_auroc_metric_skips_constant_classes_where_monai_gives_nan() -> None:
    rng = np.random.default_rng(1)
    y = torch.from_numpy((rng.random((20, 3)) < 0.5).astype(np.float32))
    y[:, 1] = 1.0  # a finding present in every validation image
    y_pred = torch.from_numpy(rng.random((20, 3)).astype(np.float32))
    ours, monai_macro = MacroAUROCMetric(), ROCAUCMetric(average="macro")
    for metric in (ours, monai_macro):
        metric(y_pred[:12], y[:12])  # two iterations, accumulated
        metric(y_pred[12:], y[12:])
    expected = np.mean([roc_auc_score(y[:, k], y_pred[:, k]) for k in (0, 2)])
    assert ours.aggregate() == pytest.approx(expected)
    with pytest.warns(UserWarning):
        assert np.isnan(monai_macro.aggregate())
    constant = MacroAUROCMetric()
    constant(y_pred, torch.ones_like(y))
    assert np.isnan(constant.aggregate())


@pytest.fixture
def xrv_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torchxrayvision's default cache under a temporary HOME; downloading raises instead of reaching out."""
    import torchxrayvision as xrv

    monkeypatch.setenv("HOME", str(tmp_path))

    def no_download(url: str, filename: str) -> None:
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(xrv.utils, "download", no_download)
    return tmp_path / ".torchxrayvision" / "models_data"


def test_xrv_features_need_cached_weights(xrv_cache: Path) -> None:
    path = xrv_weights_path()
    assert path.parent == xrv_cache and path.name.endswith(".pt") and not xrv_available()
    with pytest.raises(FileNotFoundError, match="not downloaded automatically") as error:
        XRVFeatures()
    assert str(path) in str(error.value) and "wget https://" in str(error.value)
    assert not xrv_cache.exists()  # nothing fetched, nothing created
    with pytest.raises(ValueError, match="unknown torchxrayvision DenseNet weights"):
        xrv_weights_path("resnet50-res512-all")


def test_xrv_features_from_a_cached_state_dict(xrv_cache: Path) -> None:
    import torchxrayvision as xrv

    torch.manual_seed(0)
    source = xrv.models.DenseNet(num_classes=18).eval()  # untrained stand-in for the published weights
    path = xrv_weights_path()
    path.parent.mkdir(parents=True)
    torch.save(source.state_dict(), path)
    assert xrv_available()
    extractor = XRVFeatures()
    assert len(extractor.targets) == 18 and extractor.feature_dim == 1024

    # Preprocessing is torchxrayvision's convention: one channel in [-1024, 1024] at 224 px.
    grey = (torch.rand(1, 1, 224, 224) * 2 - 1).expand(1, 3, 224, 224)
    with torch.no_grad():
        expected = source.features2(grey[:, :1] * 1024)
    out = predict(extractor, grey)
    assert out["features"].shape == (1, 1024) and out["probs"].shape == (1, 18)
    assert torch.allclose(out["features"], expected, atol=1e-4)
    small = torch.rand(1, 3, 48, 48) * 2 - 1  # resized to 224 px on the way in
    features, logits = extractor(small)
    assert features.shape == (1, 1024) and logits.shape == (1, 18)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        extractor(small * 255)


def test_xrv_features_from_a_published_style_pickled_model(xrv_cache: Path) -> None:
    """torchxrayvision's release files are whole pickled models: they load through torchxrayvision's own loader."""
    import torchxrayvision as xrv

    torch.manual_seed(1)
    source = xrv.models.DenseNet(num_classes=18).eval()
    path = xrv_weights_path("densenet121-res224-nih")
    path.parent.mkdir(parents=True)
    torch.save(source, path)
    extractor = XRVFeatures("densenet121-res224-nih")
    assert extractor.targets == xrv.models.model_urls["densenet121-res224-nih"]["labels"]
    loaded = extractor.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
