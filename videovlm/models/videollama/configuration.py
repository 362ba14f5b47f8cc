"""Video-LLaMA's configuration: the family config and the conversation template of its processor."""

from __future__ import annotations

from dataclasses import dataclass, field

from videovlm.models.base import check_family_config
from videovlm.models.configs import ModelConfigError
from videovlm.models.language import LanguageModelConfig, LoraSettings
from videovlm.models.projector import ProjectorConfig
from videovlm.models.qformer import ImageQFormerConfig
from videovlm.models.tokenizer import ASSISTANT_MARKER, HUMAN_MARKER, IMAGE_TOKEN, VIDEO_TOKEN
from videovlm.models.vision import VisionTowerConfig


@dataclass
class ChatTemplateConfig:
    """The Video-LLaMA conversation template, token for token::

        <s>{system}###Human: <video> {question}###Assistant: {answer}</s>###Human: ...

    (Video-LLaMA writes ``<Video><ImageHere></Video>``; here ``<video>`` / ``<image>`` is the
    one placeholder the model replaces by its visual tokens.) Only the answers and their
    closing ``</s>`` are trained; the system text, human turns and markers get label -100.

    Fields: system (text before the first turn, may be empty), human_marker,
    assistant_marker, video_prompt / image_prompt (human turn for caption records),
    max_length (tokens before splicing the visual tokens).
    """

    system: str = ""
    human_marker: str = HUMAN_MARKER
    assistant_marker: str = ASSISTANT_MARKER
    video_prompt: str = f"{VIDEO_TOKEN} describe the video briefly."
    image_prompt: str = f"{IMAGE_TOKEN} describe the image briefly."
    max_length: int = 256


DEFAULT_TEMPORAL = {"_component_": "videovlm.models.temporal.VideoQFormer", "num_queries": 32, "max_frames": 32}


@dataclass
class VideoLlamaConfig:
    """Fields:
    vision: the vision tower (checkpoint or config; ViT-style or convolutional, see above).
    llm: the causal LM (``kind`` must be ``causal``).
    temporal: the temporal encoder: ``{"_component_": "videovlm.models.temporal.VideoQFormer",
        **its keyword arguments}``; ``input_dim`` is filled in from the frame tokens.
    image_qformer: optional BLIP-2 image Q-Former per frame (None = patch tokens go straight in).
    projector: map from the temporal encoder's output width to the LLM's hidden size.
    lora: LoRA on the LLM (None = no adapters).
    template: the conversation template and prompt texts of the processor.
    max_frames: most frames per sample the model accepts.
    beyond_max_frames: a video with more frames than ``max_frames``: ``error`` (a clear error)
        or ``interpolate`` (accepted; the temporal encoder's learned frame positions are
        resampled linearly to the frame count, logged once). Sample fewer frames to cap instead.
    tokenizer: hub id / folder of the tokenizer when none is passed (None = the LLM checkpoint).
    model_type: always ``videollama`` (lets ``load_pretrained`` pick the family).
    """

    vision: VisionTowerConfig
    llm: LanguageModelConfig
    temporal: dict = field(default_factory=lambda: dict(DEFAULT_TEMPORAL))
    image_qformer: ImageQFormerConfig | None = None
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    lora: LoraSettings | None = None
    template: ChatTemplateConfig = field(default_factory=ChatTemplateConfig)
    max_frames: int = 8
    beyond_max_frames: str = "error"
    tokenizer: str | None = None
    model_type: str = "videollama"

    def __post_init__(self):
        check_family_config(
            family="Video-LLaMA", lm_field="llm", lm_kind=self.llm.kind, expected_kind="causal", max_frames=self.max_frames,
            beyond_max_frames=self.beyond_max_frames,
        )
        if "_component_" not in self.temporal:
            raise ModelConfigError("temporal._component_: missing (dotted path of a temporal encoder class)")
