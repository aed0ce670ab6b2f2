"""Bundle inference (configs/inference.json): conditioning choices, per-sample seeds, what F writes the report from
(``report_source``), paired output that loads back as a training source, byte-identical reruns, no overwrite, resume,
and clear errors."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.data import DataLoader

from bundle.data.errors import DataError
from bundle.inference.conditioning import SEED_STRIDE, conditioning_items, training_label_rows
from bundle.inference.sampler import TRUNCATION_FLOOR, EMIXERSampler, sample_latents
from bundle.networks import Generator, ReportDecoder
from tests.tiny import CONFIG_DIR, TINY

CLASSES = ["No Finding", "Cardiomegaly", "Edema"]
REPO_ROOT = Path(__file__).resolve().parents[1]
INFER_CONFIGS = [str(CONFIG_DIR / "inference.json"), str(CONFIG_DIR / "demo.json")]


# ------------------------------------------------------------------------------------------------ conditioning
def test_labels_drawn_from_the_training_distribution_are_training_rows() -> None:
    rows = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0]], dtype=np.float32)
    items = conditioning_items("train", 200, CLASSES, rows, seed=3)
    drawn = np.stack([item["labels"].numpy() for item in items])
    assert {tuple(r) for r in drawn} == {tuple(r) for r in rows}  # every row, nothing else
    assert abs(drawn[:, 1].mean() - 2 / 3) < 0.1  # co-occurrence and prevalence follow the rows
    assert [item["sample_index"] for item in items] == list(range(200))
    assert items[5]["seed"] == 3 * SEED_STRIDE + 5
    again = conditioning_items(None, 200, CLASSES, lambda: rows, seed=3)
    assert all(torch.equal(a["labels"], b["labels"]) for a, b in zip(items, again))


def test_per_class_and_explicit_label_sets() -> None:
    per_class = conditioning_items("per_class", 2, CLASSES)
    assert [item["labels"].tolist() for item in per_class] == [[1, 0, 0]] * 2 + [[0, 1, 0]] * 2 + [[0, 0, 1]] * 2
    explicit = conditioning_items([["Cardiomegaly", "Edema"], [0, 0, 1], []], 1, CLASSES)
    assert [item["labels"].tolist() for item in explicit] == [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['Cardiomegally'\]"):
        conditioning_items([["Cardiomegally"]], 1, CLASSES)
    with pytest.raises(ValueError, match="has 2 values; the model has 3 classes"):
        conditioning_items([[1, 0]], 1, CLASSES)
    with pytest.raises(ValueError, match="'train', 'per_class'"):
        conditioning_items("everything", 1, CLASSES)
    with pytest.raises(ValueError, match="need train_labels"):
        conditioning_items("train", 1, CLASSES)


def test_training_label_rows_check_the_class_names(tmp_path: Path) -> None:
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"class_names": CLASSES, "training": [{"labels": [0, 1, 0]}, {"labels": [1, 0, 0]}]}))
    assert training_label_rows(path, CLASSES).tolist() == [[0, 1, 0], [1, 0, 0]]
    with pytest.raises(DataError, match="do not match the model's"):
        training_label_rows(path, ["No Finding", "Edema", "Cardiomegaly"])
    with pytest.raises(DataError, match="missing label source"):
        training_label_rows(tmp_path / "absent.json", CLASSES)


def test_a_latent_depends_on_its_seed_alone() -> None:
    together = sample_latents([11, 12, 13], 20)
    assert torch.equal(together[1], sample_latents([12], 20)[0])
    assert not torch.equal(together[0], together[1])
    truncated = sample_latents(range(50), 20, truncation=0.5)
    assert truncated.abs().max() <= 0.5 and truncated.std() > 0.2


def test_a_truncation_below_the_floor_is_refused_and_the_floor_finishes() -> None:
    """A truncation so small that redrawing would loop for ever is a clear error naming ``truncation`` and the range;
    checked in a subprocess with a time limit, so a hang fails the test instead of stalling the suite."""
    code = "from bundle.inference.sampler import sample_latents; sample_latents([0], 120, 1e-7)"
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode != 0
    assert f"ValueError: truncation=1e-07 is out of range: it must be a number >= {TRUNCATION_FLOOR}" in run.stderr
    for bad in (0, -1.0, float("nan"), "abc", True):
        with pytest.raises(ValueError, match=r"truncation=.* is out of range: it must be a number >= 0\.01"):
            sample_latents([0], 8, bad)
    latents = sample_latents(range(4), 120, TRUNCATION_FLOOR)  # the floor itself ends quickly
    assert latents.abs().max() <= TRUNCATION_FLOOR
    with pytest.raises(ValueError, match="truncation=1e-07 is out of range"):
        EMIXERSampler("cpu", [], FixedImage(torch.zeros(1, 1, SIZE, SIZE)), _decoder(), truncation=1e-7)


# ------------------------------------------------------------------------------------------------ report source
LATENT, SIZE = 8, 32


def _decoder(label_conditioned: bool = True, seed: int = 0) -> ReportDecoder:
    """A tiny F with a label head and large random weights (std 0.7), so its greedy reports change with the labels
    it reads (checked where it matters)."""
    torch.manual_seed(seed)
    sizes = {"encoder_features": 16, "embed_dim": 16, "sentence_hidden": 16, "topic_dim": 16, "word_hidden": 16}
    f = ReportDecoder(
        30,
        max_sentences=3,
        max_words=6,
        in_channels=1,
        encoder="small",
        num_classes=len(CLASSES),
        topic_every_step=True,
        label_conditioned=label_conditioned,
        **sizes,
    )
    with torch.no_grad():
        for module in f.modules():
            if isinstance(module, (nn.Linear, nn.LSTM, nn.LSTMCell, nn.Embedding)):
                for p in module.parameters():
                    p.normal_(0.0, 0.7)
    return f.eval()


class FixedImage(nn.Module):
    """Test fixture standing in for G where the property needs one image for every label set: it ignores ``z`` and
    the labels and returns ``image`` for each sample."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.latent_dim = LATENT
        self.register_buffer("image", image)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.image.expand(z.shape[0], -1, -1, -1)


def _sample(generator: nn.Module, decoder: nn.Module, label_sets: list, report_source: str, seed: int = 0) -> dict:
    """One sampler run over ``label_sets`` (one sample each, one batch); the sampler's output."""
    items = conditioning_items(label_sets, 1, CLASSES, seed=seed)
    sampler = EMIXERSampler(
        "cpu", DataLoader(items, batch_size=len(items)), generator, decoder, None, None, report_source=report_source
    )
    sampler.run()
    return sampler.state.output


def _reports(output: dict) -> list[tuple]:
    """Each sample's report as (token ids, sentence count)."""
    return [
        (tuple(t.flatten().tolist()), int(n)) for t, n in zip(output["report_tokens"], output["report_num_sentences"])
    ]


ALL_LABEL_SETS = [list(combo) for combo in itertools.product([0, 1], repeat=len(CLASSES))]


def test_a_report_from_the_image_is_the_same_whatever_labels_were_requested() -> None:
    image = torch.rand(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    generator, decoder = FixedImage(image), _decoder(label_conditioned=True)
    from_image = _reports(_sample(generator, decoder, ALL_LABEL_SETS, "image"))
    assert len(set(from_image)) == 1  # one image, one report, whatever the 8 label sets
    alone = decoder.greedy_decode(image)  # F reading its own head's predictions from the image
    assert from_image[0] == (tuple(alone["tokens"].flatten().tolist()), int(alone["num_sentences"]))
    # The same F and image written from the labels: the reports follow the label sets.
    from_labels = _reports(_sample(generator, decoder, ALL_LABEL_SETS, "labels"))
    assert len(set(from_labels)) > 1
    for labels, report in zip(ALL_LABEL_SETS, from_labels):
        given = decoder.greedy_decode(image, torch.tensor([labels], dtype=torch.float32))
        assert report == (tuple(given["tokens"].flatten().tolist()), int(given["num_sentences"]))


def test_what_f_is_given_with_the_real_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the real (tiny) G: ``labels`` hands F the requested labels, so other labels reach F; ``image`` hands F
    no labels at all."""
    torch.manual_seed(0)
    generator = Generator(LATENT, len(CLASSES), 8, SIZE, out_channels=1, base_channels=4, attention_resolution=None)
    generator.eval()
    decoder = _decoder(label_conditioned=True)
    given: list[torch.Tensor | None] = []
    original = decoder.greedy_decode

    def spy(images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        given.append(None if labels is None else labels.clone())
        return original(images, labels)

    monkeypatch.setattr(decoder, "greedy_decode", spy)
    first, second = [[1, 0, 0], [0, 1, 0]], [[0, 1, 1], [0, 0, 1]]
    outputs = [_sample(generator, decoder, sets, "labels") for sets in (first, second)]
    assert [g.tolist() for g in given] == [first, second]
    assert not torch.equal(given[0], given[1])
    assert [o["labels"].tolist() for o in outputs] == [first, second]

    given.clear()
    for sets in (first, second):
        _sample(generator, decoder, sets, "image")
    assert given == [None, None]


def test_report_source_is_checked() -> None:
    generator = FixedImage(torch.zeros(1, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"report_source='labels' needs a label_conditioned report decoder"):
        _sample(generator, _decoder(label_conditioned=False), [[1, 0, 0]], "labels")
    with pytest.raises(ValueError, match=r"report_source='text' is not one of \['image', 'labels'\]"):
        _sample(generator, _decoder(), [[1, 0, 0]], "text")
    # A decoder without label conditioning writes from the image, as by default.
    assert len(_sample(generator, _decoder(label_conditioned=False), [[1, 0, 0]], "image")["seeds"]) == 1


# ------------------------------------------------------------------------------------------------ the workflow
def infer(dataset_dir: Path, output_dir: Path, **overrides: object) -> ConfigWorkflow:
    settings = {**TINY, "dataset_dir": str(dataset_dir), "output_dir": str(output_dir), "batch_size": 4, **overrides}
    flow = ConfigWorkflow(config_file=INFER_CONFIGS, logging_file=False, workflow_type="infer", **settings)
    flow.initialize()
    assert flow.check_properties() == []
    flow.run()
    flow.finalize()
    return flow


def causes(error: BaseException) -> str:
    """The messages of an error and of everything that caused it (MONAI wraps errors raised inside configs)."""
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__
    return "\n".join(messages)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_inference_writes_pairs_that_load_back_as_a_training_source(
    dataset_dir: Path, trained: Path, tmp_path: Path
) -> None:
    from bundle.data.prepare import prepare_data

    flow = infer(dataset_dir, trained, num_samples=6, generated_dir=str(tmp_path / "gen"))
    generated = tmp_path / "gen"
    datalist = json.loads((generated / "datalist.json").read_text())
    class_names = json.loads((dataset_dir / "datalist.json").read_text())["class_names"]
    assert datalist["class_names"] == class_names and len(datalist["training"]) == 6
    train_rows = {tuple(item["labels"]) for item in json.loads((dataset_dir / "datalist.json").read_text())["training"]}
    assert all(tuple(item["labels"]) in train_rows for item in datalist["training"])  # default: training labels
    for item in datalist["training"]:
        image = generated / item["image"]
        assert image.suffix == ".png" and image.is_file() and item["report"].strip()
        assert len(item["report_labels"]) == len(class_names)
    assert flow.evaluator.state.iteration == 2  # 6 samples in batches of 4

    # The generated folder is a source like any other: prepare_data reads its manifest into a training datalist.
    summary = prepare_data(
        source="csv",
        data_dir=str(generated / "manifest.csv"),
        out_dir=str(tmp_path / "again"),
        split="random",
        min_count=1,
    )
    again = json.loads((tmp_path / "again" / "datalist.json").read_text())
    assert sum(len(again[s]) for s in ("training", "validation", "test")) == 6 and summary["excluded"]["skipped"] == 0
    loaded = {Path(item["image"]).name: item["labels"] for s in ("training", "validation", "test") for item in again[s]}
    for item in datalist["training"]:
        assert loaded[Path(item["image"]).name] == item["labels"]


def test_report_source_through_the_bundle(
    dataset_dir: Path, trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label_conditioned F (the demo preset's sizes) is by default given no labels (it reads its own head from the
    image); ``report_source: labels`` hands it the conditioning labels; the generated datalist.json says which."""
    given: list[torch.Tensor | None] = []
    original = ReportDecoder.greedy_decode

    def spy(self: ReportDecoder, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        given.append(None if labels is None else labels.detach().cpu().clone())
        return original(self, images, labels)

    monkeypatch.setattr(ReportDecoder, "greedy_decode", spy)
    common = {"num_samples": 1, "labels": "per_class", "label_conditioned_reports": True}
    flow = infer(dataset_dir, trained, generated_dir=str(tmp_path / "image"), **common)
    assert flow.parser["label_conditioned_reports"] is True and flow.parser["report_source"] == "image"
    datalist = json.loads((tmp_path / "image" / "datalist.json").read_text())
    assert datalist["report_source"] == "image"
    assert given and all(labels is None for labels in given)
    assert all(item["report"].strip() for item in datalist["training"])

    given.clear()
    infer(dataset_dir, trained, generated_dir=str(tmp_path / "labels"), report_source="labels", **common)
    datalist = json.loads((tmp_path / "labels" / "datalist.json").read_text())
    assert datalist["report_source"] == "labels"
    assert torch.cat(given).tolist() == [item["labels"] for item in datalist["training"]]

    plain = tmp_path / "plain"
    with pytest.raises(Exception) as error:
        infer(
            dataset_dir,
            trained,
            generated_dir=str(plain),
            **{**common, "report_source": "labels", "label_conditioned_reports": False},
        )
    assert "report_source='labels' needs a label_conditioned report decoder" in causes(error.value)
    assert not plain.exists()  # refused before the writer made the output folder
    with pytest.raises(Exception) as error:
        infer(dataset_dir, trained, generated_dir=str(plain), **{**common, "report_source": "text"})
    assert "report_source='text' is not one of ['image', 'labels']" in causes(error.value)


def pixel_gap(first: bytes, second: bytes) -> int:
    """Largest absolute pixel difference of two encoded images."""
    import io

    import numpy as np
    from PIL import Image

    arrays = [np.asarray(Image.open(io.BytesIO(data)), dtype=np.int64) for data in (first, second)]
    return int(np.abs(arrays[0] - arrays[1]).max())


def test_same_seed_same_samples_whatever_the_batch_size(dataset_dir: Path, trained: Path, tmp_path: Path) -> None:
    common = {"num_samples": 1, "labels": "per_class", "seed": 7}
    infer(dataset_dir, trained, generated_dir=str(tmp_path / "a"), **common)
    infer(dataset_dir, trained, generated_dir=str(tmp_path / "b"), **{**common, "batch_size": 3})
    infer(dataset_dir, trained, generated_dir=str(tmp_path / "c"), **{**common, "seed": 8})
    a, b, c = (files(tmp_path / name) for name in "abc")
    images = [name for name in a if name.startswith("images/")]
    assert len(images) == 7
    # Reports are identical; images equal to one grey level (float sums differ in the last bit between batch sizes,
    # which can flip a rounding), and nearly all of them byte-identical.
    assert all(a[n] == b[n] for n in a if n.startswith("reports/"))
    assert all(pixel_gap(a[name], b[name]) <= 1 for name in images)
    assert sum(a[name] == b[name] for name in images) >= len(images) - 2
    assert any(a[name] != c[name] for name in images)  # another seed, other samples


def test_no_overwrite_then_resume_after_an_interruption(dataset_dir: Path, trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    infer(dataset_dir, trained, num_samples=6, generated_dir=str(out))
    complete = files(out)
    with pytest.raises(RuntimeError) as error:
        infer(dataset_dir, trained, num_samples=6, generated_dir=str(out))
    assert f"output folder {out} is not empty" in causes(error.value) and "resume=True" in causes(error.value)

    # Interrupted after the first batch: the progress log has its settings line and 4 samples, sample 5's image is gone.
    lines = (out / "progress.jsonl").read_text().splitlines(keepends=True)
    (out / "progress.jsonl").write_text("".join(lines[:5]) + lines[5][:20])  # and a torn last line
    for name in ("manifest.csv", "datalist.json", "index.html", "images/syn_000005.png", "reports/syn_000005.txt"):
        (out / name).unlink()
    flow = infer(dataset_dir, trained, num_samples=6, generated_dir=str(out), resume=True)
    assert flow.evaluator.state.iteration == 1  # only the 2 missing samples were drawn
    resumed = files(out)
    assert {n: b for n, b in resumed.items() if n != "progress.jsonl"} == {
        n: b for n, b in complete.items() if n != "progress.jsonl"
    }


def test_a_checkpoint_of_another_model_is_a_clear_error(dataset_dir: Path, trained: Path, tmp_path: Path) -> None:
    with pytest.raises(Exception) as error:
        infer(dataset_dir, trained, base_channels=4, generated_dir=str(tmp_path / "gen"))
    assert "checkpoint_final.pt: weights do not fit the configured generator" in causes(error.value)
    with pytest.raises(Exception) as error:
        infer(dataset_dir, tmp_path / "untrained", generated_dir=str(tmp_path / "gen2"))
    assert "model.pt: missing checkpoint" in causes(error.value)


def test_inference_and_train_configs_define_the_same_networks() -> None:
    train, inference = ConfigParser(), ConfigParser()
    train.read_config(str(CONFIG_DIR / "train.json"))
    inference.read_config(str(CONFIG_DIR / "inference.json"))
    for key in ("network_def", "report_decoder_def"):
        expected = {k: v for k, v in train[key].items() if k != "pretrained_encoder_path"}
        assert inference[key] == expected, key
        for ref in (v[1:] for v in expected.values() if isinstance(v, str) and v.startswith("@")):
            if ref not in ("num_classes", "vocab_size"):
                assert inference[ref] == train[ref], ref
