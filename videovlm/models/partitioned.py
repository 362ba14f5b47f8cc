"""Parameters partitioned by DeepSpeed ZeRO-3, read and written whole.

Under ZeRO-3 (``deepspeed.zero.Init``, which transformers' DeepSpeed integration enters when
``HfDeepSpeedConfig`` with stage 3 is alive) each rank holds only a slice of a parameter: its
``.data`` is an empty tensor and the real shape is ``ds_shape``. Code that reads weights
outside a forward (loading, hashing, saving) gathers them first; these helpers do that and
are no-ops on ordinary parameters, so callers need no ZeRO branch of their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn


def is_partitioned(tensor: torch.Tensor) -> bool:
    """A ZeRO-3 parameter (DeepSpeed marks them with ``ds_id``)."""
    return hasattr(tensor, "ds_id")


def full_shape(tensor: torch.Tensor) -> tuple[int, ...]:
    """The parameter's whole shape, also when ZeRO-3 holds only a slice of it here."""
    return tuple(tensor.ds_shape) if is_partitioned(tensor) else tuple(tensor.shape)


def full_numel(tensor: torch.Tensor) -> int:
    return int(tensor.ds_numel) if is_partitioned(tensor) else tensor.numel()


def parameter_bytes(params: Iterable[nn.Parameter]) -> tuple[int, int]:
    """(bytes this rank holds, bytes of the whole parameters): a ZeRO-3 parameter counts its slice
    in the first and its full size in the second; an ordinary one its size in both."""
    held = whole = 0
    for param in params:
        local = param.ds_tensor if is_partitioned(param) else param
        held += local.numel() * local.element_size()
        whole += full_numel(param) * param.element_size()
    return held, whole


def local_bytes(module: nn.Module) -> int:
    """Bytes of parameter data this rank holds (a ZeRO-3 parameter: its slice only)."""
    return parameter_bytes(module.parameters())[0]


def has_partitioned(module: nn.Module) -> bool:
    return any(is_partitioned(p) for p in module.parameters())


@contextlib.contextmanager
def gathered(params: Iterable[nn.Parameter], *, modifier_rank: int | None = None) -> Iterator[None]:
    """Inside: every ZeRO-3 parameter of ``params`` whole on every rank. ``modifier_rank``:
    the rank whose changes are kept (broadcast to the others on exit); None: read only."""
    partitioned = [p for p in params if is_partitioned(p)]
    if not partitioned:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=modifier_rank):
        yield


def zero3_enabled() -> bool:
    """True while a stage-3 ``HfDeepSpeedConfig`` is alive: transformers then builds and loads
    its models partitioned, and so must the family models around them."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
