"""Re-exports of the report grammar, which lives in :mod:`bundle.data.embedded.report_grammar` (kept for old
import paths)."""

from .embedded.report_grammar import compose_report, spec_labels

__all__ = ["compose_report", "spec_labels"]
