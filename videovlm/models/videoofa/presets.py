"""VideoOFA presets: the tiny model that trains on 2 CPU cores (fresh weights, or the tiny
backbones a backbone recipe saved, passed as folders) and configs naming hub checkpoints
(building one downloads them, which is for a GPU machine, so tests only validate it)."""

from __future__ import annotations



from videovlm.models.language import LanguageModelConfig
from videovlm.models.tiny_configs import as_tokenizer, tiny_bart_config, tiny_vision
from videovlm.models.vision import VisionTowerConfig
from videovlm.models.videoofa.configuration import DEFAULT_TEMPORAL, VideoOFAConfig
from videovlm.models.videoofa.modeling import VideoOFAModel


def tiny_videoofa(
    *, tokenizer, vision: str | None = None, seq2seq: str | None = None, temporal: dict | None = None, max_frames: int = 8
) -> VideoOFAModel:
    """The tiny VideoOFA: tiny CLIP tower + tiny BART. ``temporal``: any temporal encoder spec
    (default: ``SpatialPool`` keeping all 50 tokens per frame; ``stride: 2`` pools the 7x7 grid
    to 4x4 + CLS). ``vision`` / ``seq2seq``: folders of pretrained tiny backbones (None = fresh)."""
    tokenizer = as_tokenizer(tokenizer)
    lm = (
        LanguageModelConfig(kind="seq2seq", pretrained=seq2seq)
        if seq2seq is not None
        else LanguageModelConfig(kind="seq2seq", hf_config=tiny_bart_config(tokenizer=tokenizer).to_dict())
    )
    config = VideoOFAConfig(
        vision=tiny_vision(vision),
        seq2seq=lm,
        temporal=dict(temporal) if temporal is not None else dict(DEFAULT_TEMPORAL),
        max_frames=max_frames,
    )
    return VideoOFAModel(config, tokenizer=tokenizer)


def videoofa_base(
    *, seq2seq: str = "facebook/bart-base", vision: str = "openai/clip-vit-base-patch16", max_frames: int = 8
) -> VideoOFAConfig:
    """VideoOFA with public checkpoints: CLIP ViT-B/16 (14x14 patches pooled by 2 -> 50 tokens
    per frame) + BART-base (1024 positions: 8 frames x 50 + the instruction fit)."""
    return VideoOFAConfig(
        vision=VisionTowerConfig(pretrained=vision, feature_layer=-2),
        seq2seq=LanguageModelConfig(kind="seq2seq", pretrained=seq2seq),
        temporal={**DEFAULT_TEMPORAL, "stride": 2},
        max_frames=max_frames,
    )
