"""VideoBERT presets: the tiny model that trains on 2 CPU cores (fresh weights, or the tiny
backbones a backbone recipe saved, passed as folders) and configs naming hub checkpoints
(building one downloads them, which is for a GPU machine, so tests only validate it)."""

from __future__ import annotations



from videovlm.models.language import LanguageModelConfig
from videovlm.models.tiny_configs import as_tokenizer, tiny_bert_config, tiny_vision
from videovlm.models.vision import VisionTowerConfig
from videovlm.models.videobert.configuration import VideoBertConfig
from videovlm.models.videobert.modeling import VideoBertModel


def tiny_videobert(
    *,
    tokenizer,
    vision: str | None = None,
    bert: str | None = None,
    num_visual_words: int = 64,
    max_frames: int = 16,
    mlm_probability: float = 0.15,
) -> VideoBertModel:
    """The tiny VideoBERT: tiny CLIP tower (pooled, one feature per frame) + tiny BERT with
    ``num_visual_words`` visual words. ``vision`` / ``bert``: pretrained tiny backbone folders."""
    tokenizer = as_tokenizer(tokenizer)
    lm = (
        LanguageModelConfig(kind="masked", pretrained=bert)
        if bert is not None
        else LanguageModelConfig(kind="masked", hf_config=tiny_bert_config(tokenizer=tokenizer).to_dict())
    )
    config = VideoBertConfig(
        vision=tiny_vision(vision, select="pooled"), bert=lm, num_visual_words=num_visual_words, max_frames=max_frames, mlm_probability=mlm_probability
    )
    return VideoBertModel(config, tokenizer=tokenizer)


def videobert_base(
    *, bert: str = "bert-base-uncased", vision: str = "openai/clip-vit-base-patch32", num_visual_words: int = 4096
) -> VideoBertConfig:
    """VideoBERT with public checkpoints: bert-base-uncased + CLIP ViT-B/32 pooled frame
    features quantised into ``num_visual_words`` visual words (fitted by the VideoBERT recipe's
    hierarchical k-means, ``videovlm.recipes.videobert``)."""
    return VideoBertConfig(
        vision=VisionTowerConfig(pretrained=vision, select="pooled"),
        bert=LanguageModelConfig(kind="masked", pretrained=bert),
        num_visual_words=num_visual_words,
        max_frames=32,
    )
