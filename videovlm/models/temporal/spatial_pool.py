"""LLaVA-NeXT-Video-style stride-2 spatial pooling that keeps every frame."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from videovlm.models.temporal.base import (
    TemporalConfigError,
    TemporalEncoder,
    TemporalEncoderConfig,
    VideoTokens,
    grid_side,
    output_projection,
    split_patch_grid,
    zero_masked_tokens,
)

POOL_MODES = ("average", "max")


@dataclass
class SpatialPoolConfig(TemporalEncoderConfig):
    """Config of :class:`SpatialPool`.

    Attributes:
        input_dim: D of the frame tokens.
        output_dim: D_out; a linear projection is added only when it differs from ``input_dim``.
        stride: pooling window and stride over the patch grid (LLaVA-NeXT-Video uses 2).
            Grids that do not divide evenly keep a partial last row/column (ceil mode), whose
            average covers only the patches that exist: a 7x7 grid pools to 4x4.
        mode: ``"average"`` (LLaVA-NeXT-Video's default) or ``"max"``.
        has_cls_token: token 0 of each frame is a CLS token before a square patch grid (CLIP);
            False means all N tokens form the square grid.
        keep_cls_token: with ``has_cls_token``, put the CLS token (unpooled) before each frame's
            pooled patches; otherwise it is dropped.
        max_frames: size of the learned frame position embedding (T must not exceed it).
    """

    stride: int = 2
    mode: str = "average"
    has_cls_token: bool = False
    keep_cls_token: bool = False
    max_frames: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_choice("mode", POOL_MODES)
        if self.keep_cls_token and not self.has_cls_token:
            raise TemporalConfigError("SpatialPoolConfig.keep_cls_token=True needs has_cls_token=True")


class SpatialPool(TemporalEncoder):
    """(B, T, N, D) -> (B, T * P, D_out) with P = ceil(h / stride) * ceil(w / stride) (+1 CLS kept).

    LLaVA-NeXT-Video leaves frame order to the LLM's positions; here a learned frame position
    embedding is added to each frame's pooled tokens, so the encoder alone is order-aware. The
    output mask repeats the frame mask: a padded frame's P tokens are zero and masked False.
    Settings: :class:`SpatialPoolConfig`.
    """

    config_class = SpatialPoolConfig

    def __init__(self, config: SpatialPoolConfig):
        super().__init__(config)
        self.stride = config.stride
        self.mode = config.mode
        self.has_cls_token = config.has_cls_token
        self.keep_cls_token = config.keep_cls_token
        self.frame_position = nn.Embedding(config.max_frames, config.input_dim)
        self.projection = output_projection(config.input_dim, self.output_dim)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        side = grid_side(tokens_per_frame, has_cls_token=self.has_cls_token, owner=type(self).__name__)
        pooled_side = math.ceil(side / self.stride)
        return num_frames * (pooled_side * pooled_side + int(self.keep_cls_token))

    def encode(self, frame_tokens: Tensor, frame_mask: Tensor) -> VideoTokens:
        batch, num_frames = frame_tokens.shape[:2]
        cls_token, grid = split_patch_grid(frame_tokens, has_cls_token=self.has_cls_token, owner=type(self).__name__)
        images = rearrange(grid, "b t d h w -> (b t) d h w")  # (B*T, D, h, w)
        pool = F.avg_pool2d if self.mode == "average" else F.max_pool2d
        pooled = pool(images, kernel_size=self.stride, stride=self.stride, ceil_mode=True)  # (B*T, D, h', w')
        tokens = rearrange(pooled, "(b t) d h w -> b t (h w) d", b=batch)  # (B, T, P, D)
        if self.keep_cls_token and cls_token is not None:
            tokens = torch.cat([rearrange(cls_token, "b t d -> b t 1 d"), tokens], dim=2)  # (B, T, 1+P, D)
        positions = self.frame_positions(self.frame_position, num_frames)
        tokens = tokens + rearrange(positions, "t d -> 1 t 1 d")  # (B, T, P, D)
        per_frame = tokens.shape[2]
        flat = self.projection(rearrange(tokens, "b t p d -> b (t p) d"))  # (B, T*P, D_out)
        return zero_masked_tokens(flat, repeat(frame_mask, "b t -> b (t p)", p=per_frame))
