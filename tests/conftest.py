"""Shared test fixtures. The repository root goes first on sys.path so ``import bundle`` is this bundle."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-study embedded dataset (grammar reports, procedural lungs, 64 px), shared by the whole session."""
    from tests.tiny import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("embedded"))
