"""BLIP-2-style image Q-Former: learned queries cross-attend each frame's patch tokens.

Uses transformers' ``Blip2QFormerModel``. Per frame, ``num_queries`` (32 in BLIP-2) query
vectors read the frame's N tokens, so a video of T frames becomes T x num_queries tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel

from videovlm.models.configs import ModelConfigError
from videovlm.models.hf import blip2_checkpoint_config, build_hf_model, hf_config_from_dict, read_checkpoint_tensor


@dataclass
class ImageQFormerConfig:
    """Fields:
    num_queries: learned query vectors per frame (BLIP-2: 32).
    hidden_size, num_layers, num_heads, intermediate_size: the Q-Former BERT stack.
    cross_attention_frequency: a cross-attention layer every k layers (BLIP-2: 2).
    pretrained: folder or hub id holding a ``Blip2QFormerModel`` to start from (optional), or a
        full BLIP-2 checkpoint (``Blip2ForConditionalGeneration``, e.g. ``Salesforce/blip2-opt-2.7b``):
        then its Q-Former and its 32 ``query_tokens`` are read from it, as Video-LLaMA's front end.
    hf_config: full transformers config dict (set when saving; overrides the size fields).
    """

    num_queries: int = 32
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    cross_attention_frequency: int = 2
    pretrained: str | None = None
    hf_config: dict | None = None


class ImageQFormer(nn.Module):
    """frame tokens (B, T, N, D_vis) -> query tokens (B, T, Q, D_q)."""

    def __init__(self, config: ImageQFormerConfig, *, vision_dim: int):
        super().__init__()
        blip2 = blip2_checkpoint_config(config.pretrained)
        if blip2 is not None:
            self._from_blip2(config, blip2)
            return
        if config.hf_config is not None:
            hf_config = hf_config_from_dict(config.hf_config, where="image_qformer.hf_config")
        else:
            hf_config = Blip2QFormerConfig(
                hidden_size=config.hidden_size,
                num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads,
                intermediate_size=config.intermediate_size,
                cross_attention_frequency=config.cross_attention_frequency,
                encoder_hidden_size=vision_dim,
            )
        self.qformer = build_hf_model(
            model_class=Blip2QFormerModel, pretrained=config.pretrained, config=hf_config, dtype=None, where="image_qformer"
        )
        self.hidden_size = int(self.qformer.config.hidden_size)
        self.queries = nn.Parameter(torch.zeros(1, config.num_queries, self.hidden_size))
        nn.init.normal_(self.queries, std=self.qformer.config.initializer_range)
        self.num_queries = config.num_queries

    def _from_blip2(self, config: ImageQFormerConfig, blip2) -> None:
        """The Q-Former and query tokens of a full BLIP-2 checkpoint (tensors ``qformer.*`` and
        ``query_tokens`` in its files)."""
        self.qformer = build_hf_model(
            model_class=Blip2QFormerModel, pretrained=config.pretrained, config=blip2.qformer_config, dtype=None,
            where="image_qformer", key_mapping={r"^qformer\.": ""},
        )
        self.hidden_size = int(self.qformer.config.hidden_size)
        queries = read_checkpoint_tensor(config.pretrained, "query_tokens")  # (1, Q, D_q)
        if tuple(queries.shape) != (1, config.num_queries, self.hidden_size):
            raise ModelConfigError(
                f"image_qformer.num_queries: {config.num_queries}, but {config.pretrained} has query_tokens {tuple(queries.shape)}"
            )
        self.queries = nn.Parameter(queries.float().clone())
        self.num_queries = config.num_queries

    def forward(self, frame_tokens: torch.Tensor) -> torch.Tensor:
        batch = frame_tokens.shape[0]
        flat = rearrange(frame_tokens, "b t n d -> (b t) n d")  # (B*T, N, D_vis)
        queries = repeat(self.queries, "1 q d -> bt q d", bt=flat.shape[0])  # (B*T, Q, D_q)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=flat).last_hidden_state
        return rearrange(out, "(b t) q d -> b t q d", b=batch)  # (B, T, Q, D_q)
