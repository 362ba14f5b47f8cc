"""Presets: tiny models that train on 2 CPU cores in minutes, and real ones naming hub checkpoints.

Tiny presets return a model (fresh weights, or the tiny backbones a backbone recipe saved,
passed as folders). Real presets return only a config: building it downloads the checkpoints
(``VideoLlamaModel(videollama_7b())``), which is for a GPU machine, so tests only validate it.
"""

from __future__ import annotations

import dataclasses

from transformers import AutoTokenizer, BartConfig, BertConfig, CLIPVisionConfig, LlamaConfig

from videovlm.models.language import LanguageModelConfig, LoraSettings
from videovlm.models.pixels import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, PixelConfig
from videovlm.models.projector import ProjectorConfig
from videovlm.models.qformer import ImageQFormerConfig
from videovlm.models.videobert import VideoBertConfig, VideoBertModel
from videovlm.models.videollama import VideoLlamaConfig, VideoLlamaModel
from videovlm.models.videoofa import FrameAdapterConfig, VideoOFAConfig, VideoOFAModel
from videovlm.models.vision import VisionTowerConfig

TINY_IMAGE_SIZE = 112
TINY_TEMPORAL = {
    "_component_": "videovlm.models.temporal.VideoQFormer",
    "num_queries": 8,
    "max_frames": 16,
    "num_layers": 2,
    "num_heads": 4,
}


def as_tokenizer(tokenizer):
    """A tokenizer object, or one loaded from a folder / hub id string."""
    return AutoTokenizer.from_pretrained(tokenizer, trust_remote_code=False) if isinstance(tokenizer, str) else tokenizer


def tiny_clip_vision_config(*, patch_size: int = 16) -> CLIPVisionConfig:
    """CLIP ViT, 128-d, 4 layers, 4 heads, 112 px, 16 px patches -> 49 patches + CLS
    (``patch_size=8``: 196 patches, 4x the tokens per frame)."""
    if TINY_IMAGE_SIZE % patch_size:
        raise ValueError(f"patch_size: must divide the image size {TINY_IMAGE_SIZE}, got {patch_size}")
    return CLIPVisionConfig(
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        image_size=TINY_IMAGE_SIZE,
        patch_size=patch_size,
        projection_dim=128,
    )


def tiny_llama_config(*, tokenizer) -> LlamaConfig:
    """Llama, 256-d, 4 layers, 4 heads, 512 intermediate, vocabulary = the tokenizer's."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )


def _tiny_vision(vision: str | None, select: str = "all") -> VisionTowerConfig:
    if vision is not None:
        return VisionTowerConfig(pretrained=vision, select=select)
    pixel = PixelConfig(image_size=TINY_IMAGE_SIZE, mean=CLIP_MEAN, std=CLIP_STD)
    return VisionTowerConfig(hf_config=tiny_clip_vision_config().to_dict(), select=select, pixel=pixel)


def tiny_videollama_config(
    *,
    tokenizer,
    temporal: dict | None = None,
    vision: str | None = None,
    llm: str | None = None,
    image_qformer: bool = False,
    lora: LoraSettings | None = None,
    max_frames: int = 16,
) -> VideoLlamaConfig:
    """Config of the tiny Video-LLaMA. ``vision`` / ``llm``: folders of pretrained tiny
    backbones (None = fresh weights); ``temporal``: any temporal encoder spec (default: a
    2-layer video Q-Former with 8 queries); ``image_qformer``: add a 2-layer, 8-query BLIP-2
    Q-Former per frame (default: the 50 patch tokens go straight to the video Q-Former)."""
    tokenizer = as_tokenizer(tokenizer)
    llm_config = (
        LanguageModelConfig(kind="causal", pretrained=llm)
        if llm is not None
        else LanguageModelConfig(kind="causal", hf_config=tiny_llama_config(tokenizer=tokenizer).to_dict())
    )
    qformer = (
        ImageQFormerConfig(num_queries=8, hidden_size=128, num_layers=2, num_heads=4, intermediate_size=256)
        if image_qformer
        else None
    )
    return VideoLlamaConfig(
        vision=_tiny_vision(vision),
        llm=llm_config,
        temporal=dict(temporal if temporal is not None else TINY_TEMPORAL),
        image_qformer=qformer,
        projector=ProjectorConfig(kind="linear"),
        lora=lora,
        max_frames=max_frames,
    )


def tiny_videollama(
    *,
    tokenizer,
    temporal: dict | None = None,
    vision: str | None = None,
    llm: str | None = None,
    image_qformer: bool = False,
    lora: LoraSettings | None = None,
    max_frames: int = 16,
) -> VideoLlamaModel:
    """The tiny Video-LLaMA model (see ``tiny_videollama_config``)."""
    tokenizer = as_tokenizer(tokenizer)
    config = tiny_videollama_config(
        tokenizer=tokenizer, temporal=temporal, vision=vision, llm=llm, image_qformer=image_qformer, lora=lora,
        max_frames=max_frames,
    )
    return VideoLlamaModel(config, tokenizer=tokenizer)


def videollama_7b(
    *,
    llm: str = "lmsys/vicuna-7b-v1.5",
    vision: str = "openai/clip-vit-large-patch14",
    lora: LoraSettings | None = None,
    max_frames: int = 8,
) -> VideoLlamaConfig:
    """Video-LLaMA at paper scale with public checkpoints: CLIP ViT-L/14 (penultimate layer,
    patch tokens, as LLaVA) -> BLIP-2-size image Q-Former (32 queries, 12 layers, trained in
    the image stage) -> video Q-Former (32 queries, 2 layers, 32 frame positions) -> linear ->
    a 7B Llama-family chat model in bf16 (``meta-llama/Llama-2-7b-chat-hf`` also fits)."""
    return VideoLlamaConfig(
        vision=VisionTowerConfig(pretrained=vision, feature_layer=-2, select="patch", dtype="bfloat16"),
        llm=LanguageModelConfig(kind="causal", pretrained=llm, dtype="bfloat16", gradient_checkpointing=True),
        temporal={
            "_component_": "videovlm.models.temporal.VideoQFormer",
            "num_queries": 32,
            "max_frames": 32,
            "num_layers": 2,
            "num_heads": 12,
            "hidden_size": 768,
        },
        image_qformer=ImageQFormerConfig(num_queries=32, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
        projector=ProjectorConfig(kind="linear"),
        lora=lora,
        max_frames=max_frames,
    )


def videollama_convnext_7b(
    *,
    llm: str = "lmsys/vicuna-7b-v1.5",
    vision: str = "facebook/convnext-large-384-22k-1k",
    image_size: int | None = None,
    lora: LoraSettings | None = None,
    max_frames: int = 8,
) -> VideoLlamaConfig:
    """``videollama_7b`` with a convolutional tower, as ConvLLaVA: ConvNeXt-L (ImageNet-22k,
    fine-tuned at 384 px; a transformers checkpoint: ``ConvNextModel`` loads it natively) in
    bf16, its last stage's feature map as the frame tokens (select ``patch``: 12x12 = 144
    tokens of 1536 channels at 384 px, the pooled vector left out as ConvLLaVA does) -> the
    same image Q-Former, video Q-Former, projector and LLM. Mean / std / size come from the
    checkpoint's preprocessor config; ``image_size`` runs the tower at another multiple of 32
    instead (ConvLLaVA's 768 px: 24x24 = 576 tokens), resized straight to the square."""
    pixel = None
    if image_size is not None:
        pixel = PixelConfig(image_size=image_size, resize="exact", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    tower = VisionTowerConfig(pretrained=vision, feature_layer=-1, select="patch", pixel=pixel, dtype="bfloat16")
    return dataclasses.replace(videollama_7b(llm=llm, lora=lora, max_frames=max_frames), vision=tower)


def tiny_bert_config(*, tokenizer) -> BertConfig:
    """BERT, 256-d, 4 layers, 4 heads, 512 intermediate, 128 positions (text + frames)."""
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=128,
        type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_bart_config(*, tokenizer) -> BartConfig:
    """BART, 256-d, 2 encoder + 2 decoder layers, 4 heads, 512 FFN, 1024 positions
    (8 frames x 50 tokens + the instruction fit the encoder)."""
    return BartConfig(
        vocab_size=len(tokenizer),
        d_model=256,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=512,
        decoder_ffn_dim=512,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=None,
    )


def tiny_videoofa(
    *, tokenizer, vision: str | None = None, seq2seq: str | None = None, spatial_pool: int = 1, max_frames: int = 8
) -> VideoOFAModel:
    """The tiny VideoOFA: tiny CLIP tower (all 50 tokens per frame, or pooled by ``spatial_pool``)
    + tiny BART. ``vision`` / ``seq2seq``: folders of pretrained tiny backbones (None = fresh)."""
    tokenizer = as_tokenizer(tokenizer)
    lm = (
        LanguageModelConfig(kind="seq2seq", pretrained=seq2seq)
        if seq2seq is not None
        else LanguageModelConfig(kind="seq2seq", hf_config=tiny_bart_config(tokenizer=tokenizer).to_dict())
    )
    config = VideoOFAConfig(
        vision=_tiny_vision(vision),
        seq2seq=lm,
        temporal=FrameAdapterConfig(spatial_pool=spatial_pool),
        max_frames=max_frames,
    )
    return VideoOFAModel(config, tokenizer=tokenizer)


def tiny_videobert(
    *, tokenizer, vision: str | None = None, bert: str | None = None, num_visual_words: int = 64, max_frames: int = 16
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
        vision=_tiny_vision(vision, select="pooled"), bert=lm, num_visual_words=num_visual_words, max_frames=max_frames
    )
    return VideoBertModel(config, tokenizer=tokenizer)


def videoofa_base(
    *, seq2seq: str = "facebook/bart-base", vision: str = "openai/clip-vit-base-patch16", max_frames: int = 8
) -> VideoOFAConfig:
    """VideoOFA with public checkpoints: CLIP ViT-B/16 (14x14 patches pooled by 2 -> 50 tokens
    per frame) + BART-base (1024 positions: 8 frames x 50 + the instruction fit)."""
    return VideoOFAConfig(
        vision=VisionTowerConfig(pretrained=vision, feature_layer=-2),
        seq2seq=LanguageModelConfig(kind="seq2seq", pretrained=seq2seq),
        temporal=FrameAdapterConfig(spatial_pool=2),
        max_frames=max_frames,
    )


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
