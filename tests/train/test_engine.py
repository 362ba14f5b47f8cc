"""End-to-end runs of ``videovlm train`` in subprocesses (real DeepSpeed, gloo, real videos).

DeepSpeed start-up dominates the cost, so a few runs are shared across many assertions:
a two-stage single-process reference; the same run SIGKILLed after step 5 and resumed;
ZeRO-2 and ZeRO-3 on two processes under torchrun; a run that trips max_skip_fraction.
"""

from __future__ import annotations

import json
import math
import socket
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train.conftest import killing_launcher, run_train, train_env
from tests.train.tiny import TinyVideoClassifier
from videovlm.train.metrics import read_metrics

pytestmark = pytest.mark.slow


def losses(run_dir: Path, stage: str) -> list[tuple[int, float | None, float | None]]:
    return [(r["step"], r.get("loss"), r.get("eval_loss")) for r in read_metrics(run_dir / stage / "metrics.jsonl")]


def check_ok(result) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"


@pytest.fixture(scope="module")
def reference(recipe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    check_ok(run_train(recipe, f"output_dir={out}", env=train_env(out.parent)))
    return out


def test_two_stage_run_outputs(reference):
    for stage, steps in (("first", 6), ("second", 4)):
        curve = losses(reference, stage)
        assert [s for s, loss, _ in curve if loss is not None] == list(range(1, steps + 1))
        assert all(math.isfinite(loss) for _, loss, _ in curve if loss is not None)
        # keep_last=2 of the checkpoints every 2 steps (the stage-end one included)
        assert sorted(p.name for p in (reference / stage).glob("checkpoint-*")) == [f"checkpoint-{steps - 2}", f"checkpoint-{steps}"]
        assert (reference / stage / "loss_curve.png").stat().st_size > 1000
        assert list((reference / "tensorboard" / stage).glob("events.out.tfevents.*"))
        marker = json.loads((reference / stage / "final" / "training_stage.json").read_text())
        assert marker["model_class"] == "tests.train.tiny.TinyVideoClassifier"
    assert losses(reference, "first")[-1][2] is not None  # eval loss on the validation split
    # the second stage's forward_kwargs reach its forwards, the first's do not
    assert all(value >= 100.0 for _, loss, ev in losses(reference, "second") for value in (loss, ev) if value is not None)
    assert all(value < 100.0 for _, loss, ev in losses(reference, "first") for value in (loss, ev) if value is not None)
    # Everything we write is safetensors / JSON / PNG / TensorBoard; DeepSpeed's own
    # optimizer files live apart under deepspeed/.
    ours = [p for p in reference.rglob("*") if p.is_file() and "deepspeed" not in p.parts and "tensorboard" not in p.parts]
    assert {p.suffix for p in ours} == {".safetensors", ".json", ".jsonl", ".png"}
    state = json.loads((reference / "first" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["world_size"] == 1 and state["data_position"] == {"epoch": 1, "batch_in_epoch": 2}
    assert state["loss_history"] == [[s, loss] for s, loss, _ in losses(reference, "first") if loss is not None]


def test_stages_switch_trainable_parts_and_hand_on_weights(reference):
    torch.manual_seed(0)  # the engine seeds seed + stage index before building stage 0's model
    initial = TinyVideoClassifier(hidden=16, dropout=0.1).state_dict()
    first = load_file(str(reference / "first" / "final" / "model.safetensors"))
    second = load_file(str(reference / "second" / "final" / "model.safetensors"))
    checkpoint = load_file(str(reference / "first" / "checkpoint-6" / "model.safetensors"))
    for name in first:
        assert torch.equal(first[name], checkpoint[name])
        trained_in_first = name.startswith(("encoder.", "head."))
        assert torch.equal(first[name], initial[name]) != trained_in_first, name
        assert torch.equal(second[name], first[name]) == trained_in_first, name  # second trains only temporal


def test_skipped_videos_are_counted_and_logged(reference):
    skipped = [json.loads(line) for line in (reference / "first" / "skipped_rank0.jsonl").read_text().splitlines()]
    assert skipped and all(item["path"].endswith("clip015.mp4") for item in skipped)
    assert "VideoDecodeError" in skipped[0]["reason"]
    last = [r for r in read_metrics(reference / "first" / "metrics.jsonl") if "loss" in r][-1]
    assert last["skipped_total"] == len(skipped) and last["seen_total"] == 6 * 4


def test_sigkill_then_resume_is_bit_identical(recipe, reference, tmp_path):
    out = tmp_path / "run"
    env = train_env(tmp_path)
    killed = run_train(recipe, f"output_dir={out}", env=env, launcher=killing_launcher(5))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (out / "first" / "checkpoint-4").is_dir() and not (out / "first" / "final").exists()
    assert len(losses(out, "first")) == 5  # step 5 was logged by the killed run, after checkpoint-4
    check_ok(run_train(recipe, f"output_dir={out}", "resume=true", env=env))
    for stage in ("first", "second"):
        assert losses(out, stage) == losses(reference, stage)  # exact float equality, step by step
    resumed = load_file(str(out / "second" / "final" / "model.safetensors"))
    expected = load_file(str(reference / "second" / "final" / "model.safetensors"))
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)


def test_too_many_skipped_stops_with_a_clear_error(recipe, tmp_path):
    out = tmp_path / "run"
    result = run_train(recipe, f"output_dir={out}", "max_skip_fraction=0.01", "skip_check_after=8", "stages.0.steps=4", env=train_env(tmp_path))
    assert result.returncode == 1
    assert "TooManySkippedError" in result.stderr and "max_skip_fraction=0.01" in result.stderr and "skipped_rank*.jsonl" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_zero2_and_zero3_on_two_processes_match_one_process(recipe, tmp_path):
    no_dropout = ["model.dropout=0.0"]
    single = tmp_path / "single"
    check_ok(run_train(recipe, f"output_dir={single}", *no_dropout, env=train_env(tmp_path)))
    runs = {}
    for zero in (2, 3):
        out = tmp_path / f"zero{zero}"
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m"]
        # one process with accumulation 2 == two processes with accumulation 1 (same global batches)
        overrides = [f"output_dir={out}", f"deepspeed.zero_stage={zero}", "stages.0.gradient_accumulation_steps=1", "stages.1.gradient_accumulation_steps=1"]
        check_ok(run_train(recipe, *overrides, *no_dropout, env=train_env(tmp_path), launcher=launcher))
        runs[zero] = out
        assert {p.name for p in (out / "first" / "checkpoint-6").iterdir()} >= {"rng_state_rank0.safetensors", "rng_state_rank1.safetensors", "model.safetensors"}
    for stage in ("first", "second"):
        expected = losses(single, stage)
        for zero, out in runs.items():
            got = losses(out, stage)
            assert [s for s, _, _ in got] == [s for s, _, _ in expected]
            for (_, loss, eval_loss), (_, ref_loss, ref_eval) in zip(got, expected):
                assert (loss if loss is not None else eval_loss) == pytest.approx(ref_loss if ref_loss is not None else ref_eval, rel=1e-5), (zero, stage)
    # ZeRO-3 shards were consolidated into a full state dict on save
    full = load_file(str(runs[3] / "second" / "final" / "model.safetensors"))
    ref = load_file(str(single / "second" / "final" / "model.safetensors"))
    assert {k: v.shape for k, v in full.items()} == {k: v.shape for k, v in ref.items()}
    assert all(torch.allclose(full[k], ref[k], atol=1e-5) for k in ref)


def test_two_process_zero2_sigkill_then_resume_is_bit_identical(recipe, tmp_path):
    """Both ranks of a 2-process ZeRO-2 run SIGKILLed after step 5 (checkpoint-4 on disk),
    then resumed on 2 processes: every loss and the final weights equal the uninterrupted
    2-process run's bit for bit (the kill is injected from outside the engine)."""
    env = train_env(tmp_path)
    overrides = ["deepspeed.zero_stage=2", "stages.0.gradient_accumulation_steps=1", "stages.1.gradient_accumulation_steps=1"]

    def torchrun(*script: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()), *script]

    reference, out = tmp_path / "reference", tmp_path / "run"
    check_ok(run_train(recipe, f"output_dir={reference}", *overrides, env=env, launcher=torchrun("-m")))
    killed = run_train(recipe, f"output_dir={out}", *overrides, env=env, launcher=torchrun(*killing_launcher(5)[1:]))
    assert killed.returncode != 0
    assert (out / "first" / "checkpoint-4").is_dir() and not (out / "first" / "final").exists()
    check_ok(run_train(recipe, f"output_dir={out}", "resume=true", *overrides, env=env, launcher=torchrun("-m")))
    for stage in ("first", "second"):
        assert losses(out, stage) == losses(reference, stage)
    resumed = load_file(str(out / "second" / "final" / "model.safetensors"))
    expected = load_file(str(reference / "second" / "final" / "model.safetensors"))
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)


def test_zero2_resumes_on_another_number_of_processes(recipe, tmp_path):
    """A ZeRO-2 checkpoint of 2 processes continues on 1 (and one of 1 on 2), same global
    batch (accumulation 1 x 2 ranks = 2 x 1 rank): DeepSpeed re-partitions the elastic
    optimizer state, and the losses equal the uninterrupted run's to 1e-5 (no dropout: a new
    world size gets new RNG streams)."""
    env = train_env(tmp_path)
    common = ["model.dropout=0.0", "deepspeed.zero_stage=2"]
    one = ["stages.0.gradient_accumulation_steps=2", "stages.1.gradient_accumulation_steps=2"]
    two = ["stages.0.gradient_accumulation_steps=1", "stages.1.gradient_accumulation_steps=1"]

    def torchrun(*script: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()), *script]

    reference = tmp_path / "reference"
    check_ok(run_train(recipe, f"output_dir={reference}", *common, *one, env=env))
    for saved, resumed in (("two", "one"), ("one", "two")):
        out = tmp_path / f"{saved}_to_{resumed}"
        kill = killing_launcher(5)
        launcher = torchrun(*kill[1:]) if saved == "two" else kill
        killed = run_train(recipe, f"output_dir={out}", *common, *(two if saved == "two" else one), env=env, launcher=launcher)
        assert killed.returncode != 0 and (out / "first" / "checkpoint-4").is_dir()
        again = torchrun("-m") if resumed == "two" else None
        check_ok(run_train(recipe, f"output_dir={out}", "resume=true", *common, *(two if resumed == "two" else one), env=env, launcher=again))
        for stage in ("first", "second"):
            got, expected = losses(out, stage), losses(reference, stage)
            assert [s for s, _, _ in got] == [s for s, _, _ in expected]
            for (_, loss, eval_loss), (_, ref_loss, ref_eval) in zip(got, expected):
                assert (loss if loss is not None else eval_loss) == pytest.approx(ref_loss if ref_loss is not None else ref_eval, rel=1e-5, abs=1e-6), (saved, stage)


def test_checkpoints_without_the_full_optimizer_resume_on_their_own_world_size_only(recipe, tmp_path):
    """elastic_checkpoints=false: no optimizer_full.safetensors is written, and a resume on
    another number of processes is refused, saying why."""
    env = train_env(tmp_path)
    common = ["model.dropout=0.0", "deepspeed.zero_stage=2", "elastic_checkpoints=false"]
    out = tmp_path / "run"
    killed = run_train(recipe, f"output_dir={out}", *common, "stages.0.gradient_accumulation_steps=2", env=env, launcher=killing_launcher(5))
    assert killed.returncode != 0 and (out / "first" / "checkpoint-4").is_dir()
    assert not (out / "first" / "checkpoint-4" / "optimizer_full.safetensors").exists()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m"]
    again = run_train(recipe, f"output_dir={out}", "resume=true", *common, "stages.0.gradient_accumulation_steps=1", env=env, launcher=torchrun)
    assert again.returncode != 0 and "saved with elastic_checkpoints=false" in again.stderr


def test_a_world_size_change_that_cannot_continue_is_refused(tmp_path):
    """ZeRO-3 (parameters partitioned by rank) and another global batch (the data position
    would move) are refused before anything loads, saying what to change."""
    from videovlm.train.checkpoint import CheckpointError, check_world_change

    state = {"world_size": 2, "zero_stage": 2, "global_batch": 8}
    assert check_world_change(tmp_path, state, world_size=2, global_batch=8) is False
    assert check_world_change(tmp_path, state, world_size=1, global_batch=8) is True
    with pytest.raises(CheckpointError, match="only ZeRO 0-2 checkpoints resume on another number of ranks"):
        check_world_change(tmp_path, {**state, "zero_stage": 3}, world_size=1, global_batch=8)
    with pytest.raises(CheckpointError, match="set gradient_accumulation_steps so that"):
        check_world_change(tmp_path, state, world_size=1, global_batch=4)
