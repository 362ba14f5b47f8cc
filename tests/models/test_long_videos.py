"""Videos longer than the model was trained for: a clear error by default, or frame positions
interpolated linearly (``beyond_max_frames: interpolate``), never an index error deep inside."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from torch import nn

from tests.qa.conftest import build_micro
from videovlm.models import ModelConfigError, ProcessorError, load_pretrained
from videovlm.models.temporal.base import TemporalConfigError, TemporalInputError, frame_position_table


@pytest.fixture(scope="module")
def tokenizer():
    from videovlm.models import train_tokenizer

    return train_tokenizer(["what is in the video? a red blue green square moves left right yes no"], vocab_size=80)


def _long(model, *, frames=9):
    video = np.random.default_rng(0).integers(0, 255, size=(frames, 40, 40, 3), dtype=np.uint8)
    return model.processor.prompt("what is in the video?", frames=video)


def test_position_table_interpolates_linearly_and_says_so(caplog):
    torch.manual_seed(0)
    table = nn.Embedding(4, 6)
    assert torch.equal(frame_position_table(table, 3, owner="t"), table.weight[:3])
    with pytest.raises(TemporalInputError, match="got 7 frames but max_frames is 4.*beyond_max_frames: interpolate"):
        frame_position_table(table, 7, owner="t")
    with caplog.at_level(logging.WARNING):
        resized = frame_position_table(table, 7, owner="t", interpolate=True)
        frame_position_table(table, 7, owner="t", interpolate=True)
    assert resized.shape == (7, 6)
    assert torch.allclose(resized[::2], table.weight, atol=1e-6)  # 4 -> 7 rows: the old rows at 0, 2, 4, 6
    assert torch.allclose(resized[1], (table.weight[0] + table.weight[1]) / 2, atol=1e-6)  # and midpoints between
    assert sum("interpolating them linearly" in r.message for r in caplog.records) == 1  # logged once


@pytest.mark.parametrize("family", ["videollama", "videoofa"])
def test_long_video_errors_by_default_and_interpolates_when_asked(tokenizer, family, tmp_path):
    model = build_micro(family, tokenizer).eval()  # max_frames 4
    with pytest.raises(ProcessorError, match="9 frames but the model takes at most max_frames=4"):
        _long(model)
    config = dataclasses.replace(model.config, beyond_max_frames="interpolate")
    torch.manual_seed(0)
    long_model = type(model)(config, tokenizer=tokenizer).eval()
    item = _long(long_model)
    assert item["pixel_values"].shape[0] == 9
    batch = {"input_ids": item["input_ids"][None], "pixel_values": item["pixel_values"][None]}
    out = long_model.generate(**batch, max_new_tokens=3)
    assert out.shape[0] == 1
    # saved and loaded, the policy stays
    loaded = load_pretrained(long_model.save_pretrained(tmp_path / "m"))
    assert loaded.config.beyond_max_frames == "interpolate"
    assert torch.equal(loaded.generate(**batch, max_new_tokens=3), out)


def test_contradicting_or_unknown_policies_are_config_errors(tokenizer):
    model = build_micro("videollama", tokenizer)
    with pytest.raises(ModelConfigError, match="beyond_max_frames: must be one of"):
        dataclasses.replace(model.config, beyond_max_frames="wrap")
    temporal = {**model.config.temporal, "beyond_max_frames": "error"}
    config = dataclasses.replace(model.config, beyond_max_frames="interpolate", temporal=temporal)
    with pytest.raises(ModelConfigError, match="contradicts the model's beyond_max_frames: interpolate"):
        type(model)(config, tokenizer=tokenizer)
    from videovlm.models.temporal import VideoQFormer

    with pytest.raises(TemporalConfigError, match="beyond_max_frames must be one of"):
        VideoQFormer.from_config({"input_dim": 8, "num_queries": 2, "num_heads": 2, "beyond_max_frames": "clip"})
