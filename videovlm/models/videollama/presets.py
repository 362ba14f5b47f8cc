"""Video-LLaMA presets: the tiny model that trains on 2 CPU cores (fresh weights, or the tiny
backbones a backbone recipe saved, passed as folders) and configs naming hub checkpoints
(building one downloads them, which is for a GPU machine, so tests only validate it)."""

from __future__ import annotations

import dataclasses


from videovlm.models.language import LanguageModelConfig, LoraSettings
from videovlm.models.pixels import IMAGENET_MEAN, IMAGENET_STD, PixelConfig
from videovlm.models.projector import ProjectorConfig
from videovlm.models.qformer import ImageQFormerConfig
from videovlm.models.tiny_configs import as_tokenizer, tiny_llama_config, tiny_vision
from videovlm.models.vision import VisionTowerConfig
from videovlm.models.videollama.configuration import VideoLlamaConfig
from videovlm.models.videollama.modeling import VideoLlamaModel


TINY_TEMPORAL = {
    "_component_": "videovlm.models.temporal.VideoQFormer",
    "num_queries": 8,
    "max_frames": 16,
    "num_layers": 2,
    "num_heads": 4,
}


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
        vision=tiny_vision(vision),
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


def videollama_released(
    *,
    blip2: str = "Salesforce/blip2-flan-t5-xxl",
    llm: str = "lmsys/vicuna-7b-v1.5",
    num_video_queries: int = 32,
    max_frame_pos: int = 32,
    video_layers: int = 2,
    video_heads: int = 12,
    video_intermediate_size: int = 3072,
    max_frames: int = 8,
    dtype: str | None = None,
) -> VideoLlamaConfig:
    """The shape of the released Video-LLaMA (DAMO-NLP-SG) vision-language branch, so that its
    checkpoints load exactly (``videovlm convert video-llama``): BLIP-2's frozen EVA ViT-g (all
    257 tokens after its ``ln_vision``) and image Q-Former with its query tokens, both read
    from a BLIP-2 checkpoint; a video Q-Former of ``video_layers`` BERT-base layers with
    cross-attention in each (their ``init_video_Qformer``), ``num_video_queries`` queries and
    ``max_frame_pos`` frame positions; a linear projection; the LLM. The defaults are theirs."""
    from transformers import AutoConfig

    blip2_config = AutoConfig.from_pretrained(blip2, trust_remote_code=False)
    hidden = int(blip2_config.qformer_config.hidden_size)
    return VideoLlamaConfig(
        vision=VisionTowerConfig(pretrained=blip2, feature_layer=-1, select="all", dtype=dtype),
        llm=LanguageModelConfig(kind="causal", pretrained=llm, dtype=dtype),
        temporal={
            "_component_": "videovlm.models.temporal.VideoQFormer",
            "num_queries": num_video_queries,
            "max_frames": max_frame_pos,
            "num_layers": video_layers,
            "num_heads": video_heads,
            "hidden_size": hidden,
            "intermediate_size": video_intermediate_size,
            "cross_attention_frequency": 1,
        },
        image_qformer=ImageQFormerConfig(num_queries=int(blip2_config.num_query_tokens), pretrained=blip2),
        projector=ProjectorConfig(kind="linear"),
        max_frames=max_frames,
    )
