"""Report decoder F alone: which text-path variant writes reports that state the findings?

Trains F (the demo preset's sizes) by teacher forcing alone, on the training split of a prepared dataset, once per
variant with the same seed and batches, and every ``eval_every`` iterations greedy-decodes the first ``num_eval``
validation images. It prints the label F1 of those reports against the images' labels (the project's labeler,
the score the GAN's generated reports get), twice where the variant can use it: from F's own label head, and from
the true labels given to a ``label_conditioned`` F (how it writes a generated image's report, from the labels
the image was drawn for). No GAN: it isolates the text path, and one F step costs a fraction of a GAN iteration.
:func:`score_checkpoint` scores a trained run's F the same way instead of training one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bundle.workflows import CONFIG_DIR, DEMO_TRAIN_CONFIGS, parse_config, unknown_config_ids

__all__ = ["VARIANTS", "benchmark", "run_variant", "score_checkpoint", "unknown_overrides", "variant_parser"]

#: The bundle root (the repository root): the configs' ``bundle_root``, under which the demo's data lies.
BUNDLE_ROOT = CONFIG_DIR.parent
#: Text-path variants, as config overrides of the demo preset (which is ``demo``).
VARIANTS: dict[str, dict[str, Any]] = {
    "head": {"topic_every_step": False, "label_conditioned_reports": False},
    "head_topic_every_step": {"topic_every_step": True, "label_conditioned_reports": False},
    "demo": {},
    "label_conditioned": {"label_conditioned_reports": True},
}


def variant_parser(dataset_dir: str, overrides: Mapping[str, Any]) -> Any:
    """The demo training config pointed at ``dataset_dir``, with ``overrides`` set last."""
    settings = {"bundle_root": str(BUNDLE_ROOT), "dataset_dir": str(Path(dataset_dir).resolve()), **overrides}
    return parse_config(DEMO_TRAIN_CONFIGS, settings)


def unknown_overrides(arguments: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """The names in ``overrides`` that are not ids of the demo training config: a bundle config takes an unknown id
    without complaint, so such a name is a typo that would change nothing."""
    return unknown_config_ids(overrides, [DEMO_TRAIN_CONFIGS])


def _eval_images(parser: Any, num_eval: int) -> tuple[torch.Tensor, np.ndarray]:
    preprocessing = parser.get_parsed_content("validate#preprocessing")
    items = parser.get_parsed_content("val_datalist")[:num_eval]
    if not items:
        raise ValueError("the dataset has no validation items")
    images = [torch.as_tensor(preprocessing(dict(item))["image"]).as_subclass(torch.Tensor) for item in items]
    return torch.stack(images).float(), np.array([item["labels"] for item in items], dtype=np.float32)


def _label_f1(decoder: Any, images: torch.Tensor, labels: np.ndarray | None, truth: np.ndarray, parser: Any) -> float:
    from bundle.evaluation.clinical import label_f1
    from bundle.inference import decode_report_tokens

    given = None if labels is None else torch.as_tensor(labels).clamp(min=0)
    with torch.no_grad():
        decoded = decoder.greedy_decode(images, given)
    reports = decode_report_tokens(parser.get_parsed_content("tokenizer"), decoded["tokens"], decoded["num_sentences"])
    return float(label_f1(reports, truth, parser.get_parsed_content("class_names"))["mean_f1"])


def run_variant(
    dataset_dir: str,
    overrides: Mapping[str, Any],
    iterations: int,
    eval_every: int,
    num_eval: int,
    lr: float,
    seed: int,
) -> list[dict[str, Any]]:
    """Train one F variant by teacher forcing; rows of ``{iteration, word_loss, f1_head, f1_given, seconds}``."""
    from bundle.training.batch import prepare_emixer_batch

    torch.manual_seed(seed)
    parser = variant_parser(dataset_dir, overrides)
    decoder = parser.get_parsed_content("report_decoder_def")
    loader = parser.get_parsed_content("train#dataloader")
    images, truth = _eval_images(parser, num_eval)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
    rows: list[dict[str, Any]] = []
    losses: list[float] = []
    start, iteration = time.perf_counter(), 0
    while iteration < iterations:
        for batchdata in loader:
            batch = prepare_emixer_batch(batchdata)
            out = decoder.loss(
                batch["image"],
                batch["report_tokens"],
                batch.get("report_num_sentences"),
                labels=batch["labels"],
                labelled=batch.get("labelled"),  # limited-label runs (``--label_fraction 0.3``)
            )
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            losses.append(float(out["word_loss"].detach()))
            iteration += 1
            if iteration % eval_every == 0 or iteration == iterations:
                decoder.eval()
                row = {
                    "iteration": iteration,
                    "word_loss": float(np.mean(losses[-eval_every:])),
                    "f1_head": _label_f1(decoder, images, None, truth, parser),
                    "f1_given": _label_f1(decoder, images, truth, truth, parser) if decoder.label_conditioned else None,
                    "seconds": time.perf_counter() - start,
                }
                decoder.train()
                rows.append(row)
                print(json.dumps(row), flush=True)
            if iteration >= iterations:
                break
    return rows


def score_checkpoint(dataset_dir: str, checkpoint: str, num_eval: int, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The label F1 row (no training) of the report decoder saved in a training checkpoint (``report_decoder``)."""
    parser = variant_parser(dataset_dir, overrides)
    decoder = parser.get_parsed_content("report_decoder_def")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "report_decoder" not in state:
        raise ValueError(f"{checkpoint} holds no report_decoder (keys: {sorted(state)}); pass a training checkpoint")
    decoder.load_state_dict(state["report_decoder"])
    decoder.eval()
    images, truth = _eval_images(parser, num_eval)
    start = time.perf_counter()
    row = {
        "iteration": state["trainer"]["iteration"] if "trainer" in state else None,
        "word_loss": float("nan"),
        "f1_head": _label_f1(decoder, images, None, truth, parser),
        "f1_given": _label_f1(decoder, images, truth, truth, parser) if decoder.label_conditioned else None,
        "seconds": time.perf_counter() - start,
    }
    print(json.dumps(row), flush=True)
    return row


def benchmark(
    dataset_dir: str = str(BUNDLE_ROOT / "data" / "embedded"),
    variants: Sequence[str] = tuple(VARIANTS),
    iterations: int = 2500,
    eval_every: int = 500,
    num_eval: int = 96,
    lr: float = 3e-3,
    seed: int = 0,
    num_threads: int = 1,
    checkpoint: str | None = None,
    **overrides: Any,
) -> dict[str, list[dict[str, Any]]]:
    """Print and return, per variant, F's greedy-report label F1 on validation images over teacher-forcing steps.

    ``overrides``: config values for every variant (e.g. ``--batch_size 8``, ``--text_hidden 128``).
    ``checkpoint``: score the F of this training checkpoint (built as the demo preset with ``overrides``) instead;
    the row's iteration is the checkpoint's GAN iteration.
    """
    unknown = [name for name in ([variants] if isinstance(variants, str) else variants) if name not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    torch.set_num_threads(int(num_threads))
    names = [variants] if isinstance(variants, str) else list(variants)
    if checkpoint is not None:
        results = {"checkpoint": [score_checkpoint(dataset_dir, checkpoint, num_eval, overrides)]}
        print(f"\n{checkpoint}, {num_eval} validation images, label F1 of greedy reports")
    else:
        results = {
            name: run_variant(dataset_dir, {**VARIANTS[name], **overrides}, iterations, eval_every, num_eval, lr, seed)
            for name in names
        }
        print(
            f"\nteacher forcing alone, lr {lr}, seed {seed}, {num_eval} validation images, label F1 of greedy reports"
        )
    print("| variant | iteration | word loss | F1 (own head) | F1 (given labels) | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rows in results.items():
        for r in rows:
            given = "-" if r["f1_given"] is None else f"{r['f1_given']:.3f}"
            loss = "-" if np.isnan(r["word_loss"]) else f"{r['word_loss']:.3f}"
            print(f"| {name} | {r['iteration']} | {loss} | {r['f1_head']:.3f} | {given} | {r['seconds']:.0f} |")
    return results
