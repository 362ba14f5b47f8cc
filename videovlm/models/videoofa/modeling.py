"""VideoOFA: a unified seq2seq model over visual tokens + instruction text (OFA, extended to video).

Encoder input: per-frame tokens of the vision tower (CLIP's CLS + patches, or a conv tower's
pooled vector + the cells of its last feature map), mapped to the seq2seq width by the
visual adapter, plus a learned frame (temporal) embedding and a learned "visual" type
embedding, followed by the embedded instruction text. The decoder generates the answer text.
Tasks (captioning, QA, video-text matching, frame order) differ only in the instruction
(``VideoOFAProcessor``).

Batch keys: ``pixel_values (B, T, C, H, W)``, ``frame_mask (B, T)``, ``input_ids`` /
``attention_mask (B, L)`` (the instruction), ``labels (B, L_target)``.
Parts: ``vision``, ``temporal`` (adapter + frame embedding), ``seq2seq``. The default trains
``temporal`` and ``seq2seq`` with the vision tower frozen.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from videovlm.models.base import (
    VideoFamilyModel,
    check_sequence_length,
    check_video_inputs,
    to_module_dtype,
)
from videovlm.models.configs import ModelConfigError
from videovlm.models.language import build_language_model
from videovlm.models.videoofa.configuration import FrameAdapterConfig, VideoOFAConfig
from videovlm.models.videoofa.processing import VideoOFAProcessor
from videovlm.models.tokenizer import load_tokenizer
from videovlm.models.vision import VisionTower


class FrameAdapter(nn.Module):
    """frame tokens (B, T, N, D_vis) + frame mask -> visual tokens (B, T*N', D), mask (B, T*N')."""

    def __init__(self, config: FrameAdapterConfig, *, vision_dim: int, model_dim: int, max_frames: int, has_cls: bool):
        super().__init__()
        if config.spatial_pool < 1:
            raise ModelConfigError(f"temporal.spatial_pool: must be >= 1, got {config.spatial_pool}")
        self.spatial_pool = config.spatial_pool
        self.has_cls = has_cls
        self.proj = nn.Linear(vision_dim, model_dim)
        self.norm = nn.LayerNorm(model_dim)
        self.frame_embedding = nn.Embedding(max_frames, model_dim)
        self.visual_type = nn.Parameter(torch.zeros(1, 1, 1, model_dim))
        self.dropout = nn.Dropout(config.dropout)
        nn.init.normal_(self.frame_embedding.weight, std=0.02)

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.spatial_pool == 1:
            return tokens
        batch = tokens.shape[0]
        cls = tokens[:, :, :1] if self.has_cls else tokens[:, :, :0]
        patches = tokens[:, :, 1:] if self.has_cls else tokens
        side = int(round(patches.shape[2] ** 0.5))
        if side * side != patches.shape[2]:
            raise ModelConfigError(f"temporal.spatial_pool: {patches.shape[2]} patch tokens are not a square grid")
        grid = rearrange(patches, "b t (h w) d -> (b t) d h w", h=side)  # (B*T, D, h, w)
        pooled = F.avg_pool2d(grid, self.spatial_pool, ceil_mode=True)
        pooled = rearrange(pooled, "(b t) d h w -> b t (h w) d", b=batch)  # (B, T, N', D)
        return torch.cat([cls, pooled], dim=2)

    def forward(self, frame_tokens: torch.Tensor, frame_mask: torch.Tensor):
        tokens = self._pool(frame_tokens)  # (B, T, N', D_vis)
        num_frames, per_frame = tokens.shape[1], tokens.shape[2]
        if num_frames > self.frame_embedding.num_embeddings:
            raise ValueError(f"pixel_values: {num_frames} frames but max_frames is {self.frame_embedding.num_embeddings}")
        frames = self.frame_embedding.weight[:num_frames]  # (T, D)
        x = self.norm(self.proj(tokens)) + rearrange(frames, "t d -> 1 t 1 d") + self.visual_type  # (B, T, N', D)
        mask = repeat(frame_mask, "b t -> b (t n)", n=per_frame)  # (B, T*N')
        return self.dropout(rearrange(x, "b t n d -> b (t n) d")), mask  # (B, T*N', D), (B, T*N')


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
        self.temporal = FrameAdapter(
            config.temporal,
            vision_dim=self.vision.hidden_size,
            model_dim=self.seq2seq.config.d_model,
            max_frames=config.max_frames,
            has_cls=self.vision.has_cls and self.vision.select == "all",
        )
        self.processor = self.PROCESSOR_CLASS.from_config(config, tokenizer=self.tokenizer, pixel=self.vision.pixel)

    def encoder_inputs(self, pixel_values, input_ids, attention_mask=None, frame_mask=None):
        """Encoder embeddings (B, T*N' + L, D) and mask: visual tokens first, then the text."""
        frame_mask = check_video_inputs(pixel_values, frame_mask, max_frames=self.config.max_frames)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        frame_tokens = to_module_dtype(self.vision(pixel_values), self.temporal)  # (B, T, N, D_vis)
        visual, visual_mask = self.temporal(frame_tokens, frame_mask)  # (B, V, D), (B, V)
        # The LM's own embedding module (BART's scales by sqrt(d_model) when configured).
        text = self.seq2seq.get_input_embeddings()(input_ids)  # (B, L, D)
        check_sequence_length(visual.shape[1] + text.shape[1], self.seq2seq.config, what="encoder input (visual + text)")
        embeds = torch.cat([visual.to(text.dtype), text], dim=1)
        mask = torch.cat([visual_mask.to(attention_mask.dtype), attention_mask], dim=1)
        return embeds, mask

    def forward(self, *, pixel_values, input_ids, attention_mask=None, labels=None, frame_mask=None, decoder_input_ids=None):
        embeds, mask = self.encoder_inputs(pixel_values, input_ids, attention_mask, frame_mask)
        return self.seq2seq(inputs_embeds=embeds, attention_mask=mask, labels=labels, decoder_input_ids=decoder_input_ids)

    @torch.no_grad()
    def generate(self, *, pixel_values, input_ids, attention_mask=None, frame_mask=None, **generate_kwargs: Any):
        """Decoder token ids (B, L_out) from the seq2seq ``generate`` (encoder run once, KV cache on)."""
        embeds, mask = self.encoder_inputs(pixel_values, input_ids, attention_mask, frame_mask)
        encoder_outputs = self.seq2seq.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
        return self.generate_with_language_model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_outputs.last_hidden_state),
            attention_mask=mask,
            **generate_kwargs,
        )

    def language_model(self) -> nn.Module:
        return self.seq2seq
