"""ZeRO-3 partitioned construction: a tiny Video-LLaMA whose backbones (a conv tower and a
Llama) are loaded from folders, built on 2 processes under ZeRO-3, holds half of their weights
per rank and computes what one process computes; so does a family checkpoint loaded with
``from_pretrained`` (a later stage). ``tests/train/zero3_build.py`` does the building."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.train.conftest import train_env
from tests.train.test_engine import _free_port

SCRIPT = Path(__file__).with_name("zero3_build.py")


def run(out: Path, *args: str, env: dict, processes: int = 1) -> dict:
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(_free_port())]
    done = subprocess.run([*launcher, str(SCRIPT), str(out), *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def assert_same_model(got: Path, expected: Path) -> None:
    a, b = load_file(str(got / "state.safetensors")), load_file(str(expected / "state.safetensors"))
    assert sorted(a) == sorted(b)
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, different[:5]


def test_zero3_builds_partitioned_and_matches_one_process(tmp_path):
    env = train_env(tmp_path)
    family = tmp_path / "family"
    single = run(tmp_path / "single", "--zero", "0", "--save-family", str(family), env=env)
    # The recipe builder: conv tower and Llama from_pretrained on their folders, inside zero.Init.
    built = run(tmp_path / "zero3", "--zero", "3", env=env, processes=2)
    # A saved family model: built partitioned, its file read into each module gathered in turn.
    loaded = run(tmp_path / "zero3_family", "--zero", "3", "--family", str(family), env=env, processes=2)
    for result, out in ((built, tmp_path / "zero3"), (loaded, tmp_path / "zero3_family")):
        assert result["world_size"] == 2
        assert result["loss"] == single["loss"]
        assert_same_model(out, tmp_path / "single")
        # Each rank held about half of the weights after building (the family's own small
        # parts are whole until deepspeed.initialize): 14 MiB in all, ~8 per rank.
        assert all(held < 0.65 * result["full_bytes"] for held in result["held_bytes_per_rank"]), result
    assert single["held_bytes_per_rank"] == [single["full_bytes"]]
