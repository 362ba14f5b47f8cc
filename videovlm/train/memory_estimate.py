"""DeepSpeed's own per-GPU memory estimate of model states for a stage (``--dry-run``).

DeepSpeed's estimators (``estimate_zero2_model_states_mem_needs`` for stages 0-2,
``estimate_zero3_model_states_mem_needs`` for stage 3) count every parameter as trained: here
they get the stage's trainable parameters, and the frozen ones are added as what they are,
16-bit (bf16) or 32-bit weights held whole on every GPU below ZeRO-3 and partitioned across the
ranks under ZeRO-3. Activations are not included (they depend on the batch and sequence).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from videovlm.models.partitioned import full_numel


def largest_layer_params(model: nn.Module) -> int:
    """Parameters of the largest leaf module (what ZeRO-3 gathers at once)."""
    return max((sum(full_numel(p) for p in m.parameters(recurse=False)) for m in model.modules()), default=0)


def model_states_estimate(model: nn.Module, deepspeed_config, *, world_size: int, num_nodes: int = 1) -> dict[str, Any]:
    """Bytes per GPU and per node CPU for params, gradients and optimizer states at the
    configured ZeRO stage, offload and world size (DeepSpeed's formulas), plus the frozen weights."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    trainable = sum(full_numel(p) for p in model.parameters() if p.requires_grad)
    frozen = sum(full_numel(p) for p in model.parameters() if not p.requires_grad)
    gpus_per_node = max(1, world_size // num_nodes)
    stage = deepspeed_config.zero_stage
    if stage == 3:
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            trainable, largest_layer_params(model), num_gpus_per_node=gpus_per_node, num_nodes=num_nodes,
            cpu_offload=deepspeed_config.offload_optimizer, cpu_offload_params=deepspeed_config.offload_param,
        )
    else:
        cpu, gpu = estimate_zero2_model_states_mem_needs(
            trainable, num_gpus_per_node=gpus_per_node, num_nodes=num_nodes, cpu_offload=deepspeed_config.offload_optimizer
        )
    bytes_per_weight = 2 if deepspeed_config.precision == "bf16" else 4
    frozen_bytes = frozen * bytes_per_weight // (world_size if stage == 3 else 1)
    return {
        "zero_stage": stage,
        "world_size": world_size,
        "trainable_params": trainable,
        "frozen_params": frozen,
        "deepspeed_gpu_bytes": int(gpu),
        "deepspeed_cpu_bytes": int(cpu),
        "frozen_gpu_bytes": int(frozen_bytes),
        "gpu_bytes": int(gpu + frozen_bytes),
    }


def format_estimate(estimate: dict[str, Any]) -> str:
    gib = 2**30
    return (
        f"memory (DeepSpeed's estimate, ZeRO-{estimate['zero_stage']}, {estimate['world_size']} GPU(s)): "
        f"{estimate['gpu_bytes'] / gib:.2f} GiB per GPU of model states "
        f"({estimate['deepspeed_gpu_bytes'] / gib:.2f} for {estimate['trainable_params']:,} trained params + "
        f"{estimate['frozen_gpu_bytes'] / gib:.2f} frozen weights), {estimate['deepspeed_cpu_bytes'] / gib:.2f} GiB CPU per node; activations not included"
    )
