"""Evaluate generated data against real data; one subcommand per evaluation.

Examples::

    python scripts/evaluate.py run --real data/embedded --generated output/generated --out output/evaluation
    python scripts/evaluate.py run --real data/embedded --generated output/generated --out output/evaluation \
        --classifier output/classifier/model.pt --max_items 2000
    python scripts/evaluate.py reports --references refs.jsonl --hypotheses hyps.jsonl --out eval/
    python scripts/evaluate.py reports --references refs.jsonl --hypotheses hyps.jsonl --out eval/ --meteor False
    python scripts/evaluate.py reports --references refs.jsonl --hypotheses hyps.jsonl --out eval/ --clinical True

``run`` is the full evaluation of a generated paired dataset (:func:`bundle.evaluation.suite.evaluate`): FID,
MS-SSIM diversity, label agreement, report labels, memorisation audit; it writes ``<out>/metrics.json``,
``<out>/report.md`` with figures and TensorBoard scalars, and prints the verdict. Without ``--classifier`` it first
trains the evaluation classifier on the real training split (``configs/train_classifier.json``). The same run as a
MONAI bundle workflow: ``python -m monai.bundle run --config_file configs/evaluate.json --real_dir ...``.

``reports`` scores generated reports (``--hypotheses``) against the real reports of the same studies
(``--references``): both JSONL files hold one ``{"id": ..., "report": ...}`` object per line and the same ids.
It writes ``<out>/metrics.json`` with BLEU-1..4, CIDEr, ROUGE-L and METEOR (pycocoevalcap; METEOR needs Java and
is left out with a warning without it; ``--meteor False`` skips it) and prints them. ``--clinical True`` also
writes ``<out>/clinical_efficacy.json``: CheXpert-label precision / recall / F1 of the generated reports
(R2Gen's CE convention, the project's labeler).

Subcommands live in :data:`COMMANDS`; a new evaluation is one more function there.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.data.errors import DataError  # noqa: E402
from bundle.evaluation.clinical import clinical_efficacy  # noqa: E402
from bundle.evaluation.suite import evaluate  # noqa: E402
from bundle.evaluation.text_metrics import read_reports_jsonl, report_metrics  # noqa: E402


def write_json(data: Any, path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON, atomically (a partial file never takes the final name)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, target)
    return target


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
    width = max(len(k) for k in metrics)
    print(f"{len(refs)} reports -> {path}")
    for key, value in metrics.items():
        print(f"  {key:<{width}}  {value:.4f}")
    if clinical:
        ce = clinical_efficacy(refs, hyps)
        ce_path = write_json(ce, Path(out) / "clinical_efficacy.json")
        print(f"clinical efficacy -> {ce_path}")
        for key in ("precision_micro", "recall_micro", "f1_micro", "precision_macro", "recall_macro", "f1_macro"):
            print(f"  {key:<{width + 8}}  {ce[key]:.4f}")
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
    **overrides: Any,
) -> dict[str, Any]:
    """The full evaluation of a generated dataset against real data; print the verdict and where the report is.

    Args:
        real: real dataset folder (datalist.json with training / validation / test) or its datalist file.
        generated: generated folder (datalist.json from the paired writer) or its datalist file.
        out: output folder (metrics.json, memorisation.json, report.md, figures/, tensorboard/).
        classifier: classifier checkpoint; omitted, one is trained on the real training split first.
        classifier_config: classifier config files, e.g. "['configs/train.json','configs/train_classifier.json',
            'my_overrides.json']".
        image_size / max_items / xrv / ms_ssim_per_set / seed / device / skip_bad / figures: see ``suite.evaluate``.
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
        **overrides,
    )
    print(metrics["verdict"])
    print(f"report -> {Path(out) / 'report.md'}")
    return metrics


#: The subcommands (fire dispatches on the first argument).
COMMANDS = {"reports": reports, "run": run}


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
