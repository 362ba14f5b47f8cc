"""The tiny backbones shipped with the package (videovlm/assets/backbones, what the quickstart
starts from): each is the output of its recipe, unchanged since (the sha256 sums its README
records), has the architecture that recipe builds, and loads the way the video recipes load it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO_ROOT
from videovlm.quickstart import SHIPPED_BACKBONES, TRAIN_STEPS, shipped_backbone

# Fields of a saved HF config that say where and how it was saved, not what the model is.
SAVE_FIELDS = {"architectures", "dtype", "torch_dtype", "transformers_version", "_name_or_path"}


def readme_sums(folder: Path) -> dict[str, str]:
    text = (folder / "README.md").read_text()
    return {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", text, flags=re.MULTILINE)}


def architecture(config) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in SAVE_FIELDS}


@pytest.mark.parametrize("name", sorted(SHIPPED_BACKBONES))
def test_shipped_backbone_is_its_recipes_output_unchanged(name):
    import hashlib

    folder = shipped_backbone(name)
    sums = readme_sums(folder)
    files = sorted(p.name for p in folder.iterdir() if p.name != "README.md")
    assert sorted(sums) == files, f"{folder}/README.md lists {sorted(sums)}, the folder holds {files}"
    for file, digest in sums.items():
        assert hashlib.sha256((folder / file).read_bytes()).hexdigest() == digest, f"{folder / file} differs from its README"
    readme = (folder / "README.md").read_text()
    for recipe in TRAIN_STEPS[name]:
        assert f"videovlm train recipes/{recipe}" in readme  # the commands that built it are recorded beside it
    stages = yaml.safe_load((REPO_ROOT / "recipes" / TRAIN_STEPS[name][-1]).read_text())["stages"]
    assert f"/{stages[-1]['name']}/final" in readme  # ...and the folder it was copied from: the last stage's


def test_shipped_conv_tower_is_the_recipe_tower_and_loads_as_a_vision_tower():
    from transformers import AutoConfig

    from videovlm.models import VisionTower, VisionTowerConfig
    from videovlm.train.instantiate import instantiate

    folder = shipped_backbone("vision")
    recipe = yaml.safe_load((REPO_ROOT / "recipes" / TRAIN_STEPS["vision"][0]).read_text())
    built = instantiate(recipe["model"])  # the recipe's tower, untrained
    assert architecture(AutoConfig.from_pretrained(folder)) == architecture(built.model.config)
    tower = VisionTower(VisionTowerConfig(pretrained=str(folder)))
    assert tower.pixel == built.pixel  # preprocessing from the shipped processor config = the recipe's
    with torch.no_grad():
        tokens = tower(torch.zeros(1, 2, 3, tower.pixel.image_size, tower.pixel.image_size))
    assert tokens.shape == (1, 2, 50, 128)  # (B, T, N, D): pooled + 7 x 7 grid of 128 channels


def test_shipped_llm_is_the_recipe_llm_and_reads_the_synthetic_vocabulary():
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    from videovlm.data.synthetic.vocabulary import COLOR_NAMES, SHAPES
    from videovlm.models import presets

    folder = shipped_backbone("llm")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert architecture(AutoConfig.from_pretrained(folder)) == architecture(presets.tiny_llama_config(tokenizer=tokenizer))
    words = " ".join([*SHAPES, *COLOR_NAMES, "left", "right", "up", "down", "still", "###Human:", "###Assistant:"])
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    model = LlamaForCausalLM.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) > 2_000_000 and not model.training
