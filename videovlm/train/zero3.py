"""ZeRO-3 partitioned construction of a stage's model.

Under ``zero_stage: 3`` the stage runs with transformers' DeepSpeed integration switched on
(an ``HfDeepSpeedConfig`` of the stage's DeepSpeed config is alive), so every transformers
model the recipe builds (the vision tower and the LLM: nearly all parameters of a 7B family,
loaded with ``from_pretrained`` on a folder or hub id, or built from a config) is created
inside ``deepspeed.zero.Init`` and its checkpoint is loaded partitioned, each rank holding its
slice. A family checkpoint (a later stage's ``from_pretrained``) loads the same way
(``videovlm.models.weights``).

Under ZeRO-3 every weight transformers builds takes the DeepSpeed precision (``zero.Init``
casts each new floating-point tensor, as in transformers' Trainer): a frozen bf16 LLM needs
``precision: bf16``, or it is built, partitioned, in fp32 (the engine warns).

The family's own modules (frame positions, video Q-Former, projection, LoRA adapters; well
under 1% of a 7B model; a BLIP-2 image Q-Former comes from transformers and is partitioned) are built whole and partitioned by ``deepspeed.initialize``, which accepts a
model part partitioned and part not. They are not built inside ``zero.Init`` on purpose:
DeepSpeed partitions each module at the end of its own ``__init__``, so any initialisation a
parent does afterwards to a child's weights silently does nothing (the instruction FiLM's zero
init, peft's zero ``lora_B``), and the model would no longer be the one a single process builds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def zero_stage(ds_config: dict[str, Any]) -> int:
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


@contextlib.contextmanager
def transformers_zero3(ds_config: dict[str, Any]) -> Iterator[None]:
    """Inside: transformers builds and loads its models partitioned when ``ds_config`` is
    ZeRO stage 3 (a no-op for stages 0-2)."""
    if zero_stage(ds_config) != 3:
        yield
        return
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations import deepspeed as hf_deepspeed

    outer = hf_deepspeed._hf_deepspeed_config_weak_ref  # a caller's own config, put back afterwards
    alive = HfDeepSpeedConfig(ds_config)  # transformers keeps only a weak reference to it
    try:
        yield
    finally:
        del alive
        hf_deepspeed._hf_deepspeed_config_weak_ref = outer


def describe_partitioning(model, *, rank: int) -> str:
    """What this rank holds of the freshly built model (ZeRO-3, before ``deepspeed.initialize``):
    its slice of the partitioned (transformers) parameters, and the family's own parts, whole."""
    from videovlm.models.partitioned import is_partitioned, parameter_bytes

    mib = 2**20
    held_bytes, total_bytes = parameter_bytes(p for p in model.parameters() if is_partitioned(p))
    own_bytes, _ = parameter_bytes(p for p in model.parameters() if not is_partitioned(p))
    return (
        f"built under ZeRO-3: rank {rank} holds {held_bytes / mib:.1f} of {total_bytes / mib:.1f} MiB of partitioned parameters "
        f"({100 * held_bytes / max(total_bytes, 1):.0f}%), plus {own_bytes / mib:.1f} MiB of the model's own parts whole (partitioned by deepspeed.initialize)"
    )


def precision_warning(model, ds_config: dict[str, Any]) -> str | None:
    """A warning when a family's language model asks for a dtype ZeRO-3 did not build it in."""
    from videovlm.models.hf import resolve_dtype
    from videovlm.models.partitioned import is_partitioned

    config = getattr(model, "config", None)
    field = getattr(model, "LANGUAGE_FIELD", None)
    wanted = getattr(getattr(config, field, None), "dtype", None) if field else None
    built = {p.dtype for p in model.parameters() if is_partitioned(p)}
    if wanted is None or not built or built == {resolve_dtype(wanted, where=field)}:
        return None
    precision = "bf16" if ds_config.get("bf16", {}).get("enabled") else "fp32"
    return (
        f"the language model asks for {wanted}, but ZeRO-3 built the partitioned weights in {', '.join(sorted(map(str, built)))} "
        f"(deepspeed.precision={precision}: zero.Init casts every weight to it); set deepspeed.precision to match"
    )
