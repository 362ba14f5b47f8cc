"""Fixtures of the recipe tests: a few synthetic videos and untrained tiny backbones saved
where the recipes expect the backbone recipes' outputs, so the YAMLs run unchanged except for
their paths (moved under a temp folder, as the quickstart does) and step counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT

RECIPES = REPO_ROOT / "recipes"
# Every stage of a recipe under test: a couple of micro steps, no TensorBoard / progress bar.
FAST = ["tensorboard=false", "progress_bar=false", "checkpoint_every=0"]


def stage_overrides(recipe: Path, *, steps: int = 2, batch: int = 2) -> list[str]:
    import yaml

    stages = yaml.safe_load(recipe.read_text())["stages"]
    out = list(FAST)
    for i in range(len(stages)):
        out += [f"stages.{i}.steps={steps}", f"stages.{i}.micro_batch_size={batch}", f"stages.{i}.warmup_steps=0", f"stages.{i}.eval_max_batches=1"]
    return out


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory) -> Path:
    """6 train, 3 val, 3 test synthetic videos (the real generator, default look)."""
    from videovlm.data.synthetic import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, train=6, val=3, test=3, workers=1)
    return root


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory, mini_data) -> Path:
    """``runs/`` with untrained tiny backbones where recipes/backbones would write them."""
    from transformers import BartForConditionalGeneration, BertForMaskedLM, CLIPVisionModel, LlamaForCausalLM

    from videovlm.data.synthetic import corpus_texts
    from videovlm.models import presets, train_tokenizer
    from videovlm.train.backbones import tiny_resnet_tower

    runs = tmp_path_factory.mktemp("runs")
    tokenizer = train_tokenizer(corpus_texts(mini_data / "train"), vocab_size=400)
    torch.manual_seed(0)
    backbones = {
        "clip/contrastive/final": CLIPVisionModel(presets.tiny_clip_vision_config()),
        "llm/chat/final": LlamaForCausalLM(presets.tiny_llama_config(tokenizer=tokenizer)),  # what llm_copy.yaml continues
        "llm_copy/mixed/final": LlamaForCausalLM(presets.tiny_llama_config(tokenizer=tokenizer)),
        "bert/text/final": BertForMaskedLM(presets.tiny_bert_config(tokenizer=tokenizer)),
        "bart/text/final": BartForConditionalGeneration(presets.tiny_bart_config(tokenizer=tokenizer)),
    }
    for folder, model in backbones.items():
        model.save_pretrained(runs / "backbones" / folder)
        tokenizer.save_pretrained(runs / "backbones" / folder)
    tiny_resnet_tower().save_pretrained(runs / "backbones" / "conv_tower" / "labels" / "final")  # what conv_tower.yaml writes
    return runs


def recipe_data(recipe: Path, *, mini_data: Path, runs_dir: Path, overrides: list[str] = ()) -> dict:
    """The recipe's YAML with its paths under the test folders, plus overrides."""
    from videovlm.quickstart import relocate
    from videovlm.train.config import apply_overrides, load_yaml

    data = relocate(load_yaml(recipe), data_dir=mini_data, runs_dir=runs_dir)
    return apply_overrides(data, list(overrides))
