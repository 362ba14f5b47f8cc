"""VideoLLaMA2 STC-connector-style spatio-temporal downsampling with a 3D convolution."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from videovlm.models.temporal.base import (
    TemporalEncoder,
    TemporalEncoderConfig,
    VideoTokens,
    grid_side,
    split_patch_grid,
    zero_masked_tokens,
)


@dataclass
class Conv3dDownsampleConfig(TemporalEncoderConfig):
    """Config of :class:`Conv3dDownsample`.

    Attributes:
        input_dim: D of the frame tokens.
        output_dim: D_out of the video tokens (the width of the final MLP).
        hidden_dim: channels of the 3D convolution and the blocks after it; ``None`` means input_dim.
        temporal_stride: frames merged per output step (kernel = stride, VideoLLaMA2 uses 2).
            T is zero-padded at the end to a multiple of it.
        spatial_stride: patches merged per side (kernel = stride, 2); the grid is zero-padded at
            the bottom/right to a multiple of it, so a 7x7 grid gives 4x4.
        has_cls_token: token 0 of each frame is a CLS token (CLIP); it is dropped, since a
            convolution needs the patch grid alone (VideoLLaMA2 also drops it).
        num_blocks: residual per-frame conv blocks before and after the 3D convolution (the
            "RegStage-lite" of the STC connector).
    """

    hidden_dim: int | None = None
    temporal_stride: int = 2
    spatial_stride: int = 2
    has_cls_token: bool = False
    num_blocks: int = 1

    def __post_init__(self) -> None:
        if self.hidden_dim is None:
            self.hidden_dim = self.input_dim
        super().__post_init__()


class _FrameConvBlock(nn.Module):
    """Residual depthwise 3x3 + pointwise conv on one frame's grid (frames never mix here)."""

    def __init__(self, channels: int):
        super().__init__()
        # GroupNorm(1) normalises each frame over its own (C, h, w): no statistics shared across
        # frames or batch items, unlike BatchNorm, so padded frames cannot leak in.
        self.norm = nn.GroupNorm(1, channels)
        self.depthwise = nn.Conv2d(channels, channels, kernel_size=3, padding=1, groups=channels)
        self.pointwise = nn.Conv2d(channels, channels, kernel_size=1)
        self.activation = nn.SiLU()

    def forward(self, images: Tensor) -> Tensor:  # (B*T, C, h, w)
        # Tokens rearranged into a grid are channels-last in memory; torch 2.13's CPU GroupNorm
        # backward crashes (segfault) on such an input when it needs no grad (a frozen tower's
        # tokens), so the block works on a contiguous copy.
        images = images.contiguous()
        return images + self.pointwise(self.activation(self.depthwise(self.norm(images))))


class Conv3dDownsample(TemporalEncoder):
    """(B, T, N, D) -> (B, T' * h' * w', D_out), T' = ceil(T / ts), h' = ceil(h / ss).

    Per-frame residual conv blocks, then ``nn.Conv3d`` with kernel = stride = (ts, ss, ss) over
    (B, D, T, h, w), per-step residual blocks, and an MLP readout. Padded frames are zero when the
    3D convolution sees them, so an output step is the same as in a run on the real frames alone
    (whose last step is zero-padded in the same way); steps made only of padded frames are zero
    and masked False. Order inside a window comes from the kernel; order across windows is left
    to the positions of the model that reads the tokens, as in VideoLLaMA2. Settings:
    :class:`Conv3dDownsampleConfig`.
    """

    config_class = Conv3dDownsampleConfig

    def __init__(self, config: Conv3dDownsampleConfig):
        super().__init__(config)
        width = int(config.hidden_dim)  # resolved by __post_init__
        self.temporal_stride = config.temporal_stride
        self.spatial_stride = config.spatial_stride
        self.has_cls_token = config.has_cls_token
        self.frame_blocks = nn.Sequential(*(_FrameConvBlock(config.input_dim) for _ in range(config.num_blocks)))
        kernel = (config.temporal_stride, config.spatial_stride, config.spatial_stride)
        self.downsample = nn.Conv3d(config.input_dim, width, kernel_size=kernel, stride=kernel)
        self.step_blocks = nn.Sequential(*(_FrameConvBlock(width) for _ in range(config.num_blocks)))
        self.readout = nn.Sequential(
            nn.Linear(width, self.output_dim), nn.GELU(), nn.Linear(self.output_dim, self.output_dim)
        )

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        side = grid_side(tokens_per_frame, has_cls_token=self.has_cls_token, owner=type(self).__name__)
        return math.ceil(num_frames / self.temporal_stride) * math.ceil(side / self.spatial_stride) ** 2

    def encode(self, frame_tokens: Tensor, frame_mask: Tensor) -> VideoTokens:
        batch, num_frames = frame_tokens.shape[:2]
        _, grid = split_patch_grid(frame_tokens, has_cls_token=self.has_cls_token, owner=type(self).__name__)
        side = grid.shape[-1]
        images = self.frame_blocks(rearrange(grid, "b t d h w -> (b t) d h w"))  # (B*T, D, h, w)
        video = rearrange(images, "(b t) d h w -> b d t h w", b=batch)  # (B, D, T, h, w)
        # The blocks give a padded (zero) frame a non-zero output (biases): zero it again so the
        # 3D convolution sees exactly what a shorter, unpadded run would pad with.
        video = video * rearrange(frame_mask, "b t -> b 1 t 1 1").to(video.dtype)
        pad_time = -num_frames % self.temporal_stride
        pad_space = -side % self.spatial_stride
        video = F.pad(video, (0, pad_space, 0, pad_space, 0, pad_time))  # (B, D, T+pt, h+ps, w+ps)
        steps = self.downsample(video)  # (B, C, T', h', w')
        out_side = steps.shape[3]
        steps = self.step_blocks(rearrange(steps, "b c t h w -> (b t) c h w"))  # (B*T', C, h', w')
        tokens = self.readout(rearrange(steps, "(b t) c h w -> b (t h w) c", b=batch))  # (B, T'*h'*w', D_out)
        # Frames are a real prefix, so step j holds a real frame iff its first frame j*ts is real.
        step_mask = frame_mask[:, :: self.temporal_stride]  # (B, T')
        token_mask = repeat(step_mask, "b t -> b (t s)", s=out_side * out_side)  # (B, T'*h'*w')
        return zero_masked_tokens(tokens, token_mask)
