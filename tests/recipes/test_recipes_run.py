"""Each tiny recipe trains a few steps through `videovlm train`'s engine, unchanged except for
paths and step counts; Video-LLaMA also on 2 processes with ZeRO-2 (torchrun, gloo), and its
first losses are pinned, as are VideoOFA's and VideoBERT's (torchtune-style loss regression)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.recipes.conftest import RECIPES, recipe_data, stage_overrides
from tests.train.conftest import train_env
from tests.train.test_engine import _free_port
from videovlm.train.config import validate
from videovlm.train.engine import Trainer
from videovlm.train.stages import STAGE_MARKER

# Losses of the first steps of recipes/videollama/tiny.yaml on the test fixtures (seed 0,
# untrained backbones: the conv tower and the Llama, micro batch 2): stage readout steps 0-1
# (the LLM-free answer readout of every video token), stage instruct steps 0-1 (projection + LoRA).
# Re-pinned when the recipe's temporal spec stopped being built once, and thrown away, before
# the model: the same seed now initialises the model's own encoder first.
GOLDEN_VIDEOLLAMA = {"readout": [4.976898, 5.027267], "instruct": [4.962518, 4.168206]}
# The same for recipes/videoofa/tiny.yaml (its three stages, steps 0-1; stages 2-3 start from a model
# loaded on the meta device, which draws no random numbers, so their dropout differs from before) and
# recipes/videobert/tiny.yaml (steps 0-1 of its one stage, vocabulary 2 x 3 words on 6 videos),
# both on the conv tower.
GOLDEN_VIDEOOFA = {"image": [5.210002, 4.674780], "video": [4.817800, 4.655970], "finetune": [3.793468, 3.534368]}
GOLDEN_VIDEOBERT = {"pretrain": [5.705288, 6.659665]}  # MLM targets on aligned rows only, mlm_probability 0.4


def losses(stage_dir) -> list[float]:
    rows = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def assert_golden(output_dir: Path, golden: dict[str, list[float]]) -> None:
    for stage, expected in golden.items():
        got = losses(output_dir / stage)
        assert len(got) == 2 and all(torch.isfinite(torch.tensor(got)))
        assert got == pytest.approx(expected, abs=2e-3), f"{stage}: {got}"


def train(recipe, tmp_path, mini_data, runs_dir, extra=()):
    overrides = [*stage_overrides(recipe), f"output_dir={tmp_path / 'out'}", *extra]
    config = validate(recipe_data(recipe, mini_data=mini_data, runs_dir=runs_dir, overrides=overrides))
    return config, Trainer(config).run()


@pytest.fixture(scope="module")
def videollama_run(tmp_path_factory, mini_data, runs_dir):
    tmp = tmp_path_factory.mktemp("videollama")
    config, results = train(RECIPES / "videollama" / "tiny.yaml", tmp, mini_data, runs_dir)
    return config, results


def test_videollama_tiny_trains_and_matches_golden_losses(videollama_run):
    config, results = videollama_run
    assert [r.name for r in results] == ["readout", "instruct"]
    # Trained from cached features, saved (and named for the next stage) as a plain Video-LLaMA.
    marker = json.loads((results[0].final_dir / STAGE_MARKER).read_text())
    assert marker["model_class"] == "videovlm.models.videollama.modeling.VideoLlamaModel"
    assert_golden(config.output_dir, GOLDEN_VIDEOLLAMA)
    final = results[-1].final_dir
    from videovlm.qa import VideoQA

    video = sorted((Path(config.stages[0].data.train[0]["path"]).parent.parent / "test" / "videos").glob("*.mp4"))[0]
    answer = VideoQA.from_pretrained(final).qa(video, "what colour is the circle?")
    assert isinstance(answer, str)


def test_trainable_only_sharded_finals_load_as_the_full_ones(videollama_run, tmp_path, mini_data, runs_dir):
    """``save: {trainable_only: true, max_shard_size: ...}``: stage 2 writes only its trainable
    parts, in shards, over stage 1's final/; the losses are the same and the loaded stage-2
    model equals the one saved whole."""
    from safetensors import safe_open

    from videovlm.models import load_pretrained

    recipe = RECIPES / "videollama" / "tiny.yaml"
    config, results = train(recipe, tmp_path, mini_data, runs_dir, ["save.trainable_only=true", "save.max_shard_size=100KB"])
    single, single_results = videollama_run
    assert_golden(config.output_dir, GOLDEN_VIDEOLLAMA)
    first, second = (r.final_dir for r in results)
    assert not (first / "weights_base.json").exists()  # the first stage has no base: written whole
    base = json.loads((second / "weights_base.json").read_text())
    assert base == {"base": "../../readout/final", "parts": config.stages[1].trainable}
    written = set()
    for shard in second.glob("model-*-of-*.safetensors"):
        with safe_open(str(shard), framework="pt") as handle:
            written |= set(handle.keys())
    assert config.stages[1].trainable == ["projector", "lora"]  # "lora": the adapters only, not the LLM around them
    assert {n.split(".")[0] for n in written} == {"projector", "llm"} and all("lora_" in n for n in written if n.startswith("llm."))
    full, partial = load_pretrained(single_results[1].final_dir).state_dict(), load_pretrained(second).state_dict()
    assert sorted(full) == sorted(partial) and all(torch.equal(full[n], partial[n]) for n in full)


@pytest.mark.parametrize("zero, features", [(2, "cached"), (3, "online")])
def test_videollama_two_processes(videollama_run, tmp_path, mini_data, runs_dir, zero, features):
    """torchrun --nproc_per_node 2 with ZeRO-2, and ZeRO-3 (the backbones built and loaded
    partitioned, stage 2 loading stage 1's final/ partitioned; the tower online, as a
    partitioned tower cannot fill the cache in data workers): micro batch 1 per rank = the
    single-process global batch of 2 (same items, same gradients up to weighting). The logged
    loss is the mean of the ranks' per-token means, not the batch's per-token mean, so it
    differs from the one-process loss by the answers' length imbalance (a few percent here)."""
    recipe = RECIPES / "videollama" / "tiny.yaml"
    overrides = [*stage_overrides(recipe, batch=1), f"output_dir={tmp_path / 'out'}", f"deepspeed.zero_stage={zero}", f"features={features}"]
    data = recipe_data(recipe, mini_data=mini_data, runs_dir=runs_dir, overrides=overrides)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(data))
    # train_env drops the RANK / MASTER_PORT ... that the in-process run left in os.environ.
    port = str(_free_port())
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, "-m", "videovlm", "train", str(config_file)]
    done = subprocess.run(command, env=train_env(tmp_path), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "instruct" / "final" / "model.safetensors").is_file()
    if zero == 3:  # both stages' backbones were built partitioned: rank 0 held half of them before DeepSpeed
        held = re.findall(r"built under ZeRO-3: rank 0 holds ([\d.]+) of ([\d.]+) MiB of partitioned parameters", done.stderr)
        assert len(held) == 2 and all(0.45 < float(h) / float(f) <= 0.55 and float(f) > 5 for h, f in held), held
    single, _ = videollama_run
    for stage in ("readout", "instruct"):
        assert losses(tmp_path / "out" / stage) == pytest.approx(losses(single.output_dir / stage), rel=5e-2)
        # final/ holds the whole model (under ZeRO-3: consolidated on rank 0), the frozen LLM unchanged
        saved, reference = (load_file(str(run / stage / "final" / "model.safetensors")) for run in (tmp_path / "out", single.output_dir))
        assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in reference.items()}
        frozen = [k for k in reference if k.startswith("llm.") and "lora_" not in k]
        assert frozen and all(torch.equal(saved[k], reference[k]) for k in frozen)


def test_videoofa_tiny_three_stages(tmp_path, mini_data, runs_dir):
    config, results = train(RECIPES / "videoofa" / "tiny.yaml", tmp_path, mini_data, runs_dir)
    assert [r.name for r in results] == ["image", "video", "finetune"]
    assert all(r.eval_loss is not None and r.eval_loss == r.eval_loss for r in results)
    # Stage 2 trained on its three tasks (captioning, matching, frame order) with the tower frozen.
    marker = json.loads((results[1].final_dir / STAGE_MARKER).read_text())
    assert marker["trainable"] == ["temporal", "seq2seq"] and marker["seen"] == 4
    assert_golden(config.output_dir, GOLDEN_VIDEOOFA)
    from videovlm.models import load_pretrained
    from videovlm.recipes.videoofa_eval import answer_log_likelihood, main, stage2_accuracy

    model = load_pretrained(results[1].final_dir)
    report = stage2_accuracy(model, mini_data / "train")  # 6 videos: both answers occur in the draws
    for task in ("frame_order", "matching"):
        assert (report[task]["total"], report[task]["positives"], report[task]["skipped"]) == (6, 2, 0), task
        assert report[task]["correct"] in range(7)
    # The likelihood of the true answer is the model's own loss on the item, summed.
    from videovlm.recipes.videoofa import FrameOrderDataset
    from videovlm.train.data import PadCollator

    data = FrameOrderDataset(path=mini_data / "val" / "captions.csv", processor=model.processor, sampler="uniform:8", train=False)
    inputs = PadCollator(data.pad_values)([data[(0, 0)]]).inputs
    answer = model.tokenizer.decode(inputs["labels"][0][:-1])
    with torch.no_grad():
        loss = model(**inputs).loss
    assert answer_log_likelihood(model, inputs, answer).item() == pytest.approx(-loss.item() * inputs["labels"].shape[1], rel=1e-4)
    assert main(["--model", str(results[1].final_dir), "--data", str(mini_data / "train"), "--output", str(tmp_path / "stage2.json")]) == 0
    assert json.loads((tmp_path / "stage2.json").read_text()) == report


def test_videobert_tiny_fits_vocabulary_and_evaluates(tmp_path, mini_data, runs_dir):
    from videovlm.models import load_pretrained
    from videovlm.recipes.videobert_eval import alignment_accuracy, forecast_accuracy, template_filling_accuracy, vocabulary_purity

    extra = ["model.levels=2", "model.k=3", "model.max_videos=6"]
    config, results = train(RECIPES / "videobert" / "tiny.yaml", tmp_path, mini_data, runs_dir, extra)
    assert_golden(config.output_dir, GOLDEN_VIDEOBERT)
    model = load_pretrained(results[-1].final_dir)
    assert model.config.num_visual_words == 9
    # The fitted codebook was saved: not the random init, and the test videos map to few words.
    assert model.visual_words.abs().sum() > 0
    alignment = alignment_accuracy(model, mini_data / "test", sampler="clips:1,num=8")
    filling = template_filling_accuracy(model, mini_data / "test", sampler="clips:1,num=8")
    assert alignment["total"] == 6 and 0.0 <= alignment["accuracy"] <= 1.0
    assert filling["overall"]["total"] == filling["color"]["total"] + filling["shape"]["total"] > 0
    forecast = forecast_accuracy(model, mini_data / "test", frequency_split=mini_data / "train", sampler="clips:1,num=8")
    assert {r["total"] for r in forecast.values()} == {3}  # one next clip per test video
    assert forecast["top1"]["correct"] <= forecast["top5"]["correct"]
    purity = vocabulary_purity(model, mini_data / "test", sampler="clips:1,num=8")
    assert purity["frames"] == 24 and 1 <= purity["words_used"] <= 9
    for kind in ("objects", "colours", "shapes"):  # a word's majority is at least the global one's share
        assert purity[kind]["baseline"] <= purity[kind]["purity"] <= 1.0
    # one word for everything: purity is exactly the most common set's share
    model.visual_words.copy_(model.visual_words[:1].expand_as(model.visual_words))
    single = vocabulary_purity(model, mini_data / "test", sampler="clips:1,num=8")
    assert single["words_used"] == 1 and all(single[k]["purity"] == single[k]["baseline"] for k in ("objects", "colours", "shapes"))
