"""Per-rank memory of a ~1B Video-LLaMA family at 2 ranks: ZeRO-3 partitioned construction vs ZeRO-2.

    python benchmarks/zero3_memory.py [--workdir DIR] [--layers 19] [--precision bf16]

Uses ``benchmarks/loading.py``'s models (kept in --workdir): a family model with a Llama-config
LLM of ~0.95B parameters saved in bf16, and the same LLM alone in transformers format. Two ways
a stage builds its model, each at ZeRO-2 and ZeRO-3 on 2 ranks (torchrun, gloo, CPU):

- ``recipe``: a family config naming the LLM folder (``LanguageModelConfig(pretrained=...)``),
  the LLM loaded with transformers' ``from_pretrained`` (the first stage of a recipe);
- ``family``: ``VideoLlamaModel.from_pretrained`` of the saved family (a later stage).

Each rank builds the model the way the engine does (inside ``transformers_zero3`` of the
stage's DeepSpeed config), wraps it with ``deepspeed.initialize`` (the projection trained, the
LLM frozen, as in Video-LLaMA's stages) and runs one optimizer step on a 2-frame QA item.

Per rank it reports the parameter bytes it holds after ``deepspeed.initialize`` and its peak
memory above the same process before building (imports and process group already there), over
building, wrapping and the step:
- **peak anonymous memory** (RssAnon, sampled every 2 ms; the comparison uses the larger of
  the two ranks): what the rank's own tensors occupy, which on a GPU is the device memory. It
  leaves out the page cache of the mmapped checkpoint: under ZeRO-2 rank 0 keeps its weights
  there (rank 1 receives them by broadcast, into its own memory, so it shows them), and under
  ZeRO-3 rank 0 reads every tensor through it while loading and broadcasts it;
- VmHWM: the kernel's peak RSS, that page cache included.
Both stages run with ``MALLOC_MMAP_THRESHOLD_=131072``, so that large blocks freed by glibc go
back to the OS and RSS shows what is held rather than a fragmented heap.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))


def hwm_kb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


class AnonPeak:
    """Peak anonymous RSS (RssAnon: the process's own memory, not the page cache of the mmapped
    checkpoint that VmHWM also counts), sampled every 2 ms in a thread."""

    def __init__(self):
        import threading

        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def now_kb() -> int:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        raise RuntimeError("no RssAnon in /proc/self/status")

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.now_kb())

    def reset(self) -> None:
        self.peak = self.now_kb()

    def read(self) -> int:
        self.peak = max(self.peak, self.now_kb())
        return self.peak


def worker(args) -> None:
    """One rank: build, wrap, step; rank 0 prints every rank's numbers as JSON."""
    from videovlm.train.distributed import init_distributed

    dist = init_distributed()
    import deepspeed
    import torch

    from videovlm.data.formats import VideoQA
    from videovlm.models import VideoLlamaModel, set_trainable
    from videovlm.models.configs import config_from_dict
    from videovlm.models.base import read_config_json
    from videovlm.models.partitioned import local_bytes
    from videovlm.train.zero3 import transformers_zero3

    ds_config = {
        "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "train_batch_size": dist.world_size,
        "zero_optimization": {"stage": args.zero}, "bf16": {"enabled": args.precision == "bf16"},
        "zero_allow_untested_optimizer": True, "zero_force_ds_cpu_optimizer": False, "steps_per_print": 10**9,
    }
    ds_config["zero_optimization"].update(json.loads(os.environ.get("ZERO_EXTRA", "{}")))
    torch.manual_seed(0)
    torch.distributed.barrier()
    anon = AnonPeak()
    anon.reset()
    base, anon_base = hwm_kb(), anon.now_kb()
    construction = contextlib.nullcontext() if args.whole else transformers_zero3(ds_config)
    with construction:
        if args.mode == "family":
            model = VideoLlamaModel.from_pretrained(args.family)
        else:  # the saved family's config with its LLM named by folder, as a recipe names it
            data = read_config_json(args.family)
            data["llm"] = {**data["llm"], "hf_config": None, "pretrained": str(args.llm), "dtype": "bfloat16"}
            config = config_from_dict(VideoLlamaModel.CONFIG_CLASS, data, where="benchmark")
            model = VideoLlamaModel(config)  # the tokenizer too comes from the LLM folder
        built, anon_built = hwm_kb(), anon.read()
        set_trainable(model, ["projector"])
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config, dist_init_required=False)
        held = local_bytes(model)
        wrapped, anon_wrapped = hwm_kb(), anon.read()
        frames = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        batch = model.processor.collate([model.processor(VideoQA("v", Path("v.mp4"), "what colour is the circle?", "red", "color"), frames=frames)])
        torch.manual_seed(1)  # the same dropout masks at both stages: a family model gives the same loss
        loss = engine(**batch).loss
        engine.backward(loss)
        engine.step()
    peak, anon_peak = hwm_kb(), anon.read()
    rows = [None] * dist.world_size
    row = {"rank": dist.rank, "base_kb": base, "built_kb": built, "wrapped_kb": wrapped, "peak_kb": peak,
           "anon_base_kb": anon_base, "anon_built_kb": anon_built, "anon_wrapped_kb": anon_wrapped, "anon_peak_kb": anon_peak, "held_bytes": held, "loss": float(loss)}
    torch.distributed.all_gather_object(rows, row)
    if dist.is_main:
        print("RESULT " + json.dumps(rows))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(mode: str, zero: int, *, family: Path, llm: Path, precision: str, whole: bool = False) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), __file__,
               "--worker", "--mode", mode, "--zero", str(zero), "--family", str(family), "--llm", str(llm), "--precision", precision]
    command += ["--whole"] if whole else []
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{mode} ZeRO-{zero}: failed\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("benchmark_loading"))
    parser.add_argument("--layers", type=int, default=19)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["recipe", "family"], help=argparse.SUPPRESS)
    parser.add_argument("--zero", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--family", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--llm", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from loading import build, folder_bytes

    args.workdir.mkdir(parents=True, exist_ok=True)
    family, llm = build(args.workdir, args.layers)
    gib = 2**30
    print(f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} cores; 2 ranks (torchrun, gloo, CPU), precision {args.precision}; "
          f"family checkpoint {folder_bytes(family, 'model*.safetensors') / gib:.2f} GiB")
    print("| build | ZeRO | params held per rank GiB | peak anonymous memory, rank 0 / 1, GiB | ZeRO-3 / ZeRO-2 | VmHWM above start, rank 0 / 1, GiB | loss |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    # ZeRO-3 "built whole": the model built on every rank and partitioned by deepspeed.initialize (before this change)
    runs = [("recipe", 2, False), ("recipe", 3, False), ("recipe", 3, True), ("family", 2, False), ("family", 3, False)]
    zero2: dict[str, int] = {}
    for mode, zero, whole in runs:
        rows = launch(mode, zero, family=family, llm=llm, precision=args.precision, whole=whole)
        anon = [(r["anon_peak_kb"] - r["anon_base_kb"]) * 1024 for r in rows]
        hwm = [(r["peak_kb"] - r["base_kb"]) * 1024 for r in rows]
        if zero == 2:
            zero2[mode] = max(anon)
        ratio = f"{max(anon) / zero2[mode]:.2f}x" if zero == 3 else ""
        held = max(r["held_bytes"] for r in rows)
        label = f"{zero}, built whole" if whole else str(zero)
        print(f"| {mode} | {label} | {held / gib:.2f} | {' / '.join(f'{a / gib:.2f}' for a in anon)} | {ratio} | "
              f"{' / '.join(f'{h / gib:.2f}' for h in hwm)} | {rows[0]['loss']:.4f} |", flush=True)

if __name__ == "__main__":
    main()
