"""Every YAML in recipes/ validates (paths moved to a temp folder; the real configs' data sets
replaced by local files of the same format), starts with the comment giving its command,
and the real configs name hub checkpoints and a ZeRO stage."""

from __future__ import annotations

import pytest
import yaml

from tests.recipes.conftest import RECIPES, recipe_data
from videovlm.train.config import ConfigError, validate

ALL = sorted(RECIPES.glob("*/*.yaml"))
REAL = [p for p in ALL if p.stem.startswith("real")]
# Local stand-in for each data set component of a real config (same file format).
LOCAL_FILE = {
    "VideoCaptionDataset": "train/captions.csv",
    "VideoTextMatchingDataset": "train/captions.csv",
    "FrameOrderDataset": "train/captions.csv",
    "ImageCaptionDataset": "train/image_captions.json",
    "ImageQADataset": "train/image_captions.json",
    "InstructionDataset": "train/instructions.json",
    "VideoQADataset": "train/qa.json",
}


def with_local_data(data: dict, mini_data) -> dict:
    if "captions" in data["model"]:  # VideoBERT fits its vocabulary on these videos
        data["model"]["captions"] = str(mini_data / "train" / "captions.csv")
    for stage in data["stages"]:
        for split in ("train", "val"):
            for component in stage["data"].get(split, []):
                component["path"] = str(mini_data / LOCAL_FILE[component["_component_"].rsplit(".", 1)[-1]])
                component.pop("media_root", None)
    return data


def test_recipes_exist():
    names = {f"{p.parent.name}/{p.name}" for p in ALL}
    for family in ("videobert", "videoofa", "videollama"):
        assert f"{family}/tiny.yaml" in names
        assert any(n.startswith(f"{family}/real") for n in names)
    assert {"videollama/tiny_mean.yaml", "videollama/tiny_order_blind.yaml", "videollama/tiny_lora.yaml", "videollama/tiny_lora_mean.yaml", "videoofa/tiny_no_video_stage.yaml"} <= names


@pytest.mark.parametrize("recipe", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_validates(recipe, mini_data, runs_dir):
    first = recipe.read_text().splitlines()[0]
    assert first.startswith("# ") and "videovlm train" in first and recipe.name in first, first
    data = recipe_data(recipe, mini_data=mini_data, runs_dir=runs_dir)
    if recipe in REAL:
        data = with_local_data(data, mini_data)
    config = validate(data, source=str(recipe))
    assert config.stages


@pytest.mark.parametrize("recipe", REAL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_config_names_checkpoints_and_zero(recipe):
    text = recipe.read_text()
    raw = yaml.safe_load(text)
    assert raw["deepspeed"]["zero_stage"] in (2, 3)
    assert raw["deepspeed"]["precision"] == "bf16"
    hub_ids = [v for k, v in raw["model"].items() if k != "_component_" and isinstance(v, str) and "/" in v or k == "bert"]
    assert hub_ids, "a real config names its Hugging Face checkpoints"
    assert "Hardware:" in text


def test_broken_recipe_reports_key_paths(mini_data, runs_dir):
    data = recipe_data(RECIPES / "videollama" / "tiny.yaml", mini_data=mini_data, runs_dir=runs_dir)
    data["stages"][1]["data"]["train"][0]["path"] = str(mini_data / "train" / "missing.json")
    data["model"]["temporal"]["_component_"] = "os.system"
    with pytest.raises(ConfigError) as error:
        validate(data)
    message = str(error.value)
    assert "stages[1].data.train[0].path: file not found" in message
    assert "model.temporal._component_" in message


def test_real_convnext_recipe_plans_with_local_checkpoints(mini_data, runs_dir, tmp_path):
    """The ConvNeXt recipe's --dry-run plan builds its model when the two hub ids are swapped for
    local folders of the same kinds (a tiny ConvNextForImageClassification with the hub's
    preprocessor_config.json format, the tiny LLM): the same from_pretrained calls, no download."""
    import json

    from transformers import ConvNextForImageClassification

    from tests.models.conftest import tiny_conv_config
    from videovlm.train.plan import build_plan

    ConvNextForImageClassification(tiny_conv_config("convnext")).save_pretrained(tmp_path / "convnext")
    processor = {"feature_extractor_type": "ConvNextFeatureExtractor", "size": 64, "crop_pct": 0.875, "resample": 3,
                 "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}  # fmt: skip
    (tmp_path / "convnext" / "preprocessor_config.json").write_text(json.dumps(processor))
    recipe = RECIPES / "videollama" / "real_convnext_7b.yaml"
    data = with_local_data(recipe_data(recipe, mini_data=mini_data, runs_dir=runs_dir), mini_data)
    assert data["model"]["vision"] == "facebook/convnext-large-384-22k-1k"
    data["model"].update(vision=str(tmp_path / "convnext"), llm=str(runs_dir / "backbones" / "llm_copy" / "mixed" / "final"))
    plan = build_plan(validate(data, source=str(recipe)))
    assert plan["model"]["class"] == "videovlm.models.videollama.modeling.VideoLlamaModel"
    assert [s["trainable_parts"] for s in plan["stages"]] == [["frame_position", "temporal", "projector"]] * 2
