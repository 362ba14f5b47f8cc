"""VideoOFA's configuration: the family config, its visual adapter and the task instructions of its processor."""

from __future__ import annotations

from dataclasses import dataclass, field

from videovlm.models.base import check_family_config
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


@dataclass
class FrameAdapterConfig:
    """Fields:
    spatial_pool: average-pool the patch grid by this stride per frame (1 = keep all patches;
        2 turns CLIP's 7x7 grid into 4x4), which shortens the encoder sequence T times over.
        The first token (CLIP's CLS, a conv tower's pooled vector) is kept unpooled.
    dropout: dropout on the visual tokens.
    """

    spatial_pool: int = 1
    dropout: float = 0.0


@dataclass
class VideoOFAConfig:
    """Fields:
    vision: the vision tower. seq2seq: the encoder-decoder LM (``kind`` must be ``seq2seq``).
    temporal: the visual adapter / frame embedding. template: task instructions of the processor.
    max_frames: most frames per sample. tokenizer: tokenizer source when none is passed
    (None = the seq2seq checkpoint). model_type: always ``videoofa``.
    """

    vision: VisionTowerConfig
    seq2seq: LanguageModelConfig
    temporal: FrameAdapterConfig = field(default_factory=FrameAdapterConfig)
    template: OFATemplateConfig = field(default_factory=OFATemplateConfig)
    max_frames: int = 8
    tokenizer: str | None = None
    model_type: str = "videoofa"

    def __post_init__(self):
        check_family_config(
            family="VideoOFA", lm_field="seq2seq", lm_kind=self.seq2seq.kind, expected_kind="seq2seq", max_frames=self.max_frames
        )
