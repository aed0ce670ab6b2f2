"""Report output: a MIMIC-CXR style text file (``FINDINGS:`` and optionally ``IMPRESSION:``), which
:func:`bundle.data.sources.report_from_file` reads back."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from bundle.inference.formats.common import prepare_path

__all__ = ["write_report"]


def write_report(path: str | PathLike, findings: str, impression: str | None = None) -> Path:
    """Write a MIMIC-CXR style report file: ``FINDINGS: ...`` and, when given, ``IMPRESSION: ...``."""
    text = f"FINDINGS: {' '.join(str(findings).split())}\n"
    if impression is not None:
        text += f"\nIMPRESSION: {' '.join(str(impression).split())}\n"
    path = prepare_path(path)
    path.write_text(text, encoding="utf-8", newline="\n")
    return path
