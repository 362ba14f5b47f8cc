"""Temporal encoders as config values: the ``_component_`` spec a family config stores, the
encoder built from it (with the widths the family knows), and the spec of a built encoder."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from videovlm.models.configs import ModelConfigError, resolve_temporal_encoder_class


def build_temporal_encoder(
    spec: dict, *, input_dim: int, vocab_size: int | None = None, defaults: Mapping[str, Any] | None = None, where: str = "temporal"
) -> nn.Module:
    """Instantiate ``spec['_component_']`` with the spec's kwargs, the frame-token width and, for
    an encoder that reads the instruction, the tokenizer's vocabulary size. ``defaults``: values
    the family knows (e.g. ``output_dim``, ``max_frames``) for the encoder's config fields the
    spec leaves out; fields the encoder does not have are skipped."""
    cls = resolve_temporal_encoder_class(spec["_component_"], where=f"{where}._component_")
    kwargs = {k: v for k, v in spec.items() if k != "_component_"}
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    for name, value in (defaults or {}).items():
        if name in fields:
            kwargs.setdefault(name, value)
    if kwargs.setdefault("input_dim", input_dim) != input_dim:
        raise ModelConfigError(f"{where}.input_dim: {kwargs['input_dim']} but the frame tokens are {input_dim}-d")
    if getattr(cls, "reads_instruction", False) and vocab_size is not None:
        if kwargs.setdefault("vocab_size", vocab_size) != vocab_size:
            raise ModelConfigError(f"{where}.vocab_size: {kwargs['vocab_size']} but the tokenizer has {vocab_size} tokens")
    try:
        return cls.from_config(kwargs)
    except (TypeError, ValueError) as e:
        raise ModelConfigError(f"{where}: {e}") from e


def temporal_spec(encoder: nn.Module) -> dict:
    """The ``_component_`` dict that rebuilds ``encoder`` exactly."""
    return {"_component_": type(encoder).component_path(), **encoder.config_dict()}
