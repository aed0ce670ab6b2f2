"""Shared test fixtures. The repository root goes first on sys.path so ``import bundle`` is this bundle."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tests use tiny tensors: one intra-op thread avoids thread start-up and oversubscription on shared CPUs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-study embedded dataset (grammar reports, procedural lungs, 64 px), shared by the whole session."""
    from tests.tiny import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="session")
def trained(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of a tiny training run on ``dataset_dir`` (models/checkpoint_final.pt)."""
    from tests.tiny import train_workflow

    output_dir = tmp_path_factory.mktemp("trained")
    flow = train_workflow(dataset_dir, output_dir)
    flow.run()
    flow.finalize()
    return output_dir


@pytest.fixture
def restore_threads():
    """Put torch's thread count back after a test whose workflow sets its own (``num_threads``)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
