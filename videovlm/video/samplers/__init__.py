"""Frame samplers: pure, seeded functions of ``VideoMetadata`` returning a ``FrameSample``.

Build one from a spec (``parse_sampler("fps:2,min=4,max=64")``) or with a keyword-only
builder (``uniform(num_frames=8)``), then call it: ``sampler(metadata, generator=None)``.
Training passes a seeded ``torch.Generator`` (jitter); evaluation, QA and extraction pass
none (deterministic centres).
"""

from __future__ import annotations

from videovlm.video.samplers.base import (
    SHORT_POLICIES,
    FrameSample,
    Sampler,
    SamplerSpecError,
    SamplingError,
)
from videovlm.video.samplers.kinds import (
    ClipsSampler,
    FpsSampler,
    HeadTailSampler,
    KeyframesSampler,
    SegmentSampler,
    UniformSampler,
)
from videovlm.video.samplers.spec import SAMPLERS, parse_sampler

# Keyword-only builders: the dataclass constructors take keywords only, e.g.
# uniform(num_frames=8, start=None, end=None, short="repeat").
uniform = UniformSampler
segment = SegmentSampler
fps = FpsSampler
headtail = HeadTailSampler
clips = ClipsSampler
keyframes = KeyframesSampler

__all__ = [
    "SAMPLERS",
    "SHORT_POLICIES",
    "ClipsSampler",
    "FpsSampler",
    "FrameSample",
    "HeadTailSampler",
    "KeyframesSampler",
    "Sampler",
    "SamplerSpecError",
    "SamplingError",
    "SegmentSampler",
    "UniformSampler",
    "clips",
    "fps",
    "headtail",
    "keyframes",
    "parse_sampler",
    "segment",
    "uniform",
]
