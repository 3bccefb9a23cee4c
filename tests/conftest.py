"""Shared fixtures. Tests needing ../shared skip with a clear reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FSR_BENCH_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "README.md").is_file():
        pytest.skip(
            f"needs the shared data folder at {SHARED} (present on developer machines and in CI; "
            "set FSR_BENCH_SHARED to point elsewhere)"
        )
    return SHARED


@pytest.fixture(scope="session")
def faces256(shared_dir) -> Path:
    return shared_dir / "data" / "faces256"


@pytest.fixture(scope="session")
def lfw_dir(shared_dir) -> Path:
    return shared_dir / "data" / "lfw"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Single-threaded torch for a module: tiny models and MTCNN's thousands of small ops gain
    nothing from threads, and on a busy machine OpenMP spin-waiting makes 2 threads many times
    slower than 1. Restored afterwards. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
