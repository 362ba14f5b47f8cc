"""Shared fixtures. Tests run on CPU with fixed seeds and few threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTVIDEOS = REPO_ROOT.parent / "shared" / "testvideos"


@pytest.fixture(scope="session")
def testvideos() -> Path:
    """The reference videos in ../shared/testvideos (skips where a bare clone lacks them)."""
    if not (TESTVIDEOS / "README.md").is_file():
        pytest.skip(f"reference videos not found at {TESTVIDEOS} (they live in ../shared beside the checkout)")
    return TESTVIDEOS


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.manual_seed(0)
    yield
