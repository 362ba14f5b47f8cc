"""`videovlm quickstart`: path relocation, override parsing, and a micro end-to-end run whose
second run reuses every step (one step per training stage, 6/3/3 videos)."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pytest

from videovlm.quickstart import MARKER, QuickstartError, add_arguments, parse_overrides, relocate, run


def test_relocate_moves_data_and_runs_paths_only():
    recipe = {
        "output_dir": "runs/videollama/tiny",
        "model": {"llm": "runs/backbones/llm/text/final", "hub": "lmsys/vicuna-7b-v1.5"},
        "stages": [{"data": {"train": [{"path": "data/synth/train/qa.json"}, {"path": "data/synthetic/x.csv"}]}}],
    }
    out = relocate(recipe, data_dir=Path("/q/data"), runs_dir=Path("/q/runs"))
    assert out["output_dir"] == "/q/runs/videollama/tiny"
    assert out["model"] == {"llm": "/q/runs/backbones/llm/text/final", "hub": "lmsys/vicuna-7b-v1.5"}
    assert [d["path"] for d in out["stages"][0]["data"]["train"]] == ["/q/data/train/qa.json", "data/synthetic/x.csv"]


def test_overrides_name_their_recipe():
    assert parse_overrides(["llm:stages.0.steps=5", "llm:seed=1"]) == {"llm": ["stages.0.steps=5", "seed=1"]}
    with pytest.raises(QuickstartError, match="RECIPE:key=value"):
        parse_overrides(["nope:stages.0.steps=5"])
    with pytest.raises(QuickstartError, match="RECIPE:key=value"):
        parse_overrides(["llm:stages.0.steps"])


def quickstart_args(output: Path, *extra: str) -> argparse.Namespace:
    from tests.recipes.conftest import RECIPES, stage_overrides
    from videovlm.quickstart import TRAIN_STEPS

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    # A step's overrides apply to each of its recipes: give every stage index any of them has.
    overrides = [
        f"{name}:{o}" for name, recipes in TRAIN_STEPS.items()
        for o in dict.fromkeys(o for recipe in recipes for o in stage_overrides(RECIPES / recipe, steps=1, batch=2))
    ]
    argv = ["--output", str(output), "--train-videos", "6", "--eval-videos", "3", "--workers", "1", *extra]
    return parser.parse_args(argv + [f"--override={o}" for o in overrides])


def test_micro_quickstart_runs_then_reuses_every_step(tmp_path, mini_data, capsys):
    output = tmp_path / "qs"
    # The data step is the generator of the fixture's set (same arguments): reuse it.
    shutil.copytree(mini_data, output / "data")
    (output / "data" / MARKER).write_text("{}\n")
    assert run(quickstart_args(output)) == 0
    first = capsys.readouterr().out
    for step in ("[1/6] data", "[2/6] vision", "[3/6] llm", "[4/6] videollama", "[5/6] answer", "[6/6] eval"):
        assert step in first
    # The backbones are the checkpoints shipped with the package, copied in place.
    assert first.count("shipped with the package") == 2 and "time: data 0 s, vision " in first and "; total " in first
    assert (output / "runs" / "backbones" / "conv_tower" / "labels" / "final" / "model.safetensors").is_file()
    assert "answer:" in first and "test accuracy per question type" in first and "direction" in first
    assert (output / "eval" / "test_accuracy.json").is_file()
    # the shuffled video-blind control: a row under the table, its rows in the report, its answers beside the real ones
    control = json.loads((output / "eval" / "test_accuracy.json").read_text())["control"]
    overall = control["pooled"]["overall"]
    assert control["name"] == "shuffled" and overall["drop"] == overall["real"] - overall["control"]
    assert f"  shuffled   {100 * overall['control']:7.1f}%" in first and "drop " in first
    assert (output / "eval" / "test_predictions.control-shuffled.jsonl").is_file()
    # Video-LLaMA's frozen tower ran once per frame (train + val) before training read the cache.
    assert "train features: " in first and "val features: " in first
    assert (output / "runs" / "videollama" / "tiny" / "feature_cache" / "index.json").is_file()
    assert "features: cached" in (output / "recipes" / "videollama.yaml").read_text()
    started = time.monotonic()
    assert run(quickstart_args(output)) == 0
    second = capsys.readouterr().out
    assert second.count("done before, reusing") == 5  # data, vision, llm, videollama, eval
    assert time.monotonic() - started < 30
    # An evaluation of another model (the quickstart's recipe changed since) is not reused.
    report = output / "eval" / "test_accuracy.json"
    report.write_text(json.dumps({**json.loads(report.read_text()), "model": "some/other/model"}))
    assert run(quickstart_args(output)) == 0
    third = capsys.readouterr().out
    assert third.count("done before, reusing") == 4  # data, vision, llm, videollama
    assert json.loads(report.read_text())["model"] != "some/other/model"
    # --rebuild-backbones trains both backbone recipes instead; everything after them is stale
    # (the model was trained on the shipped backbones) and runs again.
    assert run(quickstart_args(output, "--rebuild-backbones")) == 0
    fourth = capsys.readouterr().out
    assert fourth.count("done before, reusing") == 1  # data only
    assert "shipped with the package" not in fourth and "recipes/backbones/conv_tower.yaml" in fourth
    assert json.loads((output / "runs" / "backbones" / "llm_copy" / MARKER).read_text())["source"] == "recipe"
    assert (output / "runs" / "backbones" / "llm" / "chat" / "final" / "model.safetensors").is_file()  # llm.yaml, then llm_copy.yaml on it
