"""Model builders for the recipe YAMLs (``model: {_component_: videovlm.recipes.builders.X}``).

Each takes plain YAML values (folders as paths, nested settings as mappings), turns them into
the typed configs of ``videovlm.models`` and returns the family model. Tiny builders load the
tiny backbones made by ``recipes/backbones`` (or build fresh weights when a folder is None);
real builders name Hugging Face checkpoints and build on the machine that runs the recipe.
"""

from __future__ import annotations

from pathlib import Path

from videovlm.components import ComponentSpec
from videovlm.models import LoraSettings, config_from_dict
from videovlm.models.presets import (
    tiny_videobert,
    tiny_videollama,
    tiny_videoofa,
    videobert_base,
    videollama_7b,
    videollama_convnext_7b,
    videoofa_base,
)
from videovlm.models.videobert import VideoBertModel
from videovlm.models.videollama import VideoLlamaModel
from videovlm.models.videoofa import VideoOFAModel


def _folder(path: Path | str | None) -> str | None:
    return None if path is None else str(path)


def _lora(lora: dict | None) -> LoraSettings | None:
    return None if lora is None else config_from_dict(LoraSettings, lora, where="model.lora")


def tiny_videollama_model(
    *,
    tokenizer: Path,
    vision: Path | None = None,
    llm: Path | None = None,
    temporal: ComponentSpec | None = None,
    image_qformer: bool = False,
    lora: dict | None = None,
    max_frames: int = 16,
) -> VideoLlamaModel:
    """Tiny Video-LLaMA. ``tokenizer``: a folder with the shared tokenizer (any backbone's
    output folder); ``vision`` / ``llm``: pretrained tiny backbone folders; ``temporal``: the
    temporal encoder's spec ``{_component_: videovlm.models.temporal.X, ...}``, taken unbuilt
    (a ``ComponentSpec``): the model builds it with its frame-token width as ``input_dim`` and,
    for an encoder that reads the instruction, its tokenizer's ``vocab_size`` (default: a
    2-layer video Q-Former); ``lora``: LoRA settings (``r``, ``alpha``, ``dropout``,
    ``target_modules``) or None."""
    return tiny_videollama(
        tokenizer=str(tokenizer),
        vision=_folder(vision),
        llm=_folder(llm),
        temporal=temporal,
        image_qformer=image_qformer,
        lora=_lora(lora),
        max_frames=max_frames,
    )


def videollama_7b_model(
    *, llm: str = "lmsys/vicuna-7b-v1.5", vision: str = "openai/clip-vit-large-patch14", lora: dict | None = None, max_frames: int = 8
) -> VideoLlamaModel:
    """Video-LLaMA at paper scale (``videovlm.models.presets.videollama_7b``); downloads the
    checkpoints when built."""
    return VideoLlamaModel(videollama_7b(llm=llm, vision=vision, lora=_lora(lora), max_frames=max_frames))


def videollama_convnext_7b_model(
    *,
    llm: str = "lmsys/vicuna-7b-v1.5",
    vision: str = "facebook/convnext-large-384-22k-1k",
    image_size: int | None = None,
    lora: dict | None = None,
    max_frames: int = 8,
) -> VideoLlamaModel:
    """Video-LLaMA with a ConvNeXt-L tower, as ConvLLaVA (``videovlm.models.presets.videollama_convnext_7b``);
    downloads the checkpoints when built."""
    config = videollama_convnext_7b(llm=llm, vision=vision, image_size=image_size, lora=_lora(lora), max_frames=max_frames)
    return VideoLlamaModel(config)


def tiny_videoofa_model(
    *, tokenizer: Path, vision: Path | None = None, seq2seq: Path | None = None, temporal: ComponentSpec | None = None, max_frames: int = 8
) -> VideoOFAModel:
    """Tiny VideoOFA: tiny CLIP tower + tiny BART (pretrained backbone folders or fresh);
    ``temporal``: any temporal encoder spec, taken unbuilt as for Video-LLaMA (default:
    ``SpatialPool``, stride 1)."""
    return tiny_videoofa(
        tokenizer=str(tokenizer), vision=_folder(vision), seq2seq=_folder(seq2seq), temporal=temporal, max_frames=max_frames
    )


def videoofa_base_model(
    *, seq2seq: str = "facebook/bart-base", vision: str = "openai/clip-vit-base-patch16", max_frames: int = 8
) -> VideoOFAModel:
    """VideoOFA with BART-base + CLIP ViT-B/16 (``videovlm.models.presets.videoofa_base``)."""
    return VideoOFAModel(videoofa_base(seq2seq=seq2seq, vision=vision, max_frames=max_frames))


def tiny_videobert_model(
    *,
    tokenizer: Path,
    vision: Path | None = None,
    bert: Path | None = None,
    num_visual_words: int = 64,
    max_frames: int = 16,
    mlm_probability: float = 0.15,
) -> VideoBertModel:
    """Tiny VideoBERT with an unfitted codebook (see ``videovlm.recipes.videobert`` for the
    builder that also fits the hierarchical visual vocabulary)."""
    return tiny_videobert(
        tokenizer=str(tokenizer), vision=_folder(vision), bert=_folder(bert), num_visual_words=num_visual_words, max_frames=max_frames,
        mlm_probability=mlm_probability,
    )


def videobert_base_model(
    *, bert: str = "bert-base-uncased", vision: str = "openai/clip-vit-base-patch32", num_visual_words: int = 20736
) -> VideoBertModel:
    """VideoBERT with bert-base-uncased + CLIP ViT-B/32 (``videovlm.models.presets.videobert_base``)."""
    return VideoBertModel(videobert_base(bert=bert, vision=vision, num_visual_words=num_visual_words))
