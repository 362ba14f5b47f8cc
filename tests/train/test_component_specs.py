"""Nested ``_component_`` blocks are built, or handed over unbuilt to a ``ComponentSpec``
parameter (``videovlm.components``), never both: Video-LLaMA's recipe builder takes its
temporal encoder as a spec and the model sizes it by its own tower."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from videovlm.components import ComponentError, ComponentSpec, spec_parameters
from videovlm.train.config import check_component, load_yaml
from videovlm.train.instantiate import DEFAULT_ALLOWED_PACKAGES, WIDEN_HINT, instantiate
from videovlm.video.samplers import UniformSampler

HERE = "tests.train.test_component_specs"
ALLOWED = (*DEFAULT_ALLOWED_PACKAGES, HERE)
CALLS: list[dict] = []


def assemble(*, encoder: ComponentSpec | None = None, sampler: Any = None, extras: list | None = None) -> dict:
    """A target taking one spec and other, built, components."""
    CALLS.append({"encoder": encoder, "sampler": sampler})
    return {"encoder": encoder, "sampler": sampler, "extras": extras}


def test_spec_parameters_reads_the_annotations():
    from videovlm.recipes.builders import tiny_videollama_model

    assert spec_parameters(assemble) == {"encoder"}
    assert spec_parameters(tiny_videollama_model) == {"temporal"}
    assert spec_parameters(UniformSampler) == frozenset()


def test_instantiate_passes_a_spec_unbuilt_and_builds_the_other_nested_components():
    spec = {"_component_": "videovlm.models.temporal.MeanPool", "pool_tokens": True, "inner": {"_component_": f"{HERE}.assemble"}}
    cfg = {
        "_component_": f"{HERE}.assemble",
        "encoder": spec,
        "sampler": {"_component_": "videovlm.video.samplers.UniformSampler", "num_frames": 4},
        "extras": [{"_component_": "videovlm.video.samplers.UniformSampler", "num_frames": 2}],
    }
    CALLS.clear()
    out = instantiate(cfg, allowed_packages=ALLOWED)
    assert len(CALLS) == 1  # the spec's nested component was not called either
    assert out["encoder"] == spec and out["encoder"] is not spec and out["encoder"]["inner"] is not spec["inner"]
    assert isinstance(out["sampler"], UniformSampler) and out["sampler"].num_frames == 4
    assert isinstance(out["extras"][0], UniformSampler) and out["extras"][0].num_frames == 2
    assert instantiate({"_component_": f"{HERE}.assemble", "encoder": None}, allowed_packages=ALLOWED)["encoder"] is None


@pytest.mark.parametrize("payload", ["os.system", "videovlm.train.cli.os.system"])
def test_instantiate_refuses_a_spec_path_outside_the_allow_list_before_calling(payload):
    CALLS.clear()
    for spec in ({"_component_": payload}, {"_component_": "videovlm.models.temporal.MeanPool", "deep": [{"_component_": payload}]}):
        with pytest.raises(ComponentError, match="outside the allowed packages|is the module"):
            instantiate({"_component_": f"{HERE}.assemble", "encoder": spec}, allowed_packages=ALLOWED)
    assert CALLS == []


def _problems(cfg: dict) -> list[str]:
    problems: list[str] = []
    check_component(cfg, "model", problems, allowed_packages=ALLOWED)
    return problems


def test_validation_checks_a_spec_but_leaves_its_required_arguments_to_the_receiver():
    mean_pool = {"_component_": "videovlm.models.temporal.MeanPool"}  # input_dim is required: the model gives it
    assert _problems({"_component_": f"{HERE}.assemble", "encoder": mean_pool}) == []
    assert _problems({"_component_": f"{HERE}.assemble", "encoder": {**mean_pool, "pool_tokenz": True}}) == [
        "model.encoder.pool_tokenz: unknown argument of videovlm.models.temporal.MeanPool (allowed: input_dim, output_dim, beyond_max_frames, pool_tokens)"
    ]
    assert _problems({"_component_": f"{HERE}.assemble", "encoder": {**mean_pool, "pool_tokens": "yes"}}) == [
        "model.encoder.pool_tokens: expected bool, got str 'yes'"
    ]
    assert _problems({"_component_": f"{HERE}.assemble", "encoder": 3}) == [
        "model.encoder: expected a mapping with a '_component_' key, got 3"
    ]
    # Built components still need their required arguments (a temporal encoder built by
    # instantiate would get keywords, and it takes its config only).
    assert _problems({"_component_": f"{HERE}.assemble", "sampler": mean_pool}) == [
        "model.sampler.config: missing required argument of videovlm.models.temporal.MeanPool"
    ]


def test_recipe_temporal_spec_without_input_dim_validates_and_a_bad_path_is_refused():
    model = load_yaml(REPO_ROOT / "recipes" / "videollama" / "tiny.yaml")["model"]
    assert "input_dim" not in model["temporal"]
    assert [p for p in _problems(model) if "temporal" in p] == []
    model["temporal"]["_component_"] = "videovlm.train.cli.os.system"
    problems = [p for p in _problems(model) if "temporal" in p]
    assert problems == [
        "model.temporal._component_: _component_ 'videovlm.train.cli.os.system' is outside the allowed packages "
        f"{list(ALLOWED)}{WIDEN_HINT}"
    ]


@pytest.mark.parametrize(
    "recipe, builder",
    [
        ("videollama/tiny.yaml", "tiny_videollama_model"),
        ("videollama/tiny_mean.yaml", "tiny_videollama_model"),
        ("videoofa/tiny.yaml", "tiny_videoofa_model"),
    ],
)
def test_recipe_temporal_spec_is_sized_by_the_model(recipe, builder, tmp_path):
    """The spec reaches the model unbuilt; the model gives it its tower's width (and the
    instruction-reading encoder its tokenizer's size)."""
    from tests.models.conftest import synthetic_sentences
    from videovlm.models.tokenizer import train_tokenizer

    train_tokenizer(synthetic_sentences(), vocab_size=400).save_pretrained(tmp_path / "tokenizer")
    spec = load_yaml(REPO_ROOT / "recipes" / recipe)["model"]["temporal"]
    assert "input_dim" not in spec
    cfg = {"_component_": f"videovlm.recipes.builders.{builder}", "tokenizer": str(tmp_path / "tokenizer"), "temporal": spec}
    model = instantiate(cfg)
    assert model.config.temporal == spec
    encoder = getattr(model.temporal, "encoder", model.temporal)  # VideoOFA wraps it in its visual tokens
    assert encoder.input_dim == model.vision.hidden_size
    saved = model.saved_config().temporal
    assert saved["input_dim"] == model.vision.hidden_size and saved["_component_"] == spec["_component_"]
    if getattr(encoder, "reads_instruction", False):
        assert saved["vocab_size"] == len(model.tokenizer)
