"""Temporal encoders: frame tokens (B, T, N, D) + frame mask (B, T) -> video tokens (B, M, D_out).

Every class takes one argument, its config dataclass (``cls.config_class``, the one place its
settings are declared and documented): ``VideoQFormer(VideoQFormerConfig(input_dim=256,
num_queries=8))``. From a dict of the config's fields (a recipe's spec, a saved ``config.json``)
build it with ``VideoQFormer.from_config({...})``; ``encoder.config_dict()`` writes that dict.
Recipes name a class by its ``_component_`` path, e.g. ``videovlm.models.temporal.VideoQFormer``.
See ``base.py`` for the shared contract.
"""

from __future__ import annotations

from videovlm.models.temporal.base import (
    AttentionStackConfig,
    TemporalConfigError,
    TemporalEncoder,
    TemporalEncoderConfig,
    TemporalInputError,
    VideoTokens,
)
from videovlm.models.temporal.conv3d import Conv3dDownsample, Conv3dDownsampleConfig
from videovlm.models.temporal.divided_space_time import DividedSpaceTime, DividedSpaceTimeConfig
from videovlm.models.temporal.frame_transformer import FrameTransformer, FrameTransformerConfig
from videovlm.models.temporal.instruct_qformer import InstructVideoQFormer, InstructVideoQFormerConfig
from videovlm.models.temporal.mean_pool import MeanPool, MeanPoolConfig
from videovlm.models.temporal.perceiver import PerceiverResampler, PerceiverResamplerConfig
from videovlm.models.temporal.spatial_pool import SpatialPool, SpatialPoolConfig
from videovlm.models.temporal.video_qformer import VideoQFormer, VideoQFormerConfig

__all__ = [
    "AttentionStackConfig",
    "Conv3dDownsample",
    "Conv3dDownsampleConfig",
    "DividedSpaceTime",
    "DividedSpaceTimeConfig",
    "FrameTransformer",
    "FrameTransformerConfig",
    "InstructVideoQFormer",
    "InstructVideoQFormerConfig",
    "MeanPool",
    "MeanPoolConfig",
    "PerceiverResampler",
    "PerceiverResamplerConfig",
    "SpatialPool",
    "SpatialPoolConfig",
    "TemporalConfigError",
    "TemporalEncoder",
    "TemporalEncoderConfig",
    "TemporalInputError",
    "VideoQFormer",
    "VideoQFormerConfig",
    "VideoTokens",
]
