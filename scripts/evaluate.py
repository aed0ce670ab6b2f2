"""Evaluate generated data and the trained report decoder against real data; one subcommand per evaluation.

Examples::

    python scripts/evaluate.py run --real data/embedded --generated output/generated --out output/evaluation
    python scripts/evaluate.py run --real data/embedded --generated output/generated --out output/evaluation \
        --classifier output/classifier/model.pt --max_items 2000 \
        --independent_classifier_checkpoint output/evaluation/classifier_independent/model.pt
    python scripts/evaluate.py run --real data/embedded --generated output/demo/generated --out output/evaluation \
        --checkpoint output/demo/models/checkpoint_final.pt --config_file "['configs/train.json','configs/demo.json']"
    python scripts/evaluate.py decode --checkpoint output/models/checkpoint_final.pt --real data/embedded \
        --out eval/decoder
    python scripts/evaluate.py decode --checkpoint output/demo/models/checkpoint_final.pt --real data/embedded \
        --out eval/decoder --config_file "['configs/train.json','configs/demo.json']" --max_items 500
    python scripts/evaluate.py decode --checkpoint output/demo/models/checkpoint_final.pt \
        --images output/demo/generated/manifest.csv --out eval/generated_reports \
        --config_file "['configs/train.json','configs/demo.json']"
    python scripts/evaluate.py reports --references refs.jsonl --hypotheses hyps.jsonl --out eval/
    python scripts/evaluate.py reports --references refs.jsonl --hypotheses hyps.jsonl --out eval/ --meteor False
    python scripts/evaluate.py reports --references refs.jsonl --hypotheses hyps.jsonl --out eval/ --clinical True

``run`` is the full evaluation of a generated paired dataset (:func:`bundle.evaluation.suite.evaluate`): FID,
MS-SSIM diversity, label agreement, report labels, memorisation audit; it writes ``<out>/metrics.json``,
``<out>/report.md`` with figures and TensorBoard scalars, and prints the verdict. Without ``--classifier`` it first
trains the evaluation classifier on the real training split (``configs/train_classifier.json``). With
``--checkpoint`` (an EMIXER checkpoint) it also runs ``decode`` on the real test split into ``<out>/decoder/`` and
puts the scores under ``reports -> decoder`` in metrics.json and report.md. It also trains (or, with
``--independent_classifier_checkpoint``, loads) the independent ResNet-18 classifier for a second label agreement
(``--independent_classifier False`` skips it), scores the report baselines (``--baseline_decoder_checkpoint``: also F
trained by teacher forcing alone) and prints the flat summary. The same run as a MONAI bundle
workflow: ``python -m monai.bundle run --config_file configs/evaluate.json --real_dir ...``.

``decode`` evaluates the report decoder F of a trained EMIXER (:func:`bundle.evaluation.decode.evaluate_decoder`):
F is rebuilt from the training config (``--config_file``, default ``configs/train.json``; pass the files and
overrides the model was trained with, e.g. ``--image_size 64``), its weights come from ``--checkpoint`` (a training
``checkpoint_*.pt`` or a released ``models/model.pt``), and it greedy-decodes one report per real test image,
preprocessed as in training. It writes ``<out>/hypotheses.jsonl`` and ``<out>/references.jsonl`` (the input of
``reports``) and ``<out>/metrics.json``: BLEU-1..4, CIDEr, ROUGE-L, METEOR, clinical efficacy (generated vs real
reports) and label F1 (generated reports vs the images' labels), and prints them. ``decode --images`` instead
decodes any images, with no references and no scores (:func:`bundle.evaluation.decode.decode_images`): a folder of
PNG / JPEG / DICOM / NIfTI files (ids: the paths relative to the folder without the file ending), a
``manifest.csv`` of generated data (ids: its ``id`` column) or a datalist .json (all splits, or ``--split``). F reads
each image alone and ``<out>/hypotheses.jsonl`` gets one ``{"id": ..., "report": ...}`` line per image.

``reports`` scores generated reports (``--hypotheses``) against the real reports of the same studies
(``--references``): both JSONL files hold one ``{"id": ..., "report": ...}`` object per line and the same ids.
It writes ``<out>/metrics.json`` with BLEU-1..4, CIDEr, ROUGE-L and METEOR (pycocoevalcap; METEOR needs Java and
is left out with a warning without it; ``--meteor False`` skips it) and prints them. ``--clinical True`` also
writes ``<out>/clinical_efficacy.json``: CheXpert-label precision / recall / F1 of the generated reports
(R2Gen's CE convention, the project's labeler).

Subcommands live in :data:`COMMANDS`; a new evaluation is one more function there.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.data.errors import DataError  # noqa: E402
from bundle.evaluation.clinical import clinical_efficacy  # noqa: E402
from bundle.evaluation.common import write_json  # noqa: E402
from bundle.evaluation.decode import HYPOTHESES, decode_images, evaluate_decoder  # noqa: E402
from bundle.evaluation.suite import evaluate  # noqa: E402
from bundle.evaluation.text_metrics import read_reports_jsonl, report_metrics  # noqa: E402

#: Clinical-efficacy summary keys, in print order.
CE_KEYS = ("precision_micro", "recall_micro", "f1_micro", "precision_macro", "recall_macro", "f1_macro")


def print_scores(scores: Mapping[str, Any], indent: str = "  ") -> None:
    """Print the numeric entries of ``scores`` one a line, names aligned (missing values as n/a)."""
    width = max(len(str(k)) for k in scores)
    for key, value in scores.items():
        text = f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"
        print(f"{indent}{key:<{width}}  {text}")


def reports(
    references: str, hypotheses: str, out: str, meteor: bool | str = "auto", clinical: bool = False
) -> dict[str, float]:
    """Score generated reports against reference reports; write ``<out>/metrics.json`` and print it.

    Args:
        references: JSONL of the real reports, ``{"id", "report"}`` per line.
        hypotheses: JSONL of the generated reports, same ids.
        out: output folder.
        meteor: ``auto`` (when Java is available), ``True`` (required) or ``False`` (skipped).
        clinical: also write ``<out>/clinical_efficacy.json`` (CheXpert-label precision / recall / F1).
    """
    refs = read_reports_jsonl(references)
    hyps = read_reports_jsonl(hypotheses)
    metrics = report_metrics(refs, hyps, meteor=meteor)
    path = write_json(metrics, Path(out) / "metrics.json")
    print(f"{len(refs)} reports -> {path}")
    print_scores(metrics)
    if clinical:
        ce = clinical_efficacy(refs, hyps)
        ce_path = write_json(ce, Path(out) / "clinical_efficacy.json")
        print(f"clinical efficacy -> {ce_path}")
        print_scores({key: ce[key] for key in CE_KEYS})
    return metrics


def print_decoder(metrics: Mapping[str, Any]) -> None:
    """Print a report-decoder evaluation: text metrics, clinical efficacy, label F1."""
    print_scores({key: value for key, value in metrics.items() if isinstance(value, (int, float))})
    print("clinical efficacy (generated vs real reports):")
    print_scores({key: metrics["clinical_efficacy"][key] for key in CE_KEYS})
    print("label F1 (generated reports vs the images' labels):")
    print_scores({key: metrics["label_f1"][key] for key in ("mean_f1", "micro_f1")})


def print_summary(metrics: Mapping[str, Any]) -> None:
    """Print ``metrics["summary"]`` one key a line (a missing value with its reason) and each baseline's values."""
    summary, skipped = metrics["summary"], metrics["summary_skipped"]
    width = max(len(key) for key in summary)
    print("summary:")
    for key, value in summary.items():
        text = value if isinstance(value, (bool, str)) else f"{value:.4f}" if value is not None else "n/a"
        print(f"  {key:<{width}}  {text}" + (f"  ({skipped[key]})" if key in skipped else ""))
    for name, block in metrics["baselines"].items():
        print(f"baseline {name}:")
        print_scores({key: value for key, value in block.items() if value is None or isinstance(value, float)})


def decode(
    checkpoint: str,
    real: str | None = None,
    out: str | None = None,
    images: str | None = None,
    config_file: str | Sequence[str] | None = None,
    split: str | None = None,
    max_items: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
    meteor: bool | str = "auto",
    skip_bad: bool = False,
    seed: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """Decode the real test images with the trained report decoder F and score its reports; print the metrics. With
    ``--images`` instead of ``--real``: decode those images and write their reports only.

    Args:
        checkpoint: EMIXER checkpoint, a training ``checkpoint_*.pt`` or a released ``models/model.pt``.
        real: real dataset folder (datalist.json, tokenizer.json) or its datalist file.
        out: output folder (hypotheses.jsonl, and with ``--real`` references.jsonl, metrics.json); required.
        images: a folder of images, a generated ``manifest.csv`` or a datalist .json (``decode.decode_images``).
        config_file: the config files F was trained with, e.g. "['configs/train.json','configs/demo.json']".
        split: the datalist split (with ``--real``: ``test`` by default; with ``--images``: all splits by default).
        max_items / batch_size / device / meteor / skip_bad / seed: see ``decode.evaluate_decoder``.
        overrides: training config values the model was trained with, e.g. ``--image_size 64``.
    """
    if (real is None) == (images is None):
        raise ValueError("decode needs one of --real (score the real test split) or --images (reports only)")
    if out is None:
        raise ValueError("decode needs --out, the output folder")
    common = {"max_items": max_items, "batch_size": batch_size, "device": device, "skip_bad": skip_bad, "seed": seed}
    if images is not None:
        decoded = decode_images(images, checkpoint, config_file, out, split, **common, **overrides)
        print(f"{len(decoded)} reports decoded from the images of {decoded.source} -> {Path(out) / HYPOTHESES}")
        if decoded.skipped.get("skipped"):
            print(f"skipped {decoded.skipped['skipped']}: {decoded.skipped['reasons']}")
        return {"num_reports": len(decoded), "source": decoded.source, "skipped": decoded.skipped}
    split = split or "test"
    metrics = evaluate_decoder(
        checkpoint, real, out, config_file=config_file, split=split, meteor=meteor, **common, **overrides
    )
    print(f"{metrics['settings']['num_reports']} {split} reports decoded -> {Path(out) / 'hypotheses.jsonl'}")
    print_decoder(metrics)
    print(f"metrics -> {Path(out) / 'metrics.json'}")
    return metrics


def run(
    real: str,
    generated: str,
    out: str,
    classifier: str | None = None,
    classifier_config: str | Sequence[str] | None = None,
    image_size: int | None = None,
    max_items: int | None = None,
    xrv: bool | str = "auto",
    ms_ssim_per_set: int = 4,
    seed: int = 0,
    device: str | None = None,
    skip_bad: bool = False,
    figures: bool = True,
    checkpoint: str | None = None,
    config_file: str | Sequence[str] | None = None,
    decoder_overrides: Mapping[str, Any] | None = None,
    independent_classifier: bool = True,
    independent_classifier_checkpoint: str | None = None,
    baseline_decoder_checkpoint: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The full evaluation of a generated dataset against real data; print the verdict, the summary and where the
    report is.

    Args:
        real: real dataset folder (datalist.json with training / validation / test) or its datalist file.
        generated: generated folder (datalist.json from the paired writer) or its datalist file.
        out: output folder (metrics.json, memorisation.json, report.md, figures/, tensorboard/).
        classifier: classifier checkpoint; omitted, one is trained on the real training split first.
        classifier_config: classifier config files, e.g. "['configs/train.json','configs/train_classifier.json',
            'my_overrides.json']".
        image_size / max_items / xrv / ms_ssim_per_set / seed / device / skip_bad / figures: see ``suite.evaluate``.
        checkpoint: EMIXER checkpoint whose report decoder also decodes the real test images (as ``decode``);
            the scores land in metrics.json under ``reports -> decoder`` and in report.md. Omitted: not run.
        config_file: the config files that checkpoint was trained with (default configs/train.json).
        decoder_overrides: training config values of that checkpoint, e.g. "{'image_size': 64}".
        independent_classifier: label agreement with the independent ResNet-18 classifier too (default True).
        independent_classifier_checkpoint: its weights; omitted, it is trained on the real training split first.
        baseline_decoder_checkpoint: an EMIXER checkpoint whose F was trained by teacher forcing alone (same configs
            as ``--checkpoint``): its reports on the generated images are the ``decoder_alone`` baseline.
        overrides: classifier config values, e.g. ``--max_epochs 5 --num_workers 0``.
    """
    metrics = evaluate(
        real,
        generated,
        out,
        classifier_checkpoint=classifier,
        classifier_config=classifier_config,
        image_size=image_size,
        max_items=max_items,
        xrv=xrv,
        ms_ssim_per_set=ms_ssim_per_set,
        seed=seed,
        device=device,
        skip_bad=skip_bad,
        figures=figures,
        decoder_checkpoint=checkpoint,
        decoder_config=config_file,
        decoder_overrides=decoder_overrides,
        independent_classifier=independent_classifier,
        independent_classifier_checkpoint=independent_classifier_checkpoint,
        baseline_decoder_checkpoint=baseline_decoder_checkpoint,
        **overrides,
    )
    print(metrics["verdict"])
    if checkpoint is not None:
        print("report decoder on the real test images:")
        print_decoder(metrics["reports"]["decoder"])
    print_summary(metrics)
    print(f"report -> {Path(out) / 'report.md'}")
    return metrics


#: The subcommands (fire dispatches on the first argument).
COMMANDS = {"decode": decode, "reports": reports, "run": run}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: bad input ends with a one-line error naming the file and the problem."""
    import fire

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(COMMANDS, command=list(argv) if argv is not None else None, serialize=lambda _: None)
    except (DataError, FileNotFoundError, RuntimeError) as err:  # bad input, missing files, METEOR without Java
        print(f"evaluate: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
