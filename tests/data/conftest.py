"""A small synthetic data set generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from videovlm.data.synthetic import generate

SMALL = {"train": 12, "val": 4, "test": 4}


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """12/4/4 videos at the default size, generated in this process."""
    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, **SMALL, seed=0, workers=1)
    return out
