"""Inference that scales: batch QA split across torchrun processes gives the one-process file;
``--dtype`` casts the model."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import torch

from tests.qa.conftest import QUESTION, micro_vision
from transformers import LlamaConfig

from videovlm.qa.dispatch import parse_max_memory
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


@pytest.fixture(scope="module")
def deep_llm_model(tokenizer, tmp_path_factory):
    """A micro Video-LLaMA whose LLM (6 layers of 128) outweighs the rest, saved (untrained)."""
    from videovlm.models import LanguageModelConfig, VideoLlamaConfig, VideoLlamaModel

    llama = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=6, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    temporal = {"_component_": "videovlm.models.temporal.VideoQFormer", "num_queries": 2, "max_frames": 4, "num_layers": 1, "num_heads": 2}
    config = VideoLlamaConfig(vision=micro_vision(), llm=LanguageModelConfig(hf_config=llama.to_dict()), temporal=temporal, max_frames=4)
    torch.manual_seed(0)
    return VideoLlamaModel(config, tokenizer=tokenizer).save_pretrained(tmp_path_factory.mktemp("deep") / "final")


def test_device_map_offloads_what_does_not_fit_and_answers_the_same(deep_llm_model, clips, tmp_path):
    """--device-map with a CPU budget of the family's parts and half the LLM: accelerate keeps
    those on the CPU, puts the other LLM layers on the disk (read back every forward), and the
    answers are the ones of the model loaded whole."""
    from videovlm.cli import main
    from videovlm.qa import VideoQA
    from videovlm.qa.frames import QAInputError

    reference = VideoQA.from_pretrained(deep_llm_model, sampler="uniform:2")

    def size(module):
        return sum(p.numel() * p.element_size() for p in module.parameters())

    layer = size(reference.model.llm.model.layers[0])  # accelerate keeps room for the largest unsplit part
    budget = size(reference.model) - size(reference.model.llm) // 2 + layer
    offload = tmp_path / "offload"
    vqa = VideoQA.from_pretrained(deep_llm_model, sampler="uniform:2", device_map="sequential", max_memory={"cpu": budget}, offload_folder=offload)
    placement = vqa.model.hf_device_map
    assert set(placement.values()) == {"cpu", "disk"} and placement["vision"] == placement["temporal"] == "cpu", placement
    on_disk = [name for name, device in placement.items() if device == "disk"]
    assert on_disk and all(name.startswith("llm.") for name in on_disk), placement
    assert any(p.suffix == ".dat" for p in offload.iterdir())
    for colour in ("red", "blue"):
        assert vqa.qa(clips[colour], QUESTION) == reference.qa(clips[colour], QUESTION)
    out = tmp_path / "cli_offload"
    command = ["qa", "--model", str(deep_llm_model), "--video", str(clips["blue"]), "--question", QUESTION, "--sampler", "uniform:2",
               "--device-map", "sequential", "--max-memory", f"cpu={budget}", "--offload-folder", str(out)]
    assert main(command) == 0 and any(p.suffix == ".dat" for p in out.iterdir())
    with pytest.raises(QAInputError, match="needs an offload folder"):
        VideoQA.from_pretrained(deep_llm_model, device_map="sequential", max_memory={"cpu": budget})
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(QAInputError, match="not an earlier offload folder"):
        VideoQA.from_pretrained(deep_llm_model, device_map="sequential", max_memory={"cpu": budget}, offload_folder=tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(QAInputError, match="holds other files"):  # an offload folder the user added a file to
        VideoQA.from_pretrained(deep_llm_model, device_map="sequential", max_memory={"cpu": budget}, offload_folder=out)
    (out / "mine.txt").unlink()
    assert main(command) == 0  # an earlier offload folder: its files are replaced
    with pytest.raises(QAInputError, match="give device_map"):
        VideoQA.from_pretrained(deep_llm_model, max_memory={"cpu": budget})


def test_device_map_refuses_bad_budgets_folders_and_torchrun(deep_llm_model, tmp_path, monkeypatch):
    from videovlm.qa import VideoQA
    from videovlm.qa.frames import QAInputError

    with pytest.raises(QAInputError, match="--max-memory: expected DEVICE=AMOUNT"):
        parse_max_memory("lots")
    assert parse_max_memory("0=20GiB,cpu=60GiB") == {0: "20GiB", "cpu": "60GiB"}
    with pytest.raises(QAInputError, match="max_memory: cpu='lots' is not an amount"):
        VideoQA.from_pretrained(deep_llm_model, device_map="auto", max_memory={"cpu": "lots"})
    if not torch.cuda.is_available():
        with pytest.raises(QAInputError, match="max_memory: no device 0 here"):
            VideoQA.from_pretrained(deep_llm_model, device_map="auto", max_memory={0: "1GiB"})
    # A folder of the user's own .dat files (no accelerate index) is never emptied.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.dat").write_text("keep me")
    with pytest.raises(QAInputError, match="not an earlier offload folder"):
        VideoQA.from_pretrained(deep_llm_model, device_map="sequential", max_memory={"cpu": 1_000_000}, offload_folder=mine)
    assert (mine / "data.dat").read_text() == "keep me"
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(QAInputError, match="under torchrun give each process its own device"):
        VideoQA.from_pretrained(deep_llm_model, device_map="auto")
