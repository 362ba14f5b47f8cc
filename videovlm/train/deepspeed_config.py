"""The DeepSpeed JSON of a stage, generated from the recipe (or read from a given file).

The optimizer and the warmup + cosine schedule are *client* objects (a torch optimizer and
a ``LambdaLR``, see ``videovlm.train.engine``), so DeepSpeed never JIT-compiles an Adam
kernel and the scheduler state is a plain ``state_dict`` that resumes exactly.
"""

from __future__ import annotations

import json
from typing import Any

from videovlm.train.config import ConfigError, DeepSpeedConfig, StageConfig

# Large enough that DeepSpeed's own step logging never fires: the engine logs metrics itself.
_QUIET_STEPS = 10**9


def build_deepspeed_config(ds: DeepSpeedConfig, stage: StageConfig, *, world_size: int) -> dict[str, Any]:
    """DeepSpeed config dict for one stage on ``world_size`` data-parallel ranks."""
    if ds.config_file is not None:
        try:
            config = json.loads(ds.config_file.read_text())
        except json.JSONDecodeError as error:
            raise ConfigError([f"deepspeed.config_file: {ds.config_file}: invalid JSON: {error}"]) from None
        if not isinstance(config, dict):
            raise ConfigError([f"deepspeed.config_file: {ds.config_file}: top level must be an object"])
        for key in ("optimizer", "scheduler"):
            if key in config:
                raise ConfigError([
                    f"deepspeed.config_file: {ds.config_file}: remove {key!r}; the recipe's optimizer "
                    "component and the stage's warmup/cosine schedule are used (exact resume needs them)"
                ])
        _fill_batch_sizes(config, stage, world_size=world_size, source=str(ds.config_file))
        config.setdefault("gradient_clipping", ds.gradient_clipping)
        config.setdefault("steps_per_print", _QUIET_STEPS)
        # A client torch optimizer with offload is fine (no cpu_adam build): let DeepSpeed take it.
        config.setdefault("zero_force_ds_cpu_optimizer", False)
        config.setdefault("zero_allow_untested_optimizer", True)
        return config

    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if ds.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": False}
    if ds.zero_stage == 3:
        # The engine consolidates ZeRO-3 shards itself when saving (GatheredParameters).
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    config = {
        "train_micro_batch_size_per_gpu": stage.micro_batch_size,
        "gradient_accumulation_steps": stage.gradient_accumulation_steps,
        "train_batch_size": stage.micro_batch_size * stage.gradient_accumulation_steps * world_size,
        "gradient_clipping": ds.gradient_clipping,
        "zero_optimization": zero,
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": False},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": _QUIET_STEPS,
        "wall_clock_breakdown": False,
    }
    return config


def _fill_batch_sizes(config: dict[str, Any], stage: StageConfig, *, world_size: int, source: str) -> None:
    expected = {
        "train_micro_batch_size_per_gpu": stage.micro_batch_size,
        "gradient_accumulation_steps": stage.gradient_accumulation_steps,
        "train_batch_size": stage.micro_batch_size * stage.gradient_accumulation_steps * world_size,
    }
    for key, value in expected.items():
        if key in config and config[key] != value:
            raise ConfigError([
                f"deepspeed.config_file: {source}: {key}={config[key]} disagrees with the stage "
                f"(micro_batch_size x gradient_accumulation_steps x world_size gives {value}); "
                "drop it from the JSON or change the recipe"
            ])
        config[key] = value
