"""configs/metadata.json against the offline copy of the Model Zoo schema (MONAI's own verify_metadata, no network),
its agreement with the network definitions in configs/train.json, and large_files.yml."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import monai.bundle.scripts as bundle_scripts
import pytest
import yaml

from bundle.data.labels import DEFAULT_CLASSES

pytestmark = pytest.mark.filterwarnings("ignore:No hash value provided")  # the local schema is not hash-checked

REPO_ROOT = Path(__file__).resolve().parents[1]
META_FILE = REPO_ROOT / "configs" / "metadata.json"
SCHEMA_FILE = REPO_ROOT / "configs" / "schema" / "meta_schema_20240725.json"
TRAIN_FILE = REPO_ROOT / "configs" / "train.json"
LARGE_FILES = REPO_ROOT / "large_files.yml"


@pytest.fixture
def metadata() -> dict[str, Any]:
    return json.loads(META_FILE.read_text())


@pytest.fixture
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify_metadata downloads the schema URL unless ``filepath`` exists: make any download attempt an error."""
    original = bundle_scripts.download_url

    def local_only(url: str, filepath: str | Path = "", **kwargs: Any) -> None:
        if not Path(filepath).is_file():
            raise AssertionError(f"verify_metadata tried to download {url} to {filepath}")
        original(url=url, filepath=filepath, **kwargs)

    monkeypatch.setattr(bundle_scripts, "download_url", local_only)


def _verify(meta: dict[str, Any], tmp_path: Path) -> None:
    """MONAI's check, as ``python -m monai.bundle verify_metadata`` runs it (ValueError when invalid)."""
    meta_file = tmp_path / "metadata.json"
    meta_file.write_text(json.dumps(meta))
    bundle_scripts.verify_metadata(meta_file=str(meta_file), filepath=str(SCHEMA_FILE))


def _invalid(meta: dict[str, Any], schema: dict[str, Any]) -> bool:
    """The same schema check without MONAI's message trimming (a regex over the whole dumped metadata, ~1 s)."""
    return not jsonschema.validators.validator_for(schema)(schema).is_valid(meta)


def test_schema_is_a_valid_json_schema(schema: dict[str, Any]) -> None:
    jsonschema.validators.validator_for(schema).check_schema(schema)


def test_metadata_passes_monai_verify_metadata_offline() -> None:
    bundle_scripts.verify_metadata(meta_file=str(META_FILE), filepath=str(SCHEMA_FILE))


def test_verify_metadata_rejects_a_missing_required_key(metadata: dict[str, Any], tmp_path: Path) -> None:
    del metadata["network_data_format"]
    with pytest.raises(ValueError, match="network_data_format"):
        _verify(metadata, tmp_path)


def test_metadata_names_the_zoo_schema(metadata: dict[str, Any]) -> None:
    assert metadata["schema"].endswith("/" + SCHEMA_FILE.name)


@pytest.mark.parametrize(
    "key",
    [
        "schema",
        "version",
        "monai_version",
        "pytorch_version",
        "numpy_version",
        "required_packages_version",
        "task",
        "description",
        "authors",
        "copyright",
        "network_data_format",
    ],
)
def test_removing_a_required_key_fails(metadata: dict[str, Any], schema: dict[str, Any], key: str) -> None:
    assert key in schema["required"]
    assert not _invalid(metadata, schema)
    del metadata[key]
    assert _invalid(metadata, schema)


def _set(meta: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    meta = copy.deepcopy(meta)
    *parents, last = path.split("#")
    node = meta
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return meta


@pytest.mark.parametrize(
    "path, value",
    [
        ("network_data_format#inputs#latent#num_channels", "127"),  # a number as text
        ("network_data_format#inputs#latent#spatial_shape", 0),  # not a list
        ("network_data_format#outputs#pred#value_range", ["-1", "1"]),  # bounds must be numbers
        ("network_data_format#outputs#pred#dtype", None),  # a tensor without its dtype
        ("report_decoder_data_format#outputs", None),  # a <network>_data_format block without outputs
        ("joint_discriminator_data_format#inputs#report#channel_def", {"0": 1}),
        ("required_packages_version#pydicom", 3.0),  # versions are strings
        ("references", "EMIXER"),  # a list, not one string
        ("changelog#0.2.0", ["export"]),
    ],
)
def test_malformed_entries_fail(metadata: dict[str, Any], schema: dict[str, Any], path: str, value: Any) -> None:
    assert _invalid(_set(metadata, path, value), schema)


def _semver(version: str) -> tuple[int, ...]:
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{version!r} is not MAJOR.MINOR.PATCH"
    return tuple(int(p) for p in version.split("."))


def test_version_is_the_newest_changelog_entry(metadata: dict[str, Any]) -> None:
    versions = [_semver(v) for v in metadata["changelog"]]
    assert _semver(metadata["version"]) == max(versions)
    assert "0.1.0" in metadata["changelog"]  # earlier entries are kept


def test_package_version_is_the_bundle_version(metadata: dict[str, Any]) -> None:
    """One version for the bundle (metadata.json), the Python package (pyproject.toml) and ``bundle.__version__``."""
    import tomllib

    import bundle

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == metadata["version"] == bundle.__version__


def test_listed_packages_are_installed_distributions(metadata: dict[str, Any]) -> None:
    """A misspelt package name would make the Zoo's requirements list uninstallable."""
    packages = {"monai": metadata["monai_version"], "torch": metadata["pytorch_version"]}
    packages |= metadata["required_packages_version"]
    missing = []
    for name in packages:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    assert not missing, f"not installed distributions: {missing}"


def test_no_optional_packages_key(metadata: dict[str, Any]) -> None:
    """MONAI's config parser renames the deprecated ``optional_packages_version`` to ``required_packages_version``,
    overwriting the real list in every metadata it parses (exported .ts files included)."""
    assert "optional_packages_version" not in metadata


def test_data_formats_match_the_network_definitions(metadata: dict[str, Any]) -> None:
    """Every network of configs/train.json has a data format, with the shapes its defaults give."""
    train = json.loads(TRAIN_FILE.read_text())
    networks = [key[: -len("_def")] for key in train if key.endswith("_def") and isinstance(train[key], dict)]
    for name in networks:
        block = "network_data_format" if name == "network" else f"{name}_data_format"
        assert block in metadata, f"{name}_def has no {block}"

    size, channels, classes = train["image_size"], train["image_channels"], list(DEFAULT_CLASSES)
    g = metadata["network_data_format"]
    (latent,) = g["inputs"].values()
    assert latent["num_channels"] == train["latent_dim"] + len(classes)
    assert list(latent["channel_def"].values())[-len(classes) :] == [
        f"label: {c} (1 present, 0 absent)" for c in classes
    ]
    assert (g["outputs"]["pred"]["num_channels"], g["outputs"]["pred"]["spatial_shape"]) == (channels, [size, size])
    assert g["outputs"]["pred"]["value_range"] == [-1, 1]

    f = metadata["report_decoder_data_format"]
    assert f["inputs"]["image"]["spatial_shape"] == [size, size]
    tokens = f["outputs"]["tokens"]
    assert (tokens["num_channels"], tokens["spatial_shape"], tokens["dtype"]) == (
        train["max_sentences"],
        [train["max_words"]],
        "int64",
    )
    assert f["outputs"]["num_sentences"]["value_range"] == [1, train["max_sentences"]]

    labels = metadata["image_discriminator_data_format"]["inputs"]["labels"]
    assert list(labels["channel_def"].values()) == classes and labels["num_channels"] == len(classes)
    for name in ("report_discriminator", "joint_discriminator"):
        assert metadata[f"{name}_data_format"]["inputs"]["report"] == tokens
    for c in classes:
        assert c in metadata["label_classes"]


def test_large_files_name_weights_inside_models() -> None:
    """large_files.yml in the Model Zoo's form, every file under models/ (where MONAI's download_large_files puts
    it, refusing paths that leave the bundle)."""
    entries = yaml.safe_load(LARGE_FILES.read_text())["large_files"]
    paths = [entry["path"] for entry in entries]
    assert "models/model.pt" in paths and len(set(paths)) == len(paths)
    for entry in entries:
        assert set(entry) == {"path", "url", "hash_val", "hash_type"}
        path = Path(entry["path"])
        assert path.parts[0] == "models" and ".." not in path.parts and not path.is_absolute()
        assert entry["url"].startswith("https://") and entry["url"].endswith("/" + path.name)
        assert entry["hash_type"] in ("", "md5", "sha1", "sha256", "sha512")
