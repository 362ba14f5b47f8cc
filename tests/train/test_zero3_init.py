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


def test_zero3_guards_the_feature_cache_and_the_precision():
    """In this process (a world of one, real zero.Init): a partitioned tower cannot fill the
    feature cache, nor match it in bf16; an LLM asking for another dtype than ZeRO-3 built is
    named; the transformers integration is switched off again afterwards, an outer one kept."""
    import dataclasses
    from types import SimpleNamespace

    import pytest
    from transformers.integrations import HfDeepSpeedConfig, is_deepspeed_zero3_enabled

    from tests.train.zero3_build import build
    from videovlm.models.partitioned import has_partitioned
    from videovlm.train.distributed import init_distributed
    from videovlm.train.feature_cache import FeatureCacheError
    from videovlm.train.feature_cache_data import check_partitioned_front
    from videovlm.train.zero3 import precision_warning, transformers_zero3

    init_distributed()
    ds_config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "train_batch_size": 1, "zero_optimization": {"stage": 3}}
    with transformers_zero3(ds_config):
        assert is_deepspeed_zero3_enabled()
        model = build(None)
    assert not is_deepspeed_zero3_enabled()
    assert has_partitioned(model.vision) and has_partitioned(model.llm) and not has_partitioned(model.projector)
    stage = SimpleNamespace(name="readout", trainable=["projector"])

    def config(precision: str, on_miss: str):
        return SimpleNamespace(deepspeed=SimpleNamespace(precision=precision), feature_cache=SimpleNamespace(on_miss=on_miss))

    with pytest.raises(FeatureCacheError, match="set feature_cache.on_miss=error"):
        check_partitioned_front(model, stage=stage, config=config("fp32", "compute"))
    with pytest.raises(FeatureCacheError, match="needs deepspeed.precision=fp32"):
        check_partitioned_front(model, stage=stage, config=config("bf16", "error"))
    check_partitioned_front(model, stage=stage, config=config("fp32", "error"))  # a filled cache works

    assert precision_warning(model, ds_config) is None  # the tiny LLM asks for no dtype
    model.config = dataclasses.replace(model.config, llm=dataclasses.replace(model.config.llm, dtype="bfloat16"))
    warning = precision_warning(model, ds_config)
    assert warning is not None and "asks for bfloat16" in warning and "torch.float32" in warning and "deepspeed.precision=fp32" in warning

    outer = HfDeepSpeedConfig({**ds_config, "zero_optimization": {"stage": 2}})
    with transformers_zero3(ds_config):
        assert is_deepspeed_zero3_enabled()
    from transformers.integrations.deepspeed import deepspeed_config

    assert deepspeed_config()["zero_optimization"]["stage"] == 2  # the caller's config is back
    del outer
