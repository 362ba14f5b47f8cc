"""Training-engine overhead and ZeRO optimizer-state memory.

    python benchmarks/train_overhead.py [--steps 30] [--threads 1] [--zero-stages 0 1 2 3] [--json out.json]

1. Steps/s of ``videovlm.train`` (the engine behind ``videovlm train``: DeepSpeed ZeRO-0,
   DataLoader, per-step loss all-reduce, JSONL + TensorBoard metrics) vs a bare PyTorch loop
   (forward, backward, AdamW step) on the same tiny Video-LLaMA (stage-1 freezing: vision tower
   and LLM frozen), the same in-memory batches (4 videos x 8 frames, 112 px) and the same
   seed. Per-step medians after one warm-up step: the engine's own step timer (``step_s`` /
   ``step_cpu_s`` in metrics.jsonl: data loading, forward/backward, DeepSpeed step, loss
   all-reduce) vs the same span of the bare loop; start-up and the stage-end save are not
   per-step costs. Wall and process CPU time (robust to other jobs on shared cores).
2. Per-rank optimizer state (the Adam moments held by the rank's optimizer) after
   one step of the tiny Llama (the Video-LLaMA preset's LLM, every parameter trainable),
   ZeRO-0/1/2/3 on 2 processes (torchrun, gloo).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGE1_TRAINABLE = ["frame_position", "temporal", "projector"]
SENTENCES = [f"a {c} {s} moves to the {d}" for c in ("red", "blue", "green") for s in ("circle", "star") for d in ("left", "right")]


def build_tokenizer(directory: Path) -> Path:
    from videovlm.models import train_tokenizer

    train_tokenizer(SENTENCES + ["what colour is the star ?", "red"], vocab_size=200).save_pretrained(directory)
    return directory


def make_items(processor, *, count: int, frames: int = 8, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    from videovlm.data.formats import VideoQA

    generator = torch.Generator().manual_seed(seed)
    items = []
    for i in range(count):
        record = VideoQA(video_id=f"v{i}", video=Path(f"v{i}.mp4"), question="what colour is the star ?", answer="red", type="color")
        pixels = torch.randint(0, 256, (frames, 112, 112, 3), dtype=torch.uint8, generator=generator)
        items.append(processor(record, pixels))
    return items


class InMemoryDataset(Dataset):
    """Pre-processed items, so both loops measure training, not decoding."""

    def __init__(self, *, processor, count: int = 64, train: bool = True, seed: int = 0):
        self.items = make_items(processor, count=count, seed=seed)
        self.pad_values = {"input_ids": processor.tokenizer.pad_token_id}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        return dict(self.items[key[1]])


def bare_loop(tokenizer_dir: Path, *, steps: int, batch_size: int, seed: int = 0) -> dict[str, float]:
    from videovlm.models import set_trainable
    from videovlm.models.presets import tiny_videollama
    from videovlm.train.data import PadCollator

    torch.manual_seed(seed)
    model = tiny_videollama(tokenizer=str(tokenizer_dir))
    set_trainable(model, STAGE1_TRAINABLE)
    model.train()
    items = make_items(model.processor, count=64, seed=seed)
    collate = PadCollator({"input_ids": model.processor.tokenizer.pad_token_id})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    walls, cpus = [], []
    for step in range(steps + 1):  # step 0 warms up
        began, cpu_began = time.perf_counter(), time.process_time()
        batch = collate([items[(step * batch_size + i) % len(items)] for i in range(batch_size)]).inputs
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step:
            walls.append(time.perf_counter() - began)
            cpus.append(time.process_time() - cpu_began)
    return {"wall_s_per_step": statistics.median(walls), "cpu_s_per_step": statistics.median(cpus)}


def engine_run(tokenizer_dir: Path, workdir: Path, *, steps: int, batch_size: int) -> dict[str, float]:
    """The engine's own per-step timings (metrics.jsonl ``step_s`` / ``step_cpu_s``: data,
    forward/backward, DeepSpeed step, loss all-reduce), median over steps 2..N+1."""
    from videovlm.train.config import validate
    from videovlm.train.engine import Trainer
    from videovlm.train.instantiate import DEFAULT_ALLOWED_PACKAGES
    from videovlm.train.metrics import read_metrics

    recipe = {
        "output_dir": str(workdir / "engine"),
        "model": {"_component_": "videovlm.models.presets.tiny_videollama", "tokenizer": str(tokenizer_dir)},
        "progress_bar": False,
        "stages": [{
            "name": "stage1",
            "steps": steps + 1,
            "lr": 1e-4,
            "micro_batch_size": batch_size,
            "trainable": STAGE1_TRAINABLE,
            "data": {"train": [{"_component_": "__main__.InMemoryDataset", "count": 64}]},
        }],
    }
    allowed = (*DEFAULT_ALLOWED_PACKAGES, "__main__")
    Trainer(validate(recipe, allowed_packages=allowed), allowed_packages=allowed).run()
    records = [r for r in read_metrics(workdir / "engine" / "stage1" / "metrics.jsonl") if "step_s" in r][1:]
    return {
        "wall_s_per_step": statistics.median(r["step_s"] for r in records),
        "cpu_s_per_step": statistics.median(r["step_cpu_s"] for r in records),
    }


# --------------------------------------------------------------------------------------
# ZeRO memory (worker runs under torchrun)


def _innermost_optimizer(optimizer):
    while not isinstance(optimizer, torch.optim.Optimizer) and hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


def memory_worker(zero_stage: int, tokenizer_dir: Path) -> None:
    import deepspeed
    from transformers import AutoTokenizer

    from videovlm.train.backbones import build_text_backbone
    from videovlm.train.config import DeepSpeedConfig, StageConfig, StageData
    from videovlm.train.data import PadCollator
    from videovlm.train.deepspeed_config import build_deepspeed_config
    from videovlm.train.distributed import init_distributed

    dist = init_distributed()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model = build_text_backbone(tokenizer, objective="causal")  # the tiny Llama, every parameter trainable
    total = sum(p.numel() for p in model.parameters())
    stage = StageConfig(name="memory", steps=1, lr=1e-4, data=StageData(train=[]), micro_batch_size=2)
    ds_config = build_deepspeed_config(DeepSpeedConfig(zero_stage=zero_stage), stage, world_size=dist.world_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config, dist_init_required=False)
    items = [model.processor(text, torch.Generator().manual_seed(i)) for i, text in enumerate(SENTENCES[2 * dist.rank : 2 * dist.rank + 2])]
    batch = PadCollator({"input_ids": tokenizer.pad_token_id})(items).inputs
    engine.backward(engine(**batch).loss)
    engine.step()
    inner = _innermost_optimizer(engine.optimizer)
    moments = sum(t.numel() * t.element_size() for state in inner.state.values() for t in state.values() if torch.is_tensor(t) and t.ndim > 0)
    report = {"rank": dist.rank, "adam_moments_mb": moments / 2**20}
    gathered = [None] * dist.world_size
    torch.distributed.all_gather_object(gathered, report)
    if dist.is_main:
        print("MEMORY " + json.dumps({"zero_stage": zero_stage, "parameters": total, "ranks": gathered}))


def zero_memory(tokenizer_dir: Path, stages: list[int]) -> list[dict]:
    results = []
    for stage in stages:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                   str(Path(__file__).resolve()), "--memory-worker", str(stage), "--tokenizer", str(tokenizer_dir)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
        lines = [line for line in done.stdout.splitlines() if line.startswith("MEMORY ")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"ZeRO-{stage} memory worker failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        results.append(json.loads(lines[0][len("MEMORY ") :]))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after one warm-up step)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--zero-stages", type=int, nargs="*", default=[0, 1, 2, 3])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (1: CPU time comparable on shared cores)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--memory-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_worker is not None:
        memory_worker(args.memory_worker, args.tokenizer)
        return 0
    with tempfile.TemporaryDirectory(prefix="videovlm_bench_") as tmp:
        workdir = Path(tmp)
        tokenizer_dir = build_tokenizer(workdir / "tokenizer")
        bare = bare_loop(tokenizer_dir, steps=args.steps, batch_size=args.batch_size)
        engine = engine_run(tokenizer_dir, workdir, steps=args.steps, batch_size=args.batch_size)
        memory = zero_memory(tokenizer_dir, args.zero_stages) if args.zero_stages else []
    results = {
        "steps": args.steps,
        "batch": f"{args.batch_size} x 8 frames x 112 px, tiny Video-LLaMA stage 1 (vision + LLM frozen)",
        "bare": bare,
        "engine": engine,
        "overhead_wall": engine["wall_s_per_step"] / bare["wall_s_per_step"] - 1,
        "overhead_cpu": engine["cpu_s_per_step"] / bare["cpu_s_per_step"] - 1,
        "zero_memory": memory,
    }
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
