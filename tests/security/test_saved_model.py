"""A saved model folder is data: its config.json, tokenizer files and weights are checked,
never trusted to name code. Bad files give a typed error naming the file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from videovlm.models import load_pretrained
from videovlm.models.base import WeightsFileError
from videovlm.models.configs import ModelConfigError
from videovlm.models.presets import tiny_videollama
from videovlm.models.tokenizer import train_tokenizer
from videovlm.qa import VideoQA


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    tokenizer = train_tokenizer([f"a {c} {s} moves {m}." for c in ("red", "blue") for s in ("circle", "star") for m in ("left", "up")], vocab_size=200)
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("saved") / "model"
    tiny_videollama(tokenizer=tokenizer).save_pretrained(directory)
    return directory


def edited_copy(saved: Path, tmp_path: Path, edit) -> Path:
    directory = tmp_path / "model"
    shutil.copytree(saved, directory)
    config = json.loads((directory / "config.json").read_text())
    edit(config)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize(
    "component, reason",
    [
        ("videovlm.models.temporal.base.TemporalConfigError", "is not a temporal encoder class"),
        ("videovlm.models.temporal.VideoTokens", "is not a temporal encoder class"),
        ("videovlm.models.temporal.video_qformer.nn.Linear", "is the module 'torch.nn'"),
        ("videovlm.models.VideoLlamaModel", "outside the allowed packages"),
        ("videovlm.train.cli.os.system", "outside the allowed packages"),
        ("builtins.exec", "outside the allowed packages"),
        ("videovlm.models.temporal.__builtins__", "private or a dunder"),
    ],
)
def test_config_json_temporal_component_must_be_a_temporal_encoder(saved, tmp_path, component, reason):
    directory = edited_copy(saved, tmp_path, lambda c: c["temporal"].update({"_component_": component}))
    with pytest.raises(ModelConfigError, match=reason):
        load_pretrained(directory)


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda c: c.update(trust_remote_code=True), "trust_remote_code"),
        (lambda c: c["llm"]["hf_config"].update(trust_remote_code=False), "llm.hf_config.trust_remote_code"),
        (lambda c: c["llm"]["hf_config"].update(auto_map={"AutoModelForCausalLM": "modeling.Evil"}), "llm.hf_config.auto_map"),
        (lambda c: c["vision"]["hf_config"].update(auto_map={"AutoModel": "evil--modeling.Evil"}), "vision.hf_config.auto_map"),
    ],
)
def test_config_json_asking_for_remote_code_is_refused(saved, tmp_path, edit, where):
    directory = edited_copy(saved, tmp_path, edit)
    with pytest.raises(ModelConfigError, match=f"config.json: {where}: refused"):
        load_pretrained(directory)
    with pytest.raises(ModelConfigError, match="refused"):
        VideoQA.from_pretrained(directory)


def test_tokenizer_config_with_auto_map_is_refused(saved, tmp_path):
    directory = edited_copy(saved, tmp_path, lambda c: None)
    path = directory / "tokenizer_config.json"
    data = json.loads(path.read_text())
    data["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    path.write_text(json.dumps(data))
    (directory / "tokenization_evil.py").write_text("open('MARKER', 'w')\n")
    with pytest.raises(ModelConfigError, match="tokenizer_config.json: auto_map: refused"):
        load_pretrained(directory)


def _weights(directory: Path) -> Path:
    return directory / "model.safetensors"


def truncate(directory: Path) -> None:
    data = _weights(directory).read_bytes()
    _weights(directory).write_bytes(data[: len(data) // 2])


def random_bytes(directory: Path) -> None:
    _weights(directory).write_bytes(torch.randint(0, 256, (5000,), generator=torch.Generator().manual_seed(1), dtype=torch.uint8).numpy().tobytes())


def wrong_shape(directory: Path) -> None:
    tensors = load_file(str(_weights(directory)))
    name = next(n for n in sorted(tensors) if n.startswith("projector"))
    tensors[name] = torch.zeros(tensors[name].shape[0] + 1, *tensors[name].shape[1:])
    save_file(tensors, str(_weights(directory)))


def missing_tensor(directory: Path) -> None:
    tensors = load_file(str(_weights(directory)))
    del tensors[sorted(tensors)[0]]
    save_file(tensors, str(_weights(directory)))


def weights_folder(directory: Path) -> None:
    _weights(directory).unlink()
    _weights(directory).mkdir()


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (truncate, WeightsFileError, "model.safetensors: "),
        (random_bytes, WeightsFileError, "model.safetensors: not a readable safetensors file"),
        (wrong_shape, WeightsFileError, "tensors have the wrong shape (projector"),
        (missing_tensor, WeightsFileError, "weights do not match the config (missing"),
        (weights_folder, FileNotFoundError, "weights file missing (it is a folder)"),
    ],
)
def test_damaged_weights_give_a_typed_error_naming_the_file(saved, tmp_path, damage, error, message):
    directory = edited_copy(saved, tmp_path, lambda c: None)
    damage(directory)
    with pytest.raises(error, match=re.escape(message)):
        load_pretrained(directory)


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe\x00garbage", b'{"version": "1.0", "model": 12}'])
def test_corrupt_tokenizer_json_names_the_file(saved, tmp_path, content):
    directory = edited_copy(saved, tmp_path, lambda c: None)
    (directory / "tokenizer.json").write_bytes(content)
    with pytest.raises(ModelConfigError, match="tokenizer"):
        load_pretrained(directory)
