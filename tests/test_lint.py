"""The linter configuration in pyproject.toml holds for the whole tree (ruff is a test extra)."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_passes():
    ruff_main = pytest.importorskip("ruff.__main__", reason="ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [ruff_main.find_ruff_bin(), "check", "--no-cache", "videovlm", "tests", "tools", "benchmarks"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
