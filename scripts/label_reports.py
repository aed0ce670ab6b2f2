"""Label radiology reports with the bundle's CheXpert-style rule labeler; write a MIMIC-style label CSV.

Examples::

    python scripts/label_reports.py --input reports.jsonl --output labels.csv
    python scripts/label_reports.py --input /data/mimic-cxr/2.0.0/files --output labels.csv --sections impression
    python scripts/label_reports.py --input reports.jsonl --output labels.csv --sections all --overwrite
    python scripts/label_reports.py --help                             # every flag

``--input`` is a JSONL file (one ``{"id": ..., "report": ...}`` object per line) or a folder of ``.txt``
reports, searched recursively (id = file stem, e.g. ``s50414267``). ``--sections`` picks the report sections
to label (default ``findings,impression``; ``all`` labels every section, INDICATION included). The CSV has
column ``id`` then the 14 CheXpert observations in the order of ``mimic-cxr-2.0.0-chexpert.csv``, with cells
1.0 / 0.0 / -1.0 or empty (not mentioned), as MIMIC stores them (:mod:`bundle.data.label_csv`). A flag it does
not know stops the command before any work.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

from bundle.cli import run_fire  # noqa: E402
from bundle.data.errors import DataError  # noqa: E402
from bundle.data.label_csv import label_report_files  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command line: flags checked before any work; bad input ends with a one-line error naming the file and the
    problem (exit status 2)."""
    return run_fire(label_report_files, argv, name="label_reports", user_errors=(DataError,))


if __name__ == "__main__":
    sys.exit(main())
