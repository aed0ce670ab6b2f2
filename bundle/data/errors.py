"""Errors and skip accounting for bad input.

Every reader raises :class:`DataError` naming the file and the problem. When the user asked to skip bad
input, readers record the problem in a :class:`SkipCounter` instead and carry on; the summary then says
how many items were skipped and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from os import PathLike


class DataError(ValueError):
    """Bad input: ``path`` is the offending file (or record id), ``problem`` says what is wrong with it."""

    def __init__(self, path: str | PathLike | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def reason_of(problem: str) -> str:
    """The kind of a problem, for counting: its text before the first ``:`` or `` (`` ("corrupt image",
    "missing report section", "unknown label value")."""
    return problem.split(":", 1)[0].split(" (", 1)[0].strip()


@dataclass
class SkipCounter:
    """Collects skipped items when ``skip_bad`` is set; raises at once otherwise."""

    skip_bad: bool = False
    reasons: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def handle(self, error: DataError) -> None:
        """Re-raise ``error`` unless skipping; when skipping, count it under its problem."""
        if not self.skip_bad:
            raise error
        self.reasons[reason_of(error.problem)] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error))

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> dict:
        return {"skipped": self.total, "reasons": dict(self.reasons), "examples": list(self.examples)}
