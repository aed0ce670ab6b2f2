"""Evaluate generated data against real data; one subcommand per evaluation.

Examples::

    python scripts/evaluate.py reports --references refs.jsonl --hypotheses hyps.jsonl --out eval/
    python scripts/evaluate.py reports --references refs.jsonl --hypotheses hyps.jsonl --out eval/ --meteor False
    python scripts/evaluate.py reports --references refs.jsonl --hypotheses hyps.jsonl --out eval/ --clinical True

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


#: The subcommands (fire dispatches on the first argument).
COMMANDS = {"reports": reports}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: bad input ends with a one-line error naming the file and the problem."""
    import fire

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        fire.Fire(COMMANDS, command=list(argv) if argv is not None else None, serialize=lambda _: None)
    except (DataError, RuntimeError) as err:  # bad input, or METEOR required without Java
        print(f"evaluate: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
