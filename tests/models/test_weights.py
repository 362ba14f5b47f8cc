"""Weights on disk: sharded layout, partial (trainable-only) checkpoints over a base, and
loading into a model built on the meta device (no second copy, saved dtype, ties kept)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.qa.conftest import build_micro
from videovlm.models import load_pretrained
from videovlm.models.weights import INDEX_FILE, WEIGHTS_FILE, WeightsFileError, tied_groups

FAMILIES = ["videollama", "videoofa", "videobert"]


@pytest.fixture(scope="module")
def tokenizer():
    from videovlm.models import train_tokenizer

    return train_tokenizer(["what is in the video? a red blue green square moves left right yes no"], vocab_size=80)


def _same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and torch.equal(sa[name], sb[name]), name


@pytest.mark.parametrize("family", FAMILIES)
def test_empty_build_has_no_weights_and_the_same_ties(tokenizer, family):
    model = build_micro(family, tokenizer)
    empty = type(model).build_empty(model.config, tokenizer=tokenizer)
    assert all(p.is_meta for p in empty.parameters())
    assert not any(b.is_meta for b in empty.buffers())  # buffers stay real: some are computed, not saved
    assert sorted(map(tuple, tied_groups(empty))) == sorted(map(tuple, tied_groups(model)))


@pytest.mark.parametrize("family", FAMILIES)
def test_sharded_layout_round_trips_and_replaces_the_single_file(tokenizer, family, tmp_path):
    model = build_micro(family, tokenizer)
    folder = model.save_pretrained(tmp_path / "m", max_shard_size=20_000)
    shards = sorted(p.name for p in folder.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and not (folder / WEIGHTS_FILE).exists()
    index = json.loads((folder / INDEX_FILE).read_text())  # transformers' index format
    assert set(index["weight_map"].values()) == set(shards) and index["metadata"]["total_size"] > 0
    loaded = load_pretrained(folder)
    assert not any(p.is_meta for p in loaded.parameters())
    _same_weights(model, loaded)
    model.save_pretrained(folder)  # back to one file: no shard of the old layout is left behind
    assert sorted(p.name for p in folder.glob("model*.safetensors*")) == [WEIGHTS_FILE]
    _same_weights(model, load_pretrained(folder))


def test_a_transformers_reader_loads_the_shards(tokenizer, tmp_path):
    """The sharded files are what the hub's sharded loader reads (index + shards), as
    transformers and accelerate read them."""
    from huggingface_hub import load_torch_model

    model = build_micro("videollama", tokenizer)
    folder = model.save_pretrained(tmp_path / "m", max_shard_size=20_000)
    other = build_micro("videollama", tokenizer)
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    load_torch_model(other, folder, strict=False)  # strict=False: tied copies are stored once
    _same_weights(model, other)


def test_loading_keeps_the_saved_dtype(tokenizer, tmp_path):
    model = build_micro("videollama", tokenizer).to(torch.bfloat16)
    loaded = load_pretrained(model.save_pretrained(tmp_path / "bf16"))
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    _same_weights(model, loaded)


def test_trainable_parts_saved_over_a_base(tokenizer, tmp_path):
    """Stage 2 writes only what it trained; loading reads the base first, then those parts."""
    model = build_micro("videollama", tokenizer)
    base = model.save_pretrained(tmp_path / "stage1" / "final", max_shard_size=20_000)
    with torch.no_grad():
        for p in model.temporal.parameters():
            p.add_(1.0)
    stage2 = model.save_pretrained(tmp_path / "stage2" / "final", parts=["temporal", "projector"], base=base)
    from safetensors import safe_open

    with safe_open(str(stage2 / WEIGHTS_FILE), framework="pt") as handle:
        assert {name.split(".")[0] for name in handle.keys()} == {"temporal", "projector"}
    assert json.loads((stage2 / "weights_base.json").read_text()) == {"base": "../../stage1/final", "parts": ["temporal", "projector"]}
    loaded = load_pretrained(stage2)
    _same_weights(model, loaded)
    # the two folders move together (the base is stored relative)
    (tmp_path / "stage1").rename(tmp_path / "moved1")
    with pytest.raises(FileNotFoundError, match="base checkpoint .* does not exist"):
        load_pretrained(stage2)
    (tmp_path / "moved1").rename(tmp_path / "stage1")
    with pytest.raises(ValueError, match="parts and base go together"):
        model.save_pretrained(tmp_path / "x", parts=["temporal"])
    with pytest.raises(ValueError, match=r"parts \['nope'\] are not parts"):
        model.save_pretrained(tmp_path / "x", parts=["nope"], base=base)
    with pytest.raises(FileNotFoundError, match="holds no model.safetensors"):
        model.save_pretrained(tmp_path / "x", parts=["temporal"], base=tmp_path)


def test_bad_indexes_are_refused_by_name(tokenizer, tmp_path):
    model = build_micro("videobert", tokenizer)
    folder = model.save_pretrained(tmp_path / "m", max_shard_size=20_000)
    index = json.loads((folder / INDEX_FILE).read_text())
    first = sorted(index["weight_map"])[0]
    for bad, error, message in [
        ({**index["weight_map"], first: "../elsewhere.safetensors"}, WeightsFileError, "plain .safetensors file names"),
        ({**index["weight_map"], first: "model-00009-of-00009.safetensors"}, FileNotFoundError, "shard .* is missing"),
    ]:
        (folder / INDEX_FILE).write_text(json.dumps({"weight_map": bad}))
        with pytest.raises(error, match=message):
            load_pretrained(folder)
    (folder / INDEX_FILE).write_text("{not json")
    with pytest.raises(WeightsFileError, match="not valid JSON"):
        load_pretrained(folder)
    (folder / INDEX_FILE).write_text(json.dumps({"weight_map": {k: v for k, v in index["weight_map"].items() if k != first}}))
    with pytest.raises(WeightsFileError, match=r"weights do not match the config \(missing"):
        load_pretrained(folder)
