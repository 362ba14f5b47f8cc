"""The one interface every temporal encoder implements, plus the checks and pieces they share.

Contract: frame tokens ``(B, T, N, D)`` and a frame mask ``(B, T)`` (True = real frame) go in,
video tokens ``(B, M, D_out)`` with a token mask ``(B, M)`` come out. Padded frames are appended
after the real ones (the mask is True for a prefix of each row), every sample has at least one
real frame, and padded frames never change the outputs: their content is invisible to every
real token, and output tokens that come only from padded frames are zeroed and masked False.

Each encoder's settings are declared once, as the fields of its config dataclass
(``EncoderClass.config_class``: documented there, with their defaults and ``__post_init__``
validation), and the encoder takes that config and nothing else, as transformers' models do:
``SpatialPool(SpatialPoolConfig(input_dim=8, stride=2))``. A keyword call such as
``SpatialPool(input_dim=8)`` is a TypeError that says what to pass instead. From a dict (a
recipe's spec, a saved ``config.json``: the field names are the keys) the encoder is built with
``EncoderClass.from_config(that_dict)``, which names unknown and missing keys;
``encoder.config_dict()`` writes that dict. Recipes name the class by its ``_component_`` path
(``EncoderClass.component_path()``). Encoders with a learned frame position embedding keep it
in an attribute named ``frame_position`` (an ``nn.Embedding(max_frames, input_dim)``) so a model
can freeze or train it as its own part. It keeps ``nn.Embedding``'s N(0, 1) init, as Video-LLaMA's
frame position embedding and Flamingo's time embeddings do: with a small init (0.02) attention at
init is nearly uniform over frames, so the encoder starts almost order-blind and learns order far
more slowly (measured: a tiny VideoQFormer did not learn to tell a clip from its reverse in 40
Adam steps at std 0.02, and did at std 1).
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F


class TemporalConfigError(ValueError):
    """A temporal encoder config (or the dict it is loaded from) is invalid; names the field."""


class TemporalInputError(ValueError):
    """Frame tokens or frame mask given to a temporal encoder have the wrong shape or content."""


class VideoTokens(NamedTuple):
    """What a temporal encoder returns.

    A NamedTuple rather than a dataclass because DeepSpeed ZeRO-3 finds the tensors a module
    returns only inside tuples, lists and dicts; behind an unknown type its backward hooks
    never fire and gradients meet still-partitioned (empty) parameters.
    """

    tokens: Tensor  # (B, M, D_out)
    mask: Tensor  # (B, M) bool, False for tokens that come only from padded frames


BEYOND_MAX_FRAMES = ("error", "interpolate")
log = logging.getLogger(__name__)


@dataclass
class TemporalEncoderConfig:
    """Fields shared by every temporal encoder config.

    Attributes:
        input_dim: D, the width of the incoming frame tokens.
        output_dim: D_out, the width of the video tokens; ``None`` means the same as ``input_dim``
            (resolved when the config is built, so a saved config always holds a number).
        beyond_max_frames: what more frames than a learned frame position embedding has rows
            do: ``error`` (a TemporalInputError naming the numbers) or ``interpolate`` (the
            table resampled linearly to T rows, as ViTs resample patch positions for a larger
            image; a warning is logged once per frame count). Encoders without one ignore it.
    """

    input_dim: int
    output_dim: int | None = None
    beyond_max_frames: str = "error"

    def __post_init__(self) -> None:
        if self.output_dim is None:
            self.output_dim = self.input_dim
        self.require_choice("beyond_max_frames", BEYOND_MAX_FRAMES)
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            # Configs come back from JSON: catch "32" for 32 or 1 for True here, with the field name.
            if not _matches_hint(value, hints[field.name]):
                raise TemporalConfigError(
                    f"{type(self).__name__}.{field.name} must be {hints[field.name]}, got {value!r} ({type(value).__name__})"
                )
            # Every int field of every encoder config is a size or a count: all must be >= 1.
            if isinstance(value, bool):
                continue
            if isinstance(value, int) and value < 1:
                raise TemporalConfigError(f"{type(self).__name__}.{field.name} must be >= 1, got {value}")
            if isinstance(value, float) and field.name.endswith("dropout") and not 0.0 <= value < 1.0:
                raise TemporalConfigError(f"{type(self).__name__}.{field.name} must be in [0, 1), got {value}")
            if isinstance(value, float) and field.name.endswith("ratio") and value <= 0.0:
                raise TemporalConfigError(f"{type(self).__name__}.{field.name} must be > 0, got {value}")

    def require_divisible(self, dim_field: str, heads_field: str) -> None:
        """Attention needs the width split evenly over heads."""
        dim, heads = getattr(self, dim_field), getattr(self, heads_field)
        if dim % heads:
            raise TemporalConfigError(
                f"{type(self).__name__}.{dim_field}={dim} is not divisible by {heads_field}={heads}"
            )

    def require_choice(self, field_name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, field_name)
        if value not in choices:
            raise TemporalConfigError(
                f"{type(self).__name__}.{field_name} must be one of {choices}, got {value!r}"
            )


@dataclass
class AttentionStackConfig(TemporalEncoderConfig):
    """Fields shared by the encoders built from attention layers over frame tokens.

    Attributes:
        max_frames: size of the learned frame position embedding (T must not exceed it).
        num_layers: attention layers (blocks).
        num_heads: attention heads (must divide input_dim).
        mlp_ratio: feed-forward width as a multiple of input_dim.
        dropout: attention and feed-forward dropout.
    """

    max_frames: int = 32
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_divisible("input_dim", "num_heads")


def _matches_hint(value: Any, hint: Any) -> bool:
    """Whether a config value fits its annotation (the few kinds encoder configs use)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_matches_hint(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _config_only_message(cls: type, args: tuple, kwargs: dict) -> str:
    """The TypeError text for building an encoder from anything but its own config dataclass."""
    config_name = cls.config_class.__name__
    keywords = sorted(set(kwargs) - {"config"})
    if keywords:
        got = f"keyword argument(s) {', '.join(keywords)}"
    else:
        got = ", ".join(type(arg).__name__ for arg in (*args, *kwargs.values()))
    return (
        f"{cls.__name__} takes its config only: {cls.__name__}({config_name}(...)), or "
        f"{cls.__name__}.from_config({{...}}) from a dict of {config_name}'s fields; got {got}"
    )


class TemporalEncoder(nn.Module, abc.ABC):
    """Base class: validates inputs once, then calls the encoder's ``encode``."""

    config_class: ClassVar[type[TemporalEncoderConfig]]
    # True for encoders that also read the instruction (``instruction_ids`` / ``instruction_mask``
    # keywords, config field ``vocab_size``): the family's processor then makes those inputs.
    reads_instruction: ClassVar[bool] = False
    input_dim: int
    output_dim: int

    def __new__(cls, *args: Any, **kwargs: Any) -> TemporalEncoder:
        # Checked here, before the subclass's ``__init__(self, config)`` signature is bound, so a
        # keyword call gets this message rather than "unexpected keyword argument". No arguments
        # at all is how copy / pickle recreate an instance (their state comes afterwards).
        given = [*args, *kwargs.values()]
        if given and (len(given) > 1 or set(kwargs) - {"config"} or type(given[0]) is not cls.config_class):
            raise TypeError(_config_only_message(cls, args, kwargs))
        return super().__new__(cls)

    def __init__(self, config: TemporalEncoderConfig):
        super().__init__()
        self._config = dataclasses.replace(config)  # a copy: later edits of the caller's config do not reach it
        self.input_dim = config.input_dim
        self.output_dim = int(config.output_dim)  # resolved by __post_init__

    def frame_positions(self, embedding: nn.Embedding, num_frames: int) -> Tensor:
        """``frame_position_table`` with this encoder's ``beyond_max_frames`` policy: (T, D)."""
        interpolate = self._config.beyond_max_frames == "interpolate"
        return frame_position_table(embedding, num_frames, owner=type(self).__name__, interpolate=interpolate)

    @property
    def config(self) -> TemporalEncoderConfig:
        """A copy of the config this encoder was built from."""
        return dataclasses.replace(self._config)

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict (``from_config`` takes it back)."""
        return dataclasses.asdict(self._config)

    @classmethod
    def component_path(cls) -> str:
        """The dotted path a recipe's ``_component_`` uses for this class."""
        return f"videovlm.models.temporal.{cls.__name__}"

    @classmethod
    def from_config(cls, config: TemporalEncoderConfig | Mapping[str, Any]) -> TemporalEncoder:
        """Build from a config dataclass or from the dict ``config_dict()`` wrote."""
        if isinstance(config, Mapping):
            known = {f.name for f in dataclasses.fields(cls.config_class)}
            unknown = sorted(set(config) - known)
            if unknown:
                raise TemporalConfigError(
                    f"{cls.__name__} config has unknown key(s) {unknown}; known keys: {sorted(known)}"
                )
            missing = sorted(
                f.name
                for f in dataclasses.fields(cls.config_class)
                if f.name not in config and f.default is dataclasses.MISSING
            )
            if missing:
                raise TemporalConfigError(f"{cls.__name__} config is missing required key(s) {missing}")
            return cls(cls.config_class(**config))
        if type(config) is not cls.config_class:
            raise TemporalConfigError(
                f"{cls.__name__}.from_config expects {cls.config_class.__name__} or a mapping, "
                f"got {type(config).__name__}"
            )
        return cls(config)

    @abc.abstractmethod
    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        """M for an input of ``num_frames`` frames of ``tokens_per_frame`` tokens each."""

    @abc.abstractmethod
    def encode(self, frame_tokens: Tensor, frame_mask: Tensor) -> VideoTokens:
        """The encoder's computation on validated inputs: mask filled in, padded frames zeroed."""

    def forward(self, frame_tokens: Tensor, frame_mask: Tensor | None = None) -> VideoTokens:
        """frame_tokens (B, T, N, D); frame_mask (B, T) bool, True = real frame; None = all real."""
        frame_mask = check_frame_inputs(frame_tokens, frame_mask, input_dim=self.input_dim, owner=type(self).__name__)
        # Zero padded frames up front: masked attention gives them zero weight, but 0 * NaN is
        # still NaN, and convolutions and sums would otherwise see their content.
        frame_tokens = frame_tokens.masked_fill(~frame_mask[:, :, None, None], 0.0)  # (B, T, N, D)
        return self.encode(frame_tokens, frame_mask)


def check_frame_inputs(frame_tokens: Tensor, frame_mask: Tensor | None, *, input_dim: int, owner: str) -> Tensor:
    """Validate the shared input contract and return a bool ``(B, T)`` mask."""
    if not isinstance(frame_tokens, Tensor) or frame_tokens.dim() != 4:
        shape = tuple(frame_tokens.shape) if isinstance(frame_tokens, Tensor) else type(frame_tokens).__name__
        raise TemporalInputError(f"{owner}: frame_tokens must be a (B, T, N, D) tensor, got {shape}")
    batch, num_frames, _, dim = frame_tokens.shape
    if dim != input_dim:
        raise TemporalInputError(f"{owner}: frame_tokens last dim is {dim}, the encoder's input_dim is {input_dim}")
    if num_frames < 1:
        raise TemporalInputError(f"{owner}: frame_tokens has no frames (T=0)")
    if frame_mask is None:
        return torch.ones(batch, num_frames, dtype=torch.bool, device=frame_tokens.device)
    if frame_mask.dtype != torch.bool:
        raise TemporalInputError(f"{owner}: frame_mask must be bool (True = real frame), got {frame_mask.dtype}")
    if tuple(frame_mask.shape) != (batch, num_frames):
        raise TemporalInputError(
            f"{owner}: frame_mask shape {tuple(frame_mask.shape)} does not match frame_tokens (B, T) = {(batch, num_frames)}"
        )
    empty = (~frame_mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise TemporalInputError(f"{owner}: frame_mask has no real frame for batch item(s) {empty}")
    # A real frame after a padded one means padding is not at the end.
    not_prefix = (frame_mask[:, 1:] & ~frame_mask[:, :-1]).any(dim=1).nonzero().flatten().tolist()
    if not_prefix:
        raise TemporalInputError(
            f"{owner}: frame_mask rows {not_prefix} have a real frame after a padded one; padding must be appended at the end"
        )
    return frame_mask


def check_num_frames(num_frames: int, max_frames: int, *, owner: str) -> None:
    """A clear error for more frames than the encoder was configured for."""
    if num_frames > max_frames:
        raise TemporalInputError(
            f"{owner}: got {num_frames} frames but max_frames is {max_frames}; raise max_frames in the config, "
            "sample fewer frames, or set beyond_max_frames: interpolate (the family config's, or the encoder's)"
        )


_interpolation_noted: set[tuple[str, int, int]] = set()


def frame_position_table(embedding: nn.Embedding, num_frames: int, *, owner: str, interpolate: bool = False) -> Tensor:
    """Rows 0..T-1 of a learned frame position embedding (T, D). Past its size: a clear error,
    or with ``interpolate`` the whole table resampled linearly to T rows (first and last rows
    kept), so a video longer than training keeps the same start-to-end span of positions."""
    rows = embedding.num_embeddings
    if num_frames <= rows or not interpolate:
        check_num_frames(num_frames, rows, owner=owner)
        return embedding(torch.arange(num_frames, device=embedding.weight.device))  # (T, D)
    if (owner, rows, num_frames) not in _interpolation_noted:
        _interpolation_noted.add((owner, rows, num_frames))
        log.warning("%s: %d frames, more than the %d frame positions it was trained with: interpolating them linearly", owner, num_frames, rows)
    table = rearrange(embedding.weight, "t d -> 1 d t")
    resized = F.interpolate(table.float(), size=num_frames, mode="linear", align_corners=True).to(table.dtype)
    return rearrange(resized, "1 d t -> t d")  # (T, D)


def output_projection(input_dim: int, output_dim: int) -> nn.Module:
    """A linear map to the output width, or nothing when the widths already agree."""
    return nn.Identity() if input_dim == output_dim else nn.Linear(input_dim, output_dim)


def feed_forward(dim: int, mlp_ratio: float, dropout: float) -> nn.Sequential:
    """Pre-norm transformer MLP (the residual is added by the caller)."""
    hidden = max(1, int(round(dim * mlp_ratio)))
    return nn.Sequential(
        nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
    )


def split_patch_grid(frame_tokens: Tensor, *, has_cls_token: bool, owner: str) -> tuple[Tensor | None, Tensor]:
    """Split (B, T, N, D) frame tokens into the optional leading CLS token and a square patch grid.

    Returns ``(cls (B, T, D) or None, grid (B, T, D, h, w))``. Vision towers such as CLIP put
    one CLS token before a row-major square grid of patches (112 px / 16 px patches -> 1 + 7x7).
    """
    side = grid_side(frame_tokens.shape[2], has_cls_token=has_cls_token, owner=owner)
    cls_token = frame_tokens[:, :, 0] if has_cls_token else None
    patches = frame_tokens[:, :, 1:] if has_cls_token else frame_tokens
    grid = rearrange(patches, "b t (h w) d -> b t d h w", h=side, w=side)  # (B, T, D, h, w)
    return cls_token, grid


def grid_side(tokens_per_frame: int, *, has_cls_token: bool, owner: str) -> int:
    """Side of the square patch grid for ``tokens_per_frame`` tokens (CLS excluded if present)."""
    num_patches = tokens_per_frame - int(has_cls_token)
    side = math.isqrt(max(num_patches, 0))
    if num_patches <= 0 or side * side != num_patches:
        hint = " after removing the CLS token" if has_cls_token else " (set has_cls_token=True if token 0 is a CLS token)"
        raise TemporalInputError(f"{owner}: {num_patches} patch tokens per frame{hint} do not form a square grid")
    return side


def sine_grid_code(side: int, dim: int) -> Tensor:
    """(side*side, dim) fixed 2D sine / cosine code of a square grid's row-major cells, as DETR
    adds to a CNN's feature map: dim/4 frequencies each of sin(y), cos(y), sin(x), cos(x), unit
    amplitude (the rest of ``dim``, when it is not a multiple of 4, stays 0)."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    quarter = dim // 4
    freqs = torch.pow(100.0, -torch.arange(quarter) / max(quarter, 1))  # (D/4,)
    parts = [f(c.flatten()[:, None].float() * freqs) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    code = torch.zeros(side * side, dim)
    code[:, : 4 * quarter] = torch.cat(parts, dim=1)
    return code  # (h*w, D)


def zero_masked_tokens(tokens: Tensor, mask: Tensor) -> VideoTokens:
    """Zero the output tokens that come only from padded frames and pair them with their mask."""
    return VideoTokens(tokens=tokens.masked_fill(~mask[..., None], 0.0), mask=mask)  # (B, M, D), (B, M)


def all_tokens_real(tokens: Tensor) -> VideoTokens:
    """For encoders whose every output token summarises the real frames (queries, latents, means)."""
    mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)  # (B, M)
    return VideoTokens(tokens=tokens, mask=mask)
