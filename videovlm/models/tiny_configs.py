"""Tiny backbone configs shared by the families' presets and the backbone recipes: a CLIP ViT,
a Llama, a BERT and a BART small enough to train on 2 CPU cores in minutes."""

from __future__ import annotations

from transformers import AutoTokenizer, BartConfig, BertConfig, CLIPVisionConfig, LlamaConfig

from videovlm.models.pixels import CLIP_MEAN, CLIP_STD, PixelConfig
from videovlm.models.vision import VisionTowerConfig

TINY_IMAGE_SIZE = 112


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


def tiny_vision(vision: str | None, select: str = "all") -> VisionTowerConfig:
    """A pretrained tower folder (``vision``), or the tiny CLIP ViT with fresh weights (None)."""
    if vision is not None:
        return VisionTowerConfig(pretrained=vision, select=select)
    pixel = PixelConfig(image_size=TINY_IMAGE_SIZE, mean=CLIP_MEAN, std=CLIP_STD)
    return VisionTowerConfig(hf_config=tiny_clip_vision_config().to_dict(), select=select, pixel=pixel)
