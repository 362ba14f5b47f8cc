"""``videovlm train --dry-run``: the resolved plan of a recipe, without training.

Builds the model once on CPU (parameter counts per stage's trainable parts) and the
datasets (item counts), generates each stage's DeepSpeed JSON, and prints it all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from videovlm.train.config import TrainConfig
from videovlm.train.deepspeed_config import build_deepspeed_config
from videovlm.train.distributed import detect_launcher
from videovlm.train.engine import seed_everything
from videovlm.train.instantiate import DEFAULT_ALLOWED_PACKAGES, instantiate
from videovlm.train.memory_estimate import format_estimate, model_states_estimate
from videovlm.train.parts import apply_trainable_parts, model_processor, parameter_counts
from videovlm.train.stages import build_datasets


def build_plan(config: TrainConfig, *, allowed_packages: Sequence[str] = DEFAULT_ALLOWED_PACKAGES) -> dict[str, Any]:
    """Everything ``videovlm train`` would do, as JSON-able data."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    seed_everything(config.seed)
    model = instantiate(config.model, allowed_packages=allowed_packages)
    processor = model_processor(model)
    stages = []
    for stage in config.stages:
        parts = apply_trainable_parts(model, stage.trainable)
        data = {}
        for split, train in (("train", True), ("val", False)):
            components = getattr(stage.data, split)
            built = build_datasets(components, processor=processor, train=train, seed=config.seed, allowed_packages=allowed_packages)
            data[split] = [{"component": c["_component_"], "items": len(d) if hasattr(d, "__len__") else f"{len(d.urls)} shards, streamed"} for c, d in zip(components, built)]
        global_batch = stage.micro_batch_size * stage.gradient_accumulation_steps * world_size
        stages.append({
            "name": stage.name,
            "steps": stage.steps,
            "lr": stage.lr,
            "schedule": f"linear warmup {stage.warmup_steps} steps, cosine to {stage.min_lr_ratio} x lr",
            "batch": f"{stage.micro_batch_size} per rank x {stage.gradient_accumulation_steps} accumulation x {world_size} ranks = {global_batch}",
            "trainable_parts": parts,
            "parameters": parameter_counts(model),
            "data": data,
            "data_weights": stage.data.weights,
            "deepspeed": build_deepspeed_config(config.deepspeed, stage, world_size=world_size),
            "memory": model_states_estimate(model, config.deepspeed, world_size=world_size, num_nodes=int(os.environ.get("NNODES", "1"))),
        })
    return {
        "output_dir": str(config.output_dir),
        "launcher": detect_launcher(),
        "world_size": world_size,
        "model": {"component": config.model["_component_"], "class": f"{type(model).__module__}.{type(model).__qualname__}"},
        "optimizer": config.optimizer,
        "resume": config.resume,
        "stages": stages,
    }


def format_plan(plan: dict[str, Any]) -> str:
    lines = [
        f"output_dir: {plan['output_dir']}",
        f"launcher: {plan['launcher']}, world size {plan['world_size']}, resume={plan['resume']}",
        f"model: {plan['model']['component']} -> {plan['model']['class']}",
        f"optimizer: {json.dumps(plan['optimizer'])}",
    ]
    for i, stage in enumerate(plan["stages"]):
        counts = stage["parameters"]
        lines += [
            f"stage {i + 1}/{len(plan['stages'])} {stage['name']!r}: {stage['steps']} steps, lr {stage['lr']:g}, {stage['schedule']}",
            f"  batch: {stage['batch']}",
            f"  trainable parts: {', '.join(stage['trainable_parts'])}",
            f"  parameters: {counts['trainable']:,} trainable, {counts['frozen']:,} frozen ({counts['total']:,} total)",
        ]
        for split, datasets in stage["data"].items():
            for d in datasets:
                lines.append(f"  data.{split}: {d['component']} ({d['items']} items)")
        if stage["data_weights"] is not None:
            lines.append(f"  data.weights: {stage['data_weights']}")
        lines.append("  deepspeed: " + json.dumps(stage["deepspeed"], sort_keys=True))
        lines.append("  " + format_estimate(stage["memory"]))
    return "\n".join(lines)
