"""Build a tiny Video-LLaMA under a DeepSpeed stage, run one forward, write what it computed.

    python -m torch.distributed.run --nproc_per_node 2 tests/train/zero3_build.py OUT --zero 3 [--family DIR]

Without ``--family`` the model comes from the recipe builder with the tiny pretrained backbones
loaded from their folders (``videovlm/assets/backbones``); with it, from a saved family folder
(a later stage's ``from_pretrained``). Built the way the engine builds a stage (inside
``transformers_zero3`` of the stage's DeepSpeed config), wrapped by ``deepspeed.initialize``,
then one forward in eval mode on a fixed batch. Rank 0 writes ``OUT/result.json`` (loss, and
per rank the bytes of parameters held after building) and ``OUT/state.safetensors`` (every
weight, gathered).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKBONES = REPO_ROOT / "videovlm" / "assets" / "backbones"


def fixed_batch(model):
    import torch

    from videovlm.data.formats import VideoQA

    generator = torch.Generator().manual_seed(7)
    frames = torch.randint(0, 256, (8, 64, 64, 3), dtype=torch.uint8, generator=generator)
    items = [
        model.processor(VideoQA("v0", Path("v0.mp4"), "what colour is the circle?", "red", "color"), frames=frames[:6]),
        model.processor(VideoQA("v1", Path("v1.mp4"), "which way does the square move?", "left", "direction"), frames=frames),
    ]
    return model.processor.collate(items)


def build(family: Path | None):
    from videovlm.models import VideoLlamaModel
    from videovlm.recipes.builders import tiny_videollama_model

    if family is not None:
        return VideoLlamaModel.from_pretrained(family)
    llm = BACKBONES / "llm"
    temporal = {"_component_": "videovlm.models.temporal.InstructVideoQFormer", "num_queries": 4, "max_frames": 8, "num_layers": 1, "num_heads": 4}
    return tiny_videollama_model(tokenizer=llm, vision=BACKBONES / "conv_tower", llm=llm, temporal=temporal, lora={"r": 4, "alpha": 8}, max_frames=8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--zero", type=int, default=3)
    parser.add_argument("--family", type=Path)
    parser.add_argument("--save-family", type=Path, help="also save the built model here (save_pretrained)")
    args = parser.parse_args()

    from videovlm.train.distributed import init_distributed

    dist = init_distributed()
    import deepspeed
    import torch
    from safetensors.torch import save_file

    from videovlm.models import set_trainable
    from videovlm.models.partitioned import gathered, parameter_bytes
    from videovlm.train.zero3 import transformers_zero3

    ds_config = {
        "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "train_batch_size": dist.world_size,
        "zero_optimization": {"stage": args.zero}, "zero_allow_untested_optimizer": True, "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
    }
    torch.manual_seed(0)
    with transformers_zero3(ds_config):
        model = build(args.family)
        if args.save_family is not None:
            model.save_pretrained(args.save_family)
        held, full = parameter_bytes(model.parameters())
        set_trainable(model, ["projector"])
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config, dist_init_required=False)
        engine.eval()
        with torch.no_grad():
            loss = float(engine(**fixed_batch(model)).loss)
        held_per_rank = [None] * dist.world_size
        torch.distributed.all_gather_object(held_per_rank, held)
        with gathered(list(model.parameters())):
            state = {n: t.detach().clone().contiguous() for n, t in model.state_dict().items()}
    if dist.is_main:
        args.out.mkdir(parents=True, exist_ok=True)
        save_file(state, str(args.out / "state.safetensors"))
        result = {"loss": loss, "held_bytes_per_rank": held_per_rank, "full_bytes": full, "world_size": dist.world_size}
        (args.out / "result.json").write_text(json.dumps(result, indent=1))
    torch.distributed.barrier()


if __name__ == "__main__":
    main()
