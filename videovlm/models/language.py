"""The language side: a BERT masked LM, a BART/T5 seq2seq model or a Llama/Qwen2 causal LM.

Loaded with the matching ``AutoModelFor...from_pretrained`` (hub id or folder) or built
fresh from a config dict; optional LoRA on it through ``peft``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, PreTrainedModel

from videovlm.models.hf import build_hf_model, enable_activation_checkpointing, load_hf_config

_AUTO_CLASSES = {"causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM, "masked": AutoModelForMaskedLM}


@dataclass
class LanguageModelConfig:
    """Fields:
    kind: ``causal`` (Llama, Qwen2, ...), ``seq2seq`` (BART, T5) or ``masked`` (BERT).
    pretrained: hub id or local folder; exactly one of ``pretrained`` and ``hf_config``.
    hf_config: a transformers config dict to build fresh weights (tiny presets, saved models).
    dtype: ``float32`` / ``bfloat16`` / ``float16`` or None for the checkpoint's default.
    gradient_checkpointing: turn on the HF model's activation checkpointing.
    """

    kind: Literal["causal", "seq2seq", "masked"] = "causal"
    pretrained: str | None = None
    hf_config: dict | None = None
    dtype: str | None = None
    gradient_checkpointing: bool = False


@dataclass
class LoraSettings:
    """LoRA on the language model (peft). Fields: r (rank), alpha (scale numerator),
    dropout, target_modules (module names inside the LM, e.g. Llama's q/k/v/o projections)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = field(default=("q_proj", "k_proj", "v_proj", "o_proj"))


def build_language_model(config: LanguageModelConfig, *, vocab_size: int | None = None) -> PreTrainedModel:
    """The HF model; its embeddings grow to ``vocab_size`` when a tokenizer has more tokens
    (added ``<video>`` / ``<image>`` placeholders on a real checkpoint's tokenizer)."""
    hf_config = load_hf_config(pretrained=config.pretrained, hf_config=config.hf_config, where="language")
    model = build_hf_model(
        model_class=_AUTO_CLASSES[config.kind],
        pretrained=config.pretrained,
        config=hf_config,
        dtype=config.dtype,
        where="language",
    )
    if vocab_size is not None and vocab_size > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    if config.gradient_checkpointing:
        enable_activation_checkpointing(model)
    return model


def saved_language_config(config: LanguageModelConfig, model: PreTrainedModel) -> LanguageModelConfig:
    """The config that rebuilds this LM offline (weights come from the family's safetensors)."""
    return LanguageModelConfig(
        kind=config.kind,
        pretrained=None,
        hf_config=model.config.to_dict(),
        dtype=config.dtype,
        gradient_checkpointing=config.gradient_checkpointing,
    )


def apply_lora(model: PreTrainedModel, settings: LoraSettings) -> nn.Module:
    """Wrap the LM in a peft LoRA model (only the adapters are trainable inside it)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
    )
    return get_peft_model(model, lora)


def unwrap_lora(model: nn.Module) -> PreTrainedModel:
    """The transformers model inside a peft wrapper (adapters still injected), or the model itself."""
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


def plain_language_model(model: nn.Module) -> PreTrainedModel:
    """The bare transformers model: LoRA (if any) merged into a copy, ready for save_pretrained."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        import copy

        return copy.deepcopy(model).merge_and_unload()
    return model
