"""Inference that scales: batch QA split across torchrun processes gives the one-process file;
``--dtype`` casts the model."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import torch

from tests.qa.conftest import QUESTION
from tests.train.conftest import train_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(tmp_path, clips):
    items = [{"video_id": f"{c}{i}", "video": str(clips[c]), "question": QUESTION, "answer": "red", "type": "colour"}
             for i, c in enumerate(["red", "blue", "corrupt", "blue", "red"])]
    data = tmp_path / "qa.json"
    data.write_text(json.dumps(items))
    return data


def test_torchrun_splits_questions_and_merges_in_input_order(trained_llama, clips, tmp_path):
    from videovlm.cli import main

    data = _data(tmp_path, clips)
    single = tmp_path / "single.jsonl"
    common = ["--model", str(trained_llama), "--data", str(data), "--sampler", "uniform:2", "--batch-size", "2", "--device", "cpu", "--no-progress"]
    assert main(["qa", *common, "--output", str(single)]) == 0
    sharded = tmp_path / "out" / "sharded.jsonl"
    sharded.parent.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
               "-m", "videovlm", "qa", *common, "--output", str(sharded)]
    done = subprocess.run(command, env=train_env(tmp_path), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sharded.read_text() == single.read_text()  # same lines, same order, errors included
    assert [json.loads(line)["video_id"] for line in sharded.read_text().splitlines()] == ["red0", "blue1", "corrupt2", "blue3", "red4"]
    assert sorted(p.name for p in sharded.parent.iterdir()) == ["sharded.jsonl"]  # the part files are gone
    assert done.stderr.count("wrote 5 predictions (1 with errors)") == 1  # one report, from rank 0


def test_dtype_casts_the_model_and_still_answers(trained_llama, clips):
    from videovlm.qa import VideoQA
    from videovlm.qa.frames import QAInputError

    vqa = VideoQA.from_pretrained(trained_llama, sampler="uniform:2", dtype="bfloat16")
    assert {p.dtype for p in vqa.model.parameters()} == {torch.bfloat16}
    assert vqa.qa(clips["red"], QUESTION) == "red"
    with pytest.raises(QAInputError, match="dtype: expected one of auto, float32, bfloat16, float16"):
        VideoQA.from_pretrained(trained_llama, dtype="int8")


def test_a_visual_token_budget_picks_the_frame_count(saved_family, trained_llama):
    from videovlm.qa import VideoQA
    from videovlm.qa.budget import frames_for_budget, tokens_per_frame
    from videovlm.qa.frames import QAInputError

    ofa = VideoQA.from_pretrained(saved_family("videoofa"), max_visual_tokens=10_000)
    encoder, per_frame = ofa.model.temporal.encoder, tokens_per_frame(ofa.model)
    assert ofa.sampler_spec == "uniform:4"  # a large budget: max_frames (4) bounds it
    two = encoder.num_output_tokens(2, per_frame)
    assert VideoQA.from_pretrained(saved_family("videoofa"), max_visual_tokens=two).sampler_spec == "uniform:2"
    for frames in (1, 2, 3):  # SpatialPool: frames x pooled cells (+ CLS): exactly `frames` fit, one more does not
        budget = encoder.num_output_tokens(frames, per_frame)
        assert frames_for_budget(ofa.model, budget) == frames
        if frames > 1:
            assert frames_for_budget(ofa.model, budget - 1) == frames - 1
    # A Q-Former's output does not grow with frames: the budget either fits (max_frames) or not at all.
    llama = VideoQA.from_pretrained(trained_llama, max_visual_tokens=64)
    assert llama.sampler_spec == f"uniform:{llama.model.config.max_frames}"
    with pytest.raises(QAInputError, match="fewer than one frame's"):
        VideoQA.from_pretrained(trained_llama, max_visual_tokens=1)
