"""Reading video: one frame-accurate reader API over the PyAV, decord and torchcodec backends."""

from __future__ import annotations

from videovlm.video.reader import VideoReader, available_backends, open_video, select_backend
from videovlm.video.types import FrameBatch, VideoDecodeError, VideoMetadata

__all__ = [
    "FrameBatch",
    "VideoDecodeError",
    "VideoMetadata",
    "VideoReader",
    "available_backends",
    "open_video",
    "select_backend",
]

# --- samplers (videovlm.video.samplers): exports added below by the samplers' owner ---
from videovlm.video.samplers import (  # noqa: E402  (after the reader's block on purpose)
    FrameSample,
    Sampler,
    SamplerSpecError,
    SamplingError,
    parse_sampler,
)

__all__ += ["FrameSample", "Sampler", "SamplerSpecError", "SamplingError", "parse_sampler"]
