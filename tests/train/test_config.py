"""Config validation, overrides, instantiate, DeepSpeed JSON, sampler/collate, schedule, dry-run."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from tests.train.conftest import ALLOW, recipe_dict
from videovlm.cli import main
from videovlm.train.config import ConfigError, apply_overrides, load_config, validate
from videovlm.train.data import PadCollator, SkippedItem, StepBatchSampler, epoch_order
from videovlm.train.deepspeed_config import build_deepspeed_config
from videovlm.train.engine import warmup_cosine
from videovlm.train.instantiate import DEFAULT_ALLOWED_PACKAGES, ComponentError, instantiate

TEST_PACKAGES = (*DEFAULT_ALLOWED_PACKAGES, "tests.train.tiny")


def problems_of(data: dict, *overrides: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(apply_overrides(data, list(overrides)), allowed_packages=TEST_PACKAGES)
    return info.value.problems


def test_valid_recipe_and_overrides(video_set, tmp_path):
    data = recipe_dict(video_set, tmp_path / "out")
    config = validate(apply_overrides(data, ["stages.1.lr=0.5", "deepspeed.zero_stage=3", "seed=7", "model.hidden=8"]), allowed_packages=TEST_PACKAGES)
    assert config.stages[1].lr == 0.5 and config.deepspeed.zero_stage == 3 and config.seed == 7
    assert config.model["hidden"] == 8
    assert config.stages[0].trainable == ["encoder", "head"]


def test_exponent_floats_without_a_dot_are_numbers(video_set, tmp_path):
    """`lr: 2e-3` (in a file or an override) is a float, as in YAML 1.2 and Python; PyYAML's
    YAML 1.1 rules alone would pass the string '2e-3' on and fail validation."""
    import yaml

    from videovlm.train.config import load_yaml

    config = validate(apply_overrides(recipe_dict(video_set, tmp_path / "out"), ["stages.1.lr=2e-3", "stages.0.lr=+1E+1"]), allowed_packages=TEST_PACKAGES)
    assert config.stages[1].lr == 0.002 and config.stages[0].lr == 10.0
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(video_set, tmp_path / "out")).replace("lr: ", "lr: 5e-4 #", 1))
    assert load_yaml(recipe)["stages"][0]["lr"] == 0.0005
    assert apply_overrides({"name": "x"}, ["name=e5", "tag=1e"]) == {"name": "e5", "tag": "1e"}  # not numbers: still strings


def test_errors_name_their_key_path(video_set, tmp_path):
    data = recipe_dict(video_set, tmp_path / "out")
    problems = problems_of(
        data,
        "stages.0.stepz=3",
        "stages.1.steps=ten",
        "stages.0.data.train.0.manifest=/nonexistent/manifest.json",
        "model.hiddn=3",
        "deepspeed.zero.stage=2",
    )
    text = "\n".join(problems)
    assert "stages[0].stepz: unknown key" in text
    assert "stages[1].steps: expected an integer, got str 'ten'" in text
    assert "stages[0].data.train[0].manifest: file not found: /nonexistent/manifest.json" in text
    assert "model.hiddn: unknown argument of tests.train.tiny.TinyVideoClassifier" in text
    assert any(p.startswith("deepspeed.zero: unknown key (allowed: zero_stage,") for p in problems)
    assert problems_of(recipe_dict(video_set, tmp_path / "out"), "stages.1.forward_kwargs={'not a name': 1}") == [
        "stages[1].forward_kwargs: keys must be keyword names, got 'not a name'"
    ]
    # value ranges are checked once the types are right
    ranges = problems_of(recipe_dict(video_set, tmp_path / "out"), "deepspeed.zero_stage=4", "stages.1.warmup_steps=9", "keep_last=0")
    assert ranges == [
        "deepspeed.zero_stage: must be 0, 1, 2 or 3, got 4",
        "keep_last: must be >= 1, got 0",
        "stages[1].warmup_steps: must be in [0, steps=4], got 9",
    ]


def test_mistyped_structure_and_values_are_problems_not_tracebacks(video_set, tmp_path):
    """`stages: abc`, a dataset `manifest: 12`, `lr: .nan`, `hidden: ten` are listed by key path."""
    assert problems_of(recipe_dict(video_set, tmp_path / "out"), "stages=abc") == ["stages: expected a list, got str 'abc'"]
    assert problems_of(recipe_dict(video_set, tmp_path / "out"), "stages.0.data=3")[0].startswith("stages[0].data: expected a mapping")
    problems = problems_of(
        recipe_dict(video_set, tmp_path / "out"),
        "stages.0.data.train.0.manifest=12",
        "stages.0.lr=.nan",
        "stages.1.min_lr_ratio=.inf",
        "model.hidden=ten",
    )
    text = "\n".join(problems)
    assert "stages[0].data.train[0].manifest: expected a path string, got int 12" in text
    assert "stages[0].lr: expected a finite number, got nan" in text
    assert "stages[1].min_lr_ratio: expected a finite number, got inf" in text
    assert "model.hidden: expected an integer, got str 'ten'" in text


def test_output_dir_that_is_a_file_is_caught_before_building(video_set, tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    assert problems_of(recipe_dict(video_set, a_file)) == [f"output_dir: {a_file} is a file, not a folder"]
    inside = a_file / "run"
    assert problems_of(recipe_dict(video_set, inside)) == [f"output_dir: {inside} is inside {a_file}, which is a file, not a folder"]


def test_missing_required_and_bad_deepspeed_combinations(video_set, tmp_path):
    data = recipe_dict(video_set, tmp_path / "out")
    del data["stages"][0]["lr"]
    problems = problems_of(data, "deepspeed.offload_param=true", "deepspeed.precision=fp16")
    assert "stages[0].lr: missing required key" in problems
    assert any(p.startswith("deepspeed.precision: expected one of ['fp32', 'bf16']") for p in problems)


def test_disallowed_component_is_refused(video_set, tmp_path):
    problems = problems_of(recipe_dict(video_set, tmp_path / "out"), "model._component_=os.system")
    assert any("model._component_" in p and "'os.system' is outside the allowed packages" in p for p in problems)
    with pytest.raises(ComponentError, match="outside the allowed packages"):
        instantiate({"_component_": "subprocess.run", "args": ["true"]})
    with pytest.raises(ComponentError, match="outside the allowed packages"):
        instantiate({"_component_": "videovlmevil.x"})  # a prefix match must end at a dot
    optimizer = instantiate({"_component_": "torch.optim.SGD", "momentum": 0.5}, params=[torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.5


def test_override_errors():
    data = {"stages": [{"steps": 1}], "deepspeed": {"zero_stage": 0}}
    with pytest.raises(ConfigError, match="stages.3: no list item 3"):
        apply_overrides(data, ["stages.3.steps=2"])
    assert apply_overrides(data, ["deepspeed.zero.stage=2"])["deepspeed"]["zero"] == {"stage": 2}  # validation reports it
    assert apply_overrides({}, ["deepspeed.zero_stage=3"]) == {"deepspeed": {"zero_stage": 3}}  # a defaulted section
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides(data, ["steps"])


def test_deepspeed_json(video_set, tmp_path):
    config = validate(apply_overrides(recipe_dict(video_set, tmp_path), ["deepspeed.zero_stage=3", "deepspeed.offload_optimizer=true", "deepspeed.offload_param=true", "deepspeed.precision=bf16"]), allowed_packages=TEST_PACKAGES)
    ds = build_deepspeed_config(config.deepspeed, config.stages[0], world_size=2)
    assert ds["train_batch_size"] == 2 * 2 * 2 and ds["bf16"] == {"enabled": True}
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu" and ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["zero_force_ds_cpu_optimizer"] is False
    given = tmp_path / "ds.json"
    given.write_text(json.dumps({"zero_optimization": {"stage": 1}, "train_batch_size": 99}))
    config.deepspeed.config_file = given
    with pytest.raises(ConfigError, match="train_batch_size=99 disagrees"):
        build_deepspeed_config(config.deepspeed, config.stages[0], world_size=2)
    given.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    filled = build_deepspeed_config(config.deepspeed, config.stages[0], world_size=2)
    assert filled["zero_optimization"] == {"stage": 1} and filled["train_micro_batch_size_per_gpu"] == 2


def _keys(sampler: StepBatchSampler) -> list[list[tuple[int, int]]]:
    return list(iter(sampler))


def test_global_batches_do_not_depend_on_world_size_and_resume_mid_run():
    common = dict(sizes=[7, 5], weights=[1.0, 2.0], seed=3, micro_batch_size=2, total_steps=9)
    one = _keys(StepBatchSampler(**common, gradient_accumulation_steps=2, rank=0, world_size=1, start_step=0))
    ranks = [_keys(StepBatchSampler(**common, gradient_accumulation_steps=1, rank=r, world_size=2, start_step=0)) for r in range(2)]
    for step in range(9):
        assert sorted(one[2 * step] + one[2 * step + 1]) == sorted(ranks[0][step] + ranks[1][step])
    resumed = _keys(StepBatchSampler(**common, gradient_accumulation_steps=2, rank=0, world_size=1, start_step=4))
    assert resumed == one[8:]
    # weights: dataset 0 once, dataset 1 (flat 7..11) twice per epoch, shuffled together.
    order = epoch_order([7, 5], [1.0, 2.0], seed=3, epoch=0).tolist()
    assert sorted(order) == list(range(7)) + sorted(list(range(7, 12)) * 2)
    assert order != epoch_order([7, 5], [1.0, 2.0], seed=3, epoch=1).tolist()


def test_collate_pads_frames_and_drops_skipped():
    items = [
        {"pixel_values": torch.ones(3, 3, 4, 4), "input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([1, 2, 3])},
        SkippedItem(index=4, path="bad.mp4", reason="VideoDecodeError: broken"),
        {"pixel_values": torch.ones(2, 3, 4, 4), "input_ids": torch.tensor([8]), "labels": torch.tensor([4])},
    ]
    batch = PadCollator({"input_ids": 0})(items)
    assert batch.num_items == 2 and [s.path for s in batch.skipped] == ["bad.mp4"]
    assert batch.inputs["pixel_values"].shape == (2, 3, 3, 4, 4)
    assert batch.inputs["frame_mask"].tolist() == [[True, True, True], [True, True, False]]
    assert batch.inputs["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.inputs["labels"].tolist() == [[1, 2, 3], [4, -100, -100]]


def test_warmup_cosine_schedule():
    factor = warmup_cosine(warmup_steps=2, total_steps=10, min_lr_ratio=0.1)
    assert [factor(0), factor(1)] == [0.5, 1.0]
    assert factor(2) == pytest.approx(1.0) and factor(6) == pytest.approx(0.55) and factor(10) == pytest.approx(0.1)


def test_dry_run_prints_the_plan(recipe, capsys):
    assert main(["train", str(recipe), "--dry-run", "stages.0.steps=3", "deepspeed.zero_stage=2", *ALLOW]) == 0
    out = capsys.readouterr().out
    assert "model: tests.train.tiny.TinyVideoClassifier" in out
    assert "stage 1/2 'first': 3 steps" in out and "stage 2/2 'second': 4 steps" in out
    assert "parameters: 132 trainable, 272 frozen (404 total)" in out  # encoder + head of hidden 16
    assert "parameters: 272 trainable, 132 frozen (404 total)" in out  # temporal
    assert "(16 items)" in out and '"zero_optimization": {"stage": 2}' in out
    assert "memory (DeepSpeed's estimate, ZeRO-2, 1 GPU(s))" in out and "for 132 trained params" in out
    assert main(["train", str(recipe), "--dry-run", "model._component_=os.system", *ALLOW]) == 2
    assert "outside the allowed packages" in capsys.readouterr().err


def test_memory_estimate_is_deepspeeds_formula_plus_the_frozen_weights():
    """ZeRO-2 without offload: 2 + 18 / world bytes per trained param (DeepSpeed's estimator),
    frozen fp32 weights whole on each GPU; ZeRO-3 partitions the frozen weights too."""
    from tests.train.tiny import TinyVideoClassifier
    from videovlm.train.config import DeepSpeedConfig
    from videovlm.train.memory_estimate import model_states_estimate

    model = TinyVideoClassifier()
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    two = model_states_estimate(model, DeepSpeedConfig(zero_stage=2), world_size=2)
    assert (two["trainable_params"], two["frozen_params"]) == (trainable, frozen)
    assert two["gpu_bytes"] == 2 * trainable + 18 * trainable // 2 + 4 * frozen
    three = model_states_estimate(model, DeepSpeedConfig(zero_stage=3), world_size=2)
    from videovlm.train.memory_estimate import largest_layer_params

    largest = largest_layer_params(model)  # ZeRO-3 gathers one layer at a time
    assert three["frozen_gpu_bytes"] == 4 * frozen // 2
    assert three["deepspeed_gpu_bytes"] == 4 * largest + 18 * trainable // 2


def test_recipe_yaml_starts_with_its_command(recipe):
    assert yaml.safe_load(recipe.read_text())["stages"][0]["name"] == "first"
    assert load_config(recipe, allowed_packages=TEST_PACKAGES).keep_last == 2
