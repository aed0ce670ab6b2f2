"""The report decoder F on real test images (bundle.evaluation.decode through bundle.workflows, scripts/evaluate.py
decode / run --checkpoint), on the session's tiny embedded dataset and tiny training run: F is rebuilt from the
training configs with the run's overrides, so no new training is needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle.data.datalist import read_datalist
from bundle.data.errors import DataError
from bundle.workflows import decode_images, decode_reports, evaluate_decoder
from bundle.evaluation.text_metrics import METRIC_KEYS, java_available, read_reports_jsonl
from bundle.networks import ReportDecoder
from tests.tiny import TINY, TRAIN_CONFIGS, write_test_split_as_generated

DECODER_KEYS = {*METRIC_KEYS, "clinical_efficacy", "label_f1", "settings"}
CE_KEYS = {"precision_micro", "recall_micro", "f1_micro", "precision_macro", "recall_macro", "f1_macro", "per_class"}


@pytest.fixture(scope="module")
def checkpoint(trained: Path) -> Path:
    return trained / "models" / "checkpoint_final.pt"


@pytest.fixture(scope="module")
def decoded(checkpoint: Path, dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One evaluation of the trained F on the real test split, with the training run's configs and overrides."""
    out = tmp_path_factory.mktemp("decoder")
    metrics = evaluate_decoder(checkpoint, dataset_dir, out, config_file=TRAIN_CONFIGS, **TINY)
    return {"out": out, "metrics": metrics}


def _parser(dataset_dir: Path, **values: object):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(TRAIN_CONFIGS)
    for key, value in {**TINY, "dataset_dir": str(dataset_dir), **values}.items():
        parser[key] = value
    return parser


def _perturbed(checkpoint: Path, path: Path, std: float = 0.1) -> Path:
    """A copy of the checkpoint whose report decoder has seeded noise added to its weights (batch-norm statistics
    kept); the other networks are dropped, as in a released model.pt."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["report_decoder"]
    rng = torch.Generator().manual_seed(0)
    noisy = {
        key: (
            value + std * torch.randn(value.shape, generator=rng)
            if value.is_floating_point() and "running" not in key
            else value
        )
        for key, value in state.items()
    }
    torch.save({"report_decoder": noisy}, path)
    return path


def test_one_report_per_test_item_scored_with_the_issue_metrics(decoded: dict, dataset_dir: Path) -> None:
    test = read_datalist(dataset_dir).splits["test"]
    out, metrics = decoded["out"], decoded["metrics"]
    hypotheses = read_reports_jsonl(out / "hypotheses.jsonl")
    references = read_reports_jsonl(out / "references.jsonl")
    assert list(hypotheses) == list(references) == [item["study"] for item in test]
    assert list(references.values()) == [item["report"] for item in test]
    assert all(text.strip() for text in hypotheses.values())
    assert json.loads((out / "metrics.json").read_text()) == metrics

    expected = DECODER_KEYS if java_available() else DECODER_KEYS - {"METEOR"}
    assert set(metrics) == expected
    assert all(0.0 <= metrics[key] <= 1.0 for key in ("BLEU-1", "BLEU-4", "ROUGE-L", "METEOR") if key in metrics)
    bleu = [metrics[f"BLEU-{n}"] for n in (1, 2, 3, 4)]  # non-increasing (up to the scorer's 1e-9 smoothing)
    assert all(a >= b - 1e-9 for a, b in zip(bleu, bleu[1:])), bleu
    assert set(metrics["clinical_efficacy"]) == CE_KEYS
    names = read_datalist(dataset_dir).class_names
    assert set(metrics["label_f1"]["per_class"]) == set(names) and metrics["label_f1"]["num_reports"] == len(test)
    settings = metrics["settings"]
    assert settings["num_reports"] == len(test) and settings["split"] == "test"
    assert settings["config_files"] == TRAIN_CONFIGS


def test_reports_are_f_greedy_decode_of_the_training_preprocessed_image(
    checkpoint: Path, dataset_dir: Path, decoded: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spy on the images F receives: exactly the training pipeline's output; and decode one item by hand."""
    seen: list[torch.Tensor] = []
    original = ReportDecoder.greedy_decode

    def spy(self: ReportDecoder, images: torch.Tensor) -> dict:
        seen.append(images.detach().cpu().clone())
        return original(self, images)

    monkeypatch.setattr(ReportDecoder, "greedy_decode", spy)
    result = decode_reports(checkpoint, dataset_dir, TRAIN_CONFIGS, **{**TINY, "batch_size": 2})
    assert [len(batch) for batch in seen] == [2, 1]  # batches of batch_size, the rest last
    assert result.hypotheses == read_reports_jsonl(decoded["out"] / "hypotheses.jsonl")  # batch size: no effect

    parser = _parser(dataset_dir)
    train_preprocessing = parser.get_parsed_content("train#preprocessing")
    items = read_datalist(dataset_dir).splits["test"]
    by_hand = torch.stack(
        [torch.as_tensor(train_preprocessing(dict(i))["image"]).as_subclass(torch.Tensor) for i in items]
    )
    images = torch.cat(seen)
    assert images.shape == (len(items), parser["image_channels"], TINY["image_size"], TINY["image_size"])
    assert torch.equal(images, by_hand.float())
    assert images.min() >= -1 and images.max() <= 1 and images.min() < 0  # [-1, 1], not [0, 1]

    decoder = parser.get_parsed_content("report_decoder_def", lazy=False)
    decoder.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["report_decoder"])
    out = original(decoder.eval(), by_hand[:1].float())
    text = parser.get_parsed_content("tokenizer").decode(out["tokens"][0], int(out["num_sentences"][0]))
    assert result.hypotheses[items[0]["study"]] == text
    assert np.array_equal(result.labels, np.asarray([i["labels"] for i in items]))


def test_changed_decoder_weights_change_the_reports(
    checkpoint: Path, dataset_dir: Path, decoded: dict, tmp_path: Path
) -> None:
    noisy = _perturbed(checkpoint, tmp_path / "noisy.pt")  # also a model.pt-like file: report_decoder only
    changed = decode_reports(noisy, dataset_dir, TRAIN_CONFIGS, **TINY)
    original = read_reports_jsonl(decoded["out"] / "hypotheses.jsonl")
    assert list(changed.hypotheses) == list(original)
    assert changed.hypotheses != original
    assert decode_reports(noisy, dataset_dir, TRAIN_CONFIGS, **TINY).hypotheses == changed.hypotheses  # deterministic


def test_released_model_layout_uses_the_tokenizer_beside_the_weights(
    checkpoint: Path, dataset_dir: Path, decoded: dict, tmp_path: Path
) -> None:
    """A ``models/model.pt`` with ``tokenizer.json`` beside it decodes a dataset that has no tokenizer of its own."""
    import shutil

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    models = tmp_path / "models"
    models.mkdir()
    torch.save({"generator": state["ema_generator"], "report_decoder": state["report_decoder"]}, models / "model.pt")
    data = json.loads((dataset_dir / "datalist.json").read_text())
    for item in data["test"]:
        item["image"] = str(dataset_dir / item["image"])
    real = tmp_path / "real" / "datalist.json"
    real.parent.mkdir()
    real.write_text(json.dumps(data))
    with pytest.raises(DataError, match="tokenizer.json: missing tokenizer file"):
        decode_reports(models / "model.pt", real, TRAIN_CONFIGS, **TINY)
    shutil.copy(dataset_dir / "tokenizer.json", models / "tokenizer.json")
    result = decode_reports(models / "model.pt", real, TRAIN_CONFIGS, **TINY)
    assert result.hypotheses == read_reports_jsonl(decoded["out"] / "hypotheses.jsonl")


def test_bad_items_are_named_or_skipped_and_counted(checkpoint: Path, dataset_dir: Path, tmp_path: Path) -> None:
    data = json.loads((dataset_dir / "datalist.json").read_text())
    for item in data["test"]:
        item["image"] = str(dataset_dir / item["image"])
    data["test"][0]["image"] = str(tmp_path / "missing.png")
    data["test"][1]["report"] = ""
    real = tmp_path / "datalist.json"
    real.write_text(json.dumps(data))
    options = {**TINY, "tokenizer_path": str(dataset_dir / "tokenizer.json")}
    with pytest.raises(DataError, match=r"datalist\.json: bad item: test item 1: no report text"):
        decode_reports(checkpoint, real, TRAIN_CONFIGS, **options)
    result = decode_reports(checkpoint, real, TRAIN_CONFIGS, skip_bad=True, **options)
    assert list(result.hypotheses) == [data["test"][2]["study"]]
    assert result.skipped["reasons"] == {"bad item": 1, "missing image file": 1}


def test_a_bad_checkpoint_is_an_error_naming_the_file(checkpoint: Path, dataset_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nothing_here.pt"
    with pytest.raises(DataError, match=r"nothing_here\.pt: missing checkpoint"):
        decode_reports(missing, dataset_dir, TRAIN_CONFIGS, **TINY)
    no_decoder = tmp_path / "generator_only.pt"
    torch.save({"generator": {"w": torch.zeros(1)}}, no_decoder)
    with pytest.raises(DataError, match=r"generator_only\.pt: checkpoint has none of \['report_decoder'\]"):
        decode_reports(no_decoder, dataset_dir, TRAIN_CONFIGS, **TINY)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"garbage\.pt: cannot read checkpoint"):
        decode_reports(garbage, dataset_dir, TRAIN_CONFIGS, **TINY)
    with pytest.raises(DataError, match=r"checkpoint_final\.pt: weights do not fit the configured report_decoder"):
        decode_reports(checkpoint, dataset_dir, TRAIN_CONFIGS, **{**TINY, "text_hidden": TINY["text_hidden"] + 8})


def test_decoder_printout_names_every_score(decoded: dict, capsys: pytest.CaptureFixture) -> None:
    """What ``scripts/evaluate.py decode --real`` prints after :func:`bundle.workflows.evaluate_decoder`."""
    from bundle.evaluation.console import print_decoder

    metrics = decoded["metrics"]
    assert sorted(p.name for p in decoded["out"].iterdir()) == ["hypotheses.jsonl", "metrics.json", "references.jsonl"]
    print_decoder(metrics)
    printed = capsys.readouterr().out
    assert f"{metrics['BLEU-1']:.4f}" in printed and "f1_macro" in printed and "mean_f1" in printed


def test_run_with_a_checkpoint_adds_the_decoder_block(
    checkpoint: Path, dataset_dir: Path, decoded: dict, tmp_path: Path
) -> None:
    """``evaluate(decoder_checkpoint=...)`` (``run --checkpoint``): the decoder block in metrics.json (the same
    numbers as ``decode``) and report.md."""
    from bundle.workflows import CLASSIFIER_CONFIGS, evaluate

    made = write_test_split_as_generated(dataset_dir, tmp_path)
    classifier, override = made["classifier"], made["override"]

    out = tmp_path / "evaluation"
    evaluate(
        dataset_dir,
        tmp_path / "generated",
        out,
        classifier_checkpoint=classifier,
        classifier_config=[*CLASSIFIER_CONFIGS, str(override)],
        image_size=32,
        xrv=False,
        figures=False,
        decoder_checkpoint=checkpoint,
        decoder_config=TRAIN_CONFIGS,
        decoder_overrides=TINY,
    )

    metrics = json.loads((out / "metrics.json").read_text())
    block = metrics["reports"]["decoder"]
    assert set(block) == set(decoded["metrics"])
    assert {k: block[k] for k in METRIC_KEYS if k in block} == pytest.approx(
        {k: decoded["metrics"][k] for k in METRIC_KEYS if k in block}
    )
    assert block["clinical_efficacy"]["f1_macro"] == pytest.approx(decoded["metrics"]["clinical_efficacy"]["f1_macro"])
    assert (out / "decoder" / "hypotheses.jsonl").is_file()
    report = (out / "report.md").read_text()
    section = report.split("### Report decoder F on real test images", 1)[1]
    assert f"| {block['BLEU-1']:.4g} |" in section and "clinical efficacy" in section and "label F1" in section
    assert "scripts/evaluate.py decode" in metrics["reports"]["text_metrics"]["skipped"]


# ------------------------------------------------------------------------------------------------ decode --images
def _by_hand(checkpoint: Path, dataset_dir: Path, items: list[dict]) -> list[str]:
    """F's greedy reports, decoded here, for ``items`` (``image`` paths, with ``report`` and ``labels``) through the
    training preprocessing; F built and loaded without the module under test."""
    parser = _parser(dataset_dir)
    preprocessing = parser.get_parsed_content("train#preprocessing")
    images = torch.stack([torch.as_tensor(preprocessing(dict(i))["image"]).as_subclass(torch.Tensor) for i in items])
    decoder = parser.get_parsed_content("report_decoder_def", lazy=False)
    decoder.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["report_decoder"])
    assert not decoder.label_conditioned  # the demo preset writes from the image alone
    out = decoder.eval().greedy_decode(images.float())
    tokenizer = parser.get_parsed_content("tokenizer")
    return [tokenizer.decode(t, int(n)) for t, n in zip(out["tokens"], out["num_sentences"])]


@pytest.fixture(scope="module")
def image_folder(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """Three test-split PNGs copied into a folder (one in a subfolder) beside a text file; ``{id: datalist item}``."""
    import shutil

    folder = tmp_path_factory.mktemp("pngs")
    (folder / "sub").mkdir()
    test = read_datalist(dataset_dir).splits["test"][:3]
    expected = {}
    for name, item in zip(("b_first", "a_second", "sub/c_third"), test):
        shutil.copy(item["image"], folder / f"{name}.png")
        expected[name] = item
    (folder / "notes.txt").write_text("not an image")
    return folder, expected


def test_decode_images_of_a_folder(checkpoint: Path, dataset_dir: Path, image_folder: tuple, tmp_path: Path) -> None:

    folder, expected = image_folder
    out = tmp_path / "out"
    result = decode_images(folder, checkpoint, TRAIN_CONFIGS, out, dataset_dir=str(dataset_dir), **TINY)
    written = read_reports_jsonl(out / "hypotheses.jsonl")
    assert list(written) == ["a_second", "b_first", "sub/c_third"]  # path order, ids without the ending
    assert written == result.hypotheses and len((out / "hypotheses.jsonl").read_text().splitlines()) == 3
    by_hand = _by_hand(checkpoint, dataset_dir, list(expected.values()))
    assert {key: written[key] for key in expected} == dict(zip(expected, by_hand))
    assert sorted(p.name for p in out.iterdir()) == ["hypotheses.jsonl"]


def _generated(dataset_dir: Path, out_dir: Path) -> tuple[Path, list[dict]]:
    """A generated-data folder written by the paired writer from the real test images; its folder and test items."""
    from bundle.data.images import read_cxr
    from bundle.inference.writer import PairedDatasetWriter

    data = read_datalist(dataset_dir)
    test = data.splits["test"]
    writer = PairedDatasetWriter(out_dir, data.class_names, report_source="image")
    index = list(range(len(test)))
    images = np.stack([read_cxr(i["image"])[0] for i in test])[:, None]
    writer.write_batch(images, [i["report"] for i in test], np.asarray([i["labels"] for i in test]), index, index)
    writer.finalize()
    return out_dir, test


def test_decode_images_of_a_manifest_and_a_datalist(checkpoint: Path, dataset_dir: Path, tmp_path: Path) -> None:
    import csv

    generated, test = _generated(dataset_dir, tmp_path / "generated")
    with (generated / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    options = {"dataset_dir": str(dataset_dir), **TINY}
    result = decode_images(generated / "manifest.csv", checkpoint, TRAIN_CONFIGS, tmp_path / "m", **options)
    assert list(result.hypotheses) == [row["id"] for row in rows] == [f"syn_{i:06d}" for i in range(len(test))]
    assert read_reports_jsonl(tmp_path / "m" / "hypotheses.jsonl") == result.hypotheses
    items = [{**item, "image": str(generated / row["image"])} for item, row in zip(test, rows)]
    assert list(result.hypotheses.values()) == _by_hand(checkpoint, dataset_dir, items)

    # The generated datalist: the same ids (its items' own) and reports.
    assert decode_images(generated / "datalist.json", checkpoint, TRAIN_CONFIGS, **options).hypotheses == (
        result.hypotheses
    )


def test_decode_images_of_a_datalist_split_is_decode_of_that_split(
    checkpoint: Path, dataset_dir: Path, decoded: dict
) -> None:
    """A real datalist's test split gives the study ids and reports of ``decode --real``; all splits give every item."""

    options = {"dataset_dir": str(dataset_dir), **TINY}
    datalist = dataset_dir / "datalist.json"
    test = decode_images(datalist, checkpoint, TRAIN_CONFIGS, split="test", **options)
    assert test.hypotheses == read_reports_jsonl(decoded["out"] / "hypotheses.jsonl")
    every = decode_images(datalist, checkpoint, TRAIN_CONFIGS, **options)
    data = read_datalist(dataset_dir)
    assert list(every.hypotheses) == [item["study"] for item in data.items()]
    assert all(every.hypotheses[key] == text for key, text in test.hypotheses.items())


def test_decode_images_with_a_released_model_reads_the_files_beside_it(
    checkpoint: Path, dataset_dir: Path, image_folder: tuple, tmp_path: Path
) -> None:
    """No dataset at the configured place: the tokenizer and class names come from beside a released model.pt."""
    import shutil

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    models = tmp_path / "models"
    models.mkdir()
    torch.save({"generator": state["ema_generator"], "report_decoder": state["report_decoder"]}, models / "model.pt")
    options = {"dataset_dir": str(tmp_path / "no_dataset"), **TINY}
    with pytest.raises(DataError, match=r"no_dataset/tokenizer\.json"):
        decode_images(image_folder[0], models / "model.pt", TRAIN_CONFIGS, **options)
    shutil.copy(dataset_dir / "tokenizer.json", models / "tokenizer.json")
    names = read_datalist(dataset_dir).class_names
    (models / "training_labels.json").write_text(json.dumps({"class_names": names, "training": []}))
    released = decode_images(image_folder[0], models / "model.pt", TRAIN_CONFIGS, **options)
    from_dataset = decode_images(image_folder[0], checkpoint, TRAIN_CONFIGS, dataset_dir=str(dataset_dir), **TINY)
    assert released.hypotheses == from_dataset.hypotheses


def test_decode_images_names_bad_input(
    checkpoint: Path, dataset_dir: Path, image_folder: tuple, tmp_path: Path
) -> None:
    import shutil

    options = {"dataset_dir": str(dataset_dir), **TINY}
    folder = tmp_path / "folder"
    shutil.copytree(image_folder[0], folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"broken\.png: "):
        decode_images(folder, checkpoint, TRAIN_CONFIGS, **options)
    result = decode_images(folder, checkpoint, TRAIN_CONFIGS, skip_bad=True, **options)
    assert sorted(result.hypotheses) == ["a_second", "b_first", "sub/c_third"] and result.skipped["skipped"] == 1

    shutil.copy(folder / "a_second.png", folder / "a_second.jpg")
    with pytest.raises(DataError, match=r"a_second\.png: repeated id: 'a_second' is also the id of a_second\.jpg"):
        decode_images(folder, checkpoint, TRAIN_CONFIGS, skip_bad=False, **options)

    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"id,image\nx,{image_folder[0] / 'b_first.png'}\ny,absent.png\n")
    with pytest.raises(DataError, match=r"absent\.png: missing image file"):
        decode_images(manifest, checkpoint, TRAIN_CONFIGS, **options)
    manifest.write_text("id,image\nx,b_first.png\n,a_second.png\n")
    with pytest.raises(DataError, match=r"manifest\.csv: bad row: line 3: no id"):
        decode_images(manifest, checkpoint, TRAIN_CONFIGS, **options)
    manifest.write_text("name,image\nx,b_first.png\n")
    with pytest.raises(DataError, match=r"manifest\.csv: missing column\(s\) \['id'\]"):
        decode_images(manifest, checkpoint, TRAIN_CONFIGS, **options)
    with pytest.raises(ValueError, match="applies to a datalist"):
        decode_images(image_folder[0], checkpoint, TRAIN_CONFIGS, split="test", **options)
    with pytest.raises(DataError, match=r"nowhere: missing"):
        decode_images(tmp_path / "nowhere", checkpoint, TRAIN_CONFIGS, **options)


def test_evaluate_command_line_decodes_images_and_stops_on_bad_input(
    checkpoint: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    """``python scripts/evaluate.py decode --images``: the reports of :func:`bundle.workflows.decode_images`; a missing
    input ends with a one-line error naming it, and an unknown flag stops the command before it writes anything."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "evaluate.py"

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(script), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)

    generated, test = _generated(dataset_dir, tmp_path / "generated")
    out = tmp_path / "cli"
    configs = "[" + ",".join(repr(f) for f in TRAIN_CONFIGS) + "]"
    args = ["decode", "--checkpoint", str(checkpoint), "--images", str(generated / "manifest.csv"), "--out", str(out)]
    args += ["--config_file", configs, f"--dataset_dir={dataset_dir}"]
    args += [f"--{key}={value}" for key, value in TINY.items()]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["hypotheses.jsonl"]
    written = read_reports_jsonl(out / "hypotheses.jsonl")
    assert len(written) == len(test)
    expected = decode_images(
        generated / "manifest.csv", checkpoint, TRAIN_CONFIGS, dataset_dir=str(dataset_dir), **TINY
    )
    assert written == expected.hypotheses
    assert f"{len(test)} reports decoded" in done.stdout

    args = ["decode", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "none.csv"), "--out", str(out)]
    done = cli(*args)
    assert done.returncode == 2 and "none.csv: missing" in done.stderr

    refs = out / "hypotheses.jsonl"
    done = cli("reports", "--references", str(refs), "--hypotheses", str(refs), "--out", "scored", "--bogus", "1")
    assert done.returncode != 0 and "bogus" in done.stderr
    assert not (tmp_path / "scored").exists()


def test_decoder_alone_reads_generated_images_of_a_datalist_given_by_a_relative_path(
    checkpoint: Path, dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from the folder above the outputs with relative paths (as reproduce_embedded does): the datalist's image
    paths come back absolute, so the baseline decoder's own datalist, written elsewhere, still finds the images."""
    from bundle.evaluation.classify import ImageSet
    from bundle.evaluation.summary import decoder_alone_reports

    generated, _ = _generated(dataset_dir, tmp_path / "generated")
    monkeypatch.chdir(tmp_path)
    data = read_datalist(Path("generated") / "datalist.json")
    items = data.splits["training"]
    assert all(Path(item["image"]).is_absolute() and Path(item["image"]).is_file() for item in items)
    image_set = ImageSet("generated", items, torch.zeros(len(items), 1, 1, 1), np.zeros((len(items), 1)), None)
    real = read_datalist(dataset_dir)
    real_dataset = {"dataset_dir": str(real.root), "datalist_path": str(real.path)}

    def decode(datalist: Path, out_dir: Path):
        return decode_images(datalist, checkpoint, TRAIN_CONFIGS, out_dir, **real_dataset, **TINY)

    reports = decoder_alone_reports(decode, image_set, data.class_names, Path("evaluation"))
    expected = decode_images(
        generated / "datalist.json", checkpoint, TRAIN_CONFIGS, dataset_dir=str(dataset_dir), **TINY
    )
    assert reports == list(expected.hypotheses.values())
