"""Image-VLM core (vision tower, Q-Former, projector, language side), the three video families,
their processors, presets and the tokenizer. Temporal encoders live in ``videovlm.models.temporal``."""

from __future__ import annotations

from videovlm.models.base import IGNORE_INDEX, VideoFamilyModel, set_trainable, splice_visual_tokens
from videovlm.models.configs import ModelConfigError, config_from_dict, config_to_dict
from videovlm.models.io import load_pretrained, load_processor
from videovlm.models.language import LanguageModelConfig, LoraSettings
from videovlm.models.pixels import PixelConfig, PixelShapeError, frames_to_pixel_values
from videovlm.models.processing import ChatTemplateConfig, ProcessorError, VideoLlamaProcessor
from videovlm.models.processing_bert import BertTemplateConfig, VideoBertProcessor
from videovlm.models.processing_ofa import OFATemplateConfig, VideoOFAProcessor
from videovlm.models.projector import ProjectorConfig
from videovlm.models.qformer import ImageQFormerConfig
from videovlm.models.tokenizer import DEFAULT_SPECIAL_TOKENS, train_tokenizer
from videovlm.models.videobert import VideoBertConfig, VideoBertModel
from videovlm.models.videollama import VideoLlamaConfig, VideoLlamaModel
from videovlm.models.videoofa import FrameAdapterConfig, VideoOFAConfig, VideoOFAModel
from videovlm.models.vision import VisionTower, VisionTowerConfig

__all__ = [
    "DEFAULT_SPECIAL_TOKENS",
    "IGNORE_INDEX",
    "BertTemplateConfig",
    "ChatTemplateConfig",
    "FrameAdapterConfig",
    "ImageQFormerConfig",
    "LanguageModelConfig",
    "LoraSettings",
    "ModelConfigError",
    "OFATemplateConfig",
    "PixelConfig",
    "PixelShapeError",
    "ProcessorError",
    "ProjectorConfig",
    "VideoBertConfig",
    "VideoBertModel",
    "VideoBertProcessor",
    "VideoFamilyModel",
    "VideoLlamaConfig",
    "VideoLlamaModel",
    "VideoLlamaProcessor",
    "VideoOFAConfig",
    "VideoOFAModel",
    "VideoOFAProcessor",
    "VisionTower",
    "VisionTowerConfig",
    "config_from_dict",
    "config_to_dict",
    "frames_to_pixel_values",
    "load_pretrained",
    "load_processor",
    "set_trainable",
    "splice_visual_tokens",
    "train_tokenizer",
]
