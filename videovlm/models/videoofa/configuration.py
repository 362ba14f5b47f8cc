"""VideoOFA's configuration: the family config and the task instructions of its processor."""

from __future__ import annotations

from dataclasses import dataclass, field

from videovlm.models.base import check_family_config
from videovlm.models.configs import ModelConfigError
from videovlm.models.language import LanguageModelConfig
from videovlm.models.vision import VisionTowerConfig


@dataclass
class OFATemplateConfig:
    """Fields: the instruction per task (``{question}`` / ``{caption}`` are filled in),
    yes/no answers, max_length (encoder text tokens) and max_target_length (decoder tokens)."""

    qa: str = "{question}"
    video_caption: str = "what does the video describe?"
    image_caption: str = "what does the image describe?"
    matching: str = 'does the video describe " {caption} "?'
    frame_order: str = "are the frames of the video in order?"
    yes: str = "yes"
    no: str = "no"
    max_length: int = 128
    max_target_length: int = 64


# LLaVA-NeXT-Video's spatial pooling, here with stride 1 (every patch kept) and the first token
# (CLIP's CLS, a conv tower's pooled vector) kept unpooled before each frame's patches.
DEFAULT_TEMPORAL = {"_component_": "videovlm.models.temporal.SpatialPool", "stride": 1, "keep_cls_token": True}


@dataclass
class VideoOFAConfig:
    """Fields:
    vision: the vision tower. seq2seq: the encoder-decoder LM (``kind`` must be ``seq2seq``).
    temporal: the temporal encoder, through the same ``_component_`` slot as Video-LLaMA's:
        ``{"_component_": "videovlm.models.temporal.SpatialPool", "stride": 2, ...}`` (any
        ``videovlm.models.temporal`` encoder). ``input_dim`` is the tower's width; ``output_dim``
        (the seq2seq width), ``max_frames`` and ``has_cls_token`` (the tower's first token is
        CLS / a pooled vector) are filled in when the spec leaves them out.
    template: task instructions of the processor.
    max_frames: most frames per sample.
    beyond_max_frames: a video with more frames than ``max_frames``: ``error`` (a clear error)
        or ``interpolate`` (accepted; the temporal encoder's learned frame positions are
        resampled linearly to the frame count, logged once). Sample fewer frames to cap instead.
    tokenizer: tokenizer source when none is passed
    (None = the seq2seq checkpoint). model_type: always ``videoofa``.
    """

    vision: VisionTowerConfig
    seq2seq: LanguageModelConfig
    temporal: dict = field(default_factory=lambda: dict(DEFAULT_TEMPORAL))
    template: OFATemplateConfig = field(default_factory=OFATemplateConfig)
    max_frames: int = 8
    beyond_max_frames: str = "error"
    tokenizer: str | None = None
    model_type: str = "videoofa"

    def __post_init__(self):
        check_family_config(
            family="VideoOFA", lm_field="seq2seq", lm_kind=self.seq2seq.kind, expected_kind="seq2seq", max_frames=self.max_frames,
            beyond_max_frames=self.beyond_max_frames,
        )
        if "spatial_pool" in self.temporal and "_component_" not in self.temporal:
            raise ModelConfigError(
                "temporal: {'spatial_pool': ...} is the FrameAdapter of VideoOFA checkpoints before the shared temporal slot; "
                "it cannot be converted exactly (its LayerNorm sat before the frame embedding), so retrain, naming the encoder as "
                "{_component_: videovlm.models.temporal.SpatialPool, stride: N}"
            )
        if "_component_" not in self.temporal:
            raise ModelConfigError("temporal._component_: missing (dotted path of a temporal encoder class)")
