"""Radiology reports labelled by the rule labeler into a MIMIC-style label CSV (``scripts/label_reports.py``).

The input is a JSONL file (one ``{"id": ..., "report": ...}`` object per line), a folder of ``.txt`` reports searched
recursively (id = file stem, e.g. ``s50414267``) or one ``.txt`` report. The CSV has column ``id`` then the 14
CheXpert observations in the order of ``mimic-cxr-2.0.0-chexpert.csv``, with cells 1.0 / 0.0 / -1.0 or empty (not
mentioned), as MIMIC stores them.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from bundle.data.errors import DataError, SkipCounter
from bundle.data.labeler import ReportLabeler
from bundle.data.labels import CHEXPERT_CLASSES
from bundle.data.reports import (
    DEFAULT_SECTIONS,
    extract_sections,
    iter_jsonl_reports,
    read_report_file,
    select_sections,
)


def _sections(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Fire passes ``a,b`` as a tuple and ``"a, b"`` as a string; ``all`` (or None) means every section."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    names = [n.strip().lower() for n in names if n.strip()]
    if not names:
        raise DataError(None, f"--sections {value!r} names no section")
    return None if names == ["all"] else tuple(names)


def _report_texts(source: Path, sections: tuple[str, ...] | None, skip: SkipCounter) -> Iterator[tuple[str, str]]:
    """(id, chosen sections) for every report of a JSONL file, a folder of .txt reports or one .txt report."""
    wanted = sections if sections is not None else "all"
    if source.is_dir():
        paths = sorted(source.rglob("*.txt"))
        if not paths:
            raise DataError(source, "no .txt reports in folder")
        items = ((p.stem, lambda p=p: read_report_file(p, wanted)) for p in paths)
    elif source.suffix.lower() == ".txt":
        items = iter([(source.stem, lambda: read_report_file(source, wanted))])
    else:
        items = (
            (rid, lambda t=text, w=where: select_sections(extract_sections(t), wanted, source=w))
            for rid, text, where in iter_jsonl_reports(source)
        )
    for report_id, read in items:
        try:
            yield report_id, read()
        except DataError as err:
            skip.handle(err)


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def label_report_files(
    input: str,
    output: str,
    sections: str | Sequence[str] | None = ",".join(DEFAULT_SECTIONS),
    overwrite: bool = False,
    skip_bad: bool = False,
) -> dict:
    """Label every report under ``input`` and write ``output`` (CSV: id + the 14 CheXpert columns).

    Reports with an unreadable file or without the chosen sections raise :class:`DataError`, or are skipped
    and counted with ``--skip_bad``. An existing ``output`` is kept unless ``--overwrite``.
    """
    source, target = Path(input), Path(output)
    if not source.exists():
        raise DataError(source, "missing input: expected a .jsonl file or a folder of .txt reports")
    if target.exists() and not overwrite:
        raise DataError(target, "output file exists; pass --overwrite to replace it")
    wanted = _sections(sections)
    skip = SkipCounter(skip_bad=skip_bad)
    labeler = ReportLabeler()
    rows, seen, positives = [], set(), Counter()
    for report_id, text in _report_texts(source, wanted, skip):
        if report_id in seen:
            raise DataError(source, f"duplicate report id {report_id!r}")
        seen.add(report_id)
        record = labeler(text)
        positives.update(name for name, value in record.items() if value == 1.0)
        rows.append([report_id, *(_cell(record[name]) for name in CHEXPERT_CLASSES)])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *CHEXPERT_CLASSES])
        writer.writerows(rows)
    os.replace(partial, target)
    summary = {
        "output": str(target),
        "labelled": len(rows),
        "sections": list(wanted) if wanted else "all",
        "positive": {name: positives[name] for name in CHEXPERT_CLASSES if positives[name]},
        **skip.summary(),
    }
    print(json.dumps(summary, indent=1))
    return summary
