"""Which parameters a stage trains, and the processor that turns records into model inputs.

The video families (``videovlm.models``) name their top-level parts and freeze through
``videovlm.models.set_trainable``. Any other ``nn.Module`` (a plain Hugging Face model in a
backbone recipe, a user's model) is handled by its top-level child modules: the stage names
the children to train, everything else is frozen and kept in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn


def apply_trainable_parts(model: nn.Module, parts: Sequence[str] | None) -> list[str]:
    """Train exactly ``parts`` (None: every parameter). Returns the names now trainable."""
    from videovlm.models.base import VideoFamilyModel, set_trainable

    if isinstance(model, VideoFamilyModel):
        return set_trainable(model, list(model.parts()) if parts is None else parts)
    children = dict(model.named_children())
    if parts is None:
        model.requires_grad_(True)
        return list(children)
    unknown = [p for p in parts if p not in children]
    if unknown:
        raise ValueError(f"trainable: {type(model).__name__} has no top-level part {unknown[0]!r} (parts: {', '.join(children)})")
    model.requires_grad_(False)
    for name in parts:
        children[name].requires_grad_(True)
    for name, child in children.items():
        if name not in parts:
            child.eval()  # frozen: no dropout noise, no running-statistics updates
    return list(parts)


def trainable_parts_in_eval(model: nn.Module, parts: Sequence[str] | None) -> None:
    """After ``model.train()``: put the frozen top-level parts back in eval mode (the
    families do this in their own ``train()``)."""
    from videovlm.models.base import VideoFamilyModel

    if parts is None or isinstance(model, VideoFamilyModel):
        return
    for name, child in model.named_children():
        if name not in parts:
            child.eval()


def model_processor(model: nn.Module) -> Any:
    """The processor that datasets hand records and frames to (None if the model has none)."""
    return getattr(model, "processor", None)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    from videovlm.models.partitioned import full_numel

    trainable = sum(full_numel(p) for p in model.parameters() if p.requires_grad)
    total = sum(full_numel(p) for p in model.parameters())
    return {"trainable": trainable, "frozen": total - trainable, "total": total}
