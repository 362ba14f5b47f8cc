"""Image-VLM core (vision tower, Q-Former, projector, language side), the three video families
(a folder each: ``videollama/``, ``videoofa/``, ``videobert/`` with configuration, processing,
modeling and presets), loading by ``model_type`` (``auto``) and the tokenizer. Temporal
encoders live in ``videovlm.models.temporal``."""

from __future__ import annotations

from videovlm.models.base import IGNORE_INDEX, VideoFamilyModel, set_trainable, splice_visual_tokens
from videovlm.models.configs import ModelConfigError, config_from_dict, config_to_dict
from videovlm.models.auto import load_pretrained, load_processor
from videovlm.models.language import LanguageModelConfig, LoraSettings
from videovlm.models.pixels import PixelConfig, PixelShapeError, frames_to_pixel_values
from videovlm.models.processing import ProcessorError
from videovlm.models.projector import ProjectorConfig
from videovlm.models.qformer import ImageQFormerConfig
from videovlm.models.tokenizer import DEFAULT_SPECIAL_TOKENS, train_tokenizer
from videovlm.models.videobert import BertTemplateConfig, VideoBertConfig, VideoBertModel, VideoBertProcessor
from videovlm.models.videollama import ChatTemplateConfig, VideoLlamaConfig, VideoLlamaModel, VideoLlamaProcessor
from videovlm.models.videoofa import OFATemplateConfig, VideoOFAConfig, VideoOFAModel, VideoOFAProcessor
from videovlm.models.vision import VisionTower, VisionTowerConfig

__all__ = [
    "DEFAULT_SPECIAL_TOKENS",
    "IGNORE_INDEX",
    "BertTemplateConfig",
    "ChatTemplateConfig",
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
