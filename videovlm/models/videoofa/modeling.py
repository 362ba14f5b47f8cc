"""VideoOFA: a unified seq2seq model over visual tokens + instruction text (OFA, extended to video).

Encoder input: per-frame tokens of the vision tower (CLIP's CLS + patches, or a conv tower's
pooled vector + the cells of its last feature map), mapped to the seq2seq width by the
temporal encoder (the ``_component_`` slot Video-LLaMA has; default ``SpatialPool`` with
frame positions), a LayerNorm and a learned "visual" type embedding (``VisualTokens``),
followed by the embedded instruction text. The decoder generates the answer text.
Tasks (captioning, QA, video-text matching, frame order) differ only in the instruction
(``VideoOFAProcessor``).

Batch keys: ``pixel_values (B, T, C, H, W)`` (or ``frame_features (B, T, N, D_vis)``, the
frozen tower's cached output), ``frame_mask (B, T)``, ``input_ids`` /
``attention_mask (B, L)`` (the instruction), ``labels (B, L_target)``.
Parts: ``vision``, ``temporal`` (the temporal encoder + ``VisualTokens``), ``seq2seq``. The default trains
``temporal`` and ``seq2seq`` with the vision tower frozen.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from videovlm.models.base import (
    VideoFamilyModel,
    check_sequence_length,
    frame_limit,
    frame_tokens_from,
    temporal_defaults,
    to_module_dtype,
)
from videovlm.models.configs import ModelConfigError
from videovlm.models.language import build_language_model
from videovlm.models.videoofa.configuration import VideoOFAConfig
from videovlm.models.videoofa.processing import VideoOFAProcessor
from videovlm.models.temporal.spec import build_temporal_encoder, temporal_spec
from videovlm.models.tokenizer import load_tokenizer
from videovlm.models.vision import VisionTower


class VisualTokens(nn.Module):
    """The temporal encoder's video tokens (B, M, D) in the seq2seq encoder's input space: a
    LayerNorm (the text embeddings' scale) plus a learned "visual" type embedding, as OFA
    marks image tokens. ``encoder``: any ``videovlm.models.temporal`` encoder."""

    def __init__(self, encoder: nn.Module, *, model_dim: int):
        super().__init__()
        self.encoder = encoder
        self.norm = nn.LayerNorm(model_dim)
        self.visual_type = nn.Parameter(torch.zeros(1, 1, model_dim))

    def forward(self, frame_tokens: torch.Tensor, frame_mask: torch.Tensor):
        video = self.encoder(frame_tokens, frame_mask)  # (B, M, D), (B, M)
        return self.norm(video.tokens) + self.visual_type, video.mask


class VideoOFAModel(VideoFamilyModel):
    MODEL_TYPE = "videoofa"
    CONFIG_CLASS = VideoOFAConfig
    PROCESSOR_CLASS = VideoOFAProcessor
    PART_NAMES = ("vision", "temporal", "seq2seq")
    DEFAULT_TRAINABLE = ("temporal", "seq2seq")
    LANGUAGE_FIELD = "seq2seq"

    def __init__(self, config: VideoOFAConfig, *, tokenizer=None):
        super().__init__()
        self.config = config
        self.tokenizer = load_tokenizer(tokenizer, source=config.tokenizer or config.seq2seq.pretrained, where="videoofa")
        self.vision = VisionTower(config.vision)
        self.seq2seq = build_language_model(config.seq2seq, vocab_size=len(self.tokenizer))
        model_dim = self.seq2seq.config.d_model
        defaults = {"output_dim": model_dim, "max_frames": config.max_frames, "has_cls_token": self.vision.has_cls and self.vision.select == "all", **temporal_defaults(config)}
        encoder = build_temporal_encoder(config.temporal, input_dim=self.vision.hidden_size, defaults=defaults)
        if encoder.output_dim != model_dim:
            raise ModelConfigError(f"temporal.output_dim: {encoder.output_dim} but the seq2seq model is {model_dim}-d")
        self.temporal = VisualTokens(encoder, model_dim=model_dim)
        self.processor = self.PROCESSOR_CLASS.from_config(config, tokenizer=self.tokenizer, pixel=self.vision.pixel)

    def encoder_inputs(self, pixel_values=None, input_ids=None, attention_mask=None, frame_mask=None, *, frame_features=None):
        """Encoder embeddings (B, T*N' + L, D) and mask: visual tokens first, then the text.
        The video comes as exactly one of ``pixel_values`` and ``frame_features``."""
        if input_ids is None:
            raise ValueError("input_ids: required (the instruction)")
        tokens, frame_mask = frame_tokens_from(
            self.vision, pixel_values=pixel_values, frame_features=frame_features, frame_mask=frame_mask, max_frames=frame_limit(self.config)
        )  # (B, T, N, D_vis), (B, T)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        visual, visual_mask = self.temporal(to_module_dtype(tokens, self.temporal), frame_mask)  # (B, V, D), (B, V)
        # The LM's own embedding module (BART's scales by sqrt(d_model) when configured).
        text = self.seq2seq.get_input_embeddings()(input_ids)  # (B, L, D)
        check_sequence_length(visual.shape[1] + text.shape[1], self.seq2seq.config, what="encoder input (visual + text)")
        # Under a device map the embeddings may run on another device than the temporal encoder.
        embeds = torch.cat([visual.to(device=text.device, dtype=text.dtype), text], dim=1)
        mask = torch.cat([visual_mask.to(device=text.device, dtype=attention_mask.dtype), attention_mask.to(text.device)], dim=1)
        return embeds, mask

    def forward(self, *, input_ids, pixel_values=None, frame_features=None, attention_mask=None, labels=None, frame_mask=None, decoder_input_ids=None):
        embeds, mask = self.encoder_inputs(pixel_values, input_ids, attention_mask, frame_mask, frame_features=frame_features)
        return self.seq2seq(inputs_embeds=embeds, attention_mask=mask, labels=labels, decoder_input_ids=decoder_input_ids)

    @torch.no_grad()
    def generate(self, *, input_ids, pixel_values=None, frame_features=None, attention_mask=None, frame_mask=None, **generate_kwargs: Any):
        """Decoder token ids (B, L_out) from the seq2seq ``generate`` (encoder run once, KV cache on)."""
        embeds, mask = self.encoder_inputs(pixel_values, input_ids, attention_mask, frame_mask, frame_features=frame_features)
        encoder_outputs = self.seq2seq.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
        return self.generate_with_language_model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_outputs.last_hidden_state),
            attention_mask=mask,
            **generate_kwargs,
        )

    def saved_fields(self) -> dict[str, Any]:
        return {"temporal": temporal_spec(self.temporal.encoder)}

    def language_model(self) -> nn.Module:
        return self.seq2seq
