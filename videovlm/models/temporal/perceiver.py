"""Flamingo-style Perceiver resampler: M learned latents cross-attend all frame tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from videovlm.models.temporal.base import (
    AttentionStackConfig,
    TemporalEncoder,
    VideoTokens,
    all_tokens_real,
    feed_forward,
    output_projection,
)


@dataclass
class PerceiverResamplerConfig(AttentionStackConfig):
    """Config of :class:`PerceiverResampler`.

    Also ``max_frames``, ``num_layers``, ``num_heads``, ``mlp_ratio``, ``dropout``: see
    :class:`AttentionStackConfig`.

    Attributes:
        input_dim: D of the frame tokens (also the latent width).
        output_dim: D_out of the video tokens (linear projection when it differs from D).
        num_latents: M, the number of learned latents = video tokens out (Flamingo uses 64).
    """

    num_latents: int = 64


class _ResamplerLayer(nn.Module):
    """Latents attend to [frame tokens; latents] (Flamingo's keys), then a feed-forward."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.media_norm = nn.LayerNorm(dim)
        self.latent_norm = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.mlp = feed_forward(dim, mlp_ratio, dropout)

    def forward(self, latents: Tensor, media: Tensor, padded_media: Tensor) -> Tensor:
        normed_latents = self.latent_norm(latents)  # (B, M, D)
        keys = torch.cat([self.media_norm(media), normed_latents], dim=1)  # (B, T*N + M, D)
        latent_visible = padded_media.new_zeros(latents.shape[:2])  # (B, M), latents are never padding
        padded_keys = torch.cat([padded_media, latent_visible], dim=1)  # (B, T*N + M)
        attended, _ = self.attention(normed_latents, keys, keys, key_padding_mask=padded_keys, need_weights=False)
        latents = latents + attended
        return latents + self.mlp(latents)  # (B, M, D)


class PerceiverResampler(TemporalEncoder):
    """(B, T, N, D) -> (B, num_latents, D_out).

    A learned time embedding is added to every token of a frame, the tokens of all frames are
    flattened to (B, T*N, D), and padded frames become masked keys. Settings:
    :class:`PerceiverResamplerConfig`.
    """

    config_class = PerceiverResamplerConfig

    def __init__(self, config: PerceiverResamplerConfig):
        super().__init__(config)
        dim = config.input_dim
        self.num_latents = config.num_latents
        self.frame_position = nn.Embedding(config.max_frames, dim)
        self.latents = nn.Parameter(torch.randn(config.num_latents, dim) * 0.02)  # (M, D)
        self.layers = nn.ModuleList(
            _ResamplerLayer(dim, config.num_heads, config.mlp_ratio, config.dropout) for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.projection = output_projection(dim, self.output_dim)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return self.num_latents

    def encode(self, frame_tokens: Tensor, frame_mask: Tensor) -> VideoTokens:
        batch, num_frames, num_tokens, _ = frame_tokens.shape
        positions = self.frame_positions(self.frame_position, num_frames)
        media = rearrange(frame_tokens + rearrange(positions, "t d -> 1 t 1 d"), "b t n d -> b (t n) d")  # (B, T*N, D)
        padded_media = repeat(~frame_mask, "b t -> b (t n)", n=num_tokens)  # (B, T*N)
        latents = repeat(self.latents, "m d -> b m d", b=batch)  # (B, M, D)
        for layer in self.layers:
            latents = layer(latents, media, padded_media)  # (B, M, D)
        tokens = self.projection(self.norm(latents))  # (B, M, D_out)
        return all_tokens_real(tokens)
