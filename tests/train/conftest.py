"""Shared fixtures of the training tests: a small real video set and a two-stage recipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.train.tiny import make_video_set

ALLOW = ["--allow-package", "tests.train.tiny"]


@pytest.fixture(scope="session")
def video_set(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    # 16 training clips, the last one corrupt (1/16 skipped per epoch), 4 validation clips.
    return {
        "train": make_video_set(root / "train", count=16, corrupt=1),
        "val": make_video_set(root / "val", count=4, seed=1),
    }


def recipe_dict(video_set: dict[str, Path], output_dir: Path) -> dict:
    dataset = "tests.train.tiny.ColourVideoDataset"
    return {
        "output_dir": str(output_dir),
        "model": {"_component_": "tests.train.tiny.TinyVideoClassifier", "hidden": 16, "dropout": 0.1},
        "checkpoint_every": 2,
        "keep_last": 2,
        "max_skip_fraction": 0.2,
        "deepspeed": {"zero_stage": 0},
        "stages": [
            {
                "name": "first",
                "steps": 6,
                "lr": 0.01,
                "warmup_steps": 2,
                "micro_batch_size": 2,
                "gradient_accumulation_steps": 2,
                "trainable": ["encoder", "head"],
                "data": {
                    "train": [{"_component_": dataset, "manifest": str(video_set["train"])}],
                    "val": [{"_component_": dataset, "manifest": str(video_set["val"])}],
                },
            },
            {
                "name": "second",
                "steps": 4,
                "forward_kwargs": {"loss_offset": 100.0},  # reaches every forward of this stage
                "lr": 0.01,
                "micro_batch_size": 2,
                "gradient_accumulation_steps": 2,
                "trainable": ["temporal"],
                "data": {"train": [{"_component_": dataset, "manifest": str(video_set["train"])}]},
            },
        ],
    }


@pytest.fixture(scope="session")
def recipe(video_set, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(
        "# videovlm train tiny.yaml --allow-package tests.train.tiny\n"
        + yaml.safe_dump(recipe_dict(video_set, tmp_path_factory.getbasetemp() / "unused"), sort_keys=False)
    )
    return path


def train_env(tmp_root: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    env.update({
        "PYTHONPATH": str(REPO_ROOT),
        "TORCH_EXTENSIONS_DIR": str(tmp_root / "torch_extensions"),  # nothing should compile; if it does, not into ~/.cache
        "OMP_NUM_THREADS": "1",
        **extra,
    })
    return env


KILL_AFTER_STEP = Path(__file__).with_name("kill_after_step.py")


def killing_launcher(steps: int) -> list[str]:
    """A ``run_train`` launcher whose run is SIGKILLed once ``steps`` optimizer steps are done
    (no cleanup, like an OOM kill or a pre-empted node; see kill_after_step.py)."""
    return [sys.executable, str(KILL_AFTER_STEP), str(steps)]


def run_train(recipe: Path, *args: str, env: dict[str, str], launcher: list[str] | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    command = [*(launcher or [sys.executable, "-m"]), "videovlm", "train", str(recipe), *args, *ALLOW]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
