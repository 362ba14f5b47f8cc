"""Video-LLaMA's video Q-Former: frame position embedding, then M learned queries over all frame tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor, nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel

from videovlm.models.temporal.base import (
    TemporalEncoder,
    TemporalEncoderConfig,
    VideoTokens,
    all_tokens_real,
    check_num_frames,
    grid_side,
    output_projection,
    sine_grid_code,
)


@dataclass
class VideoQFormerConfig(TemporalEncoderConfig):
    """Config of :class:`VideoQFormer`.

    Attributes:
        input_dim: D of the frame tokens (the Q-Former's ``encoder_hidden_size``).
        output_dim: D_out of the video tokens (linear projection when it differs from hidden_size).
        num_queries: M, the number of learned query tokens = video tokens out.
        max_frames: size of the learned frame position embedding (T must not exceed it).
        num_layers: Q-Former layers.
        num_heads: attention heads (must divide hidden_size).
        hidden_size: Q-Former width; ``None`` means input_dim.
        intermediate_size: Q-Former feed-forward width; ``None`` means 4 * hidden_size.
        cross_attention_frequency: a cross-attention to the frame tokens every this many layers
            (Video-LLaMA uses 1: every layer; BLIP-2's image Q-Former uses 2).
        dropout: hidden and attention dropout inside the Q-Former.
        input_norm: a LayerNorm over each frame token's channels first (Video-LLaMA's
            ``ln_vision``); a frozen tower's channels can be far from unit scale (the tiny conv
            tower's tokens have norms of 25-46), which slows the Q-Former's attention.
        grid_positions: add a fixed 2D sine code (DETR's) to the patch-grid tokens of every
            frame. A ViT's output tokens carry their position (its position embedding went in
            first); a convolutional tower's feature map does not, and the Q-Former's
            cross-attention is order-blind over the keys, so without it "where" is lost and
            motion direction cannot be read.
        has_cls_token: with ``grid_positions``, token 0 of each frame is a pooled / CLS token
            before a square grid (the conv towers' pooled vector, CLIP's CLS) and gets no code.
        frame_positions: ``False`` leaves out the frame position embedding, and with it every
            notion of frame order (the keys are then a set over frames and cells): the
            order-blind control of the same recipe (``recipes/videollama/tiny_order_blind.yaml``).
    """

    num_queries: int = 32
    max_frames: int = 32
    num_layers: int = 2
    num_heads: int = 4
    hidden_size: int | None = None
    intermediate_size: int | None = None
    cross_attention_frequency: int = 1
    dropout: float = 0.0
    input_norm: bool = False
    grid_positions: bool = False
    has_cls_token: bool = False
    frame_positions: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size is None:
            self.hidden_size = self.input_dim
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        super().__post_init__()
        self.require_divisible("hidden_size", "num_heads")


class VideoQFormer(TemporalEncoder):
    """(B, T, N, D) -> (B, num_queries, D_out) with transformers' ``Blip2QFormerModel``.

    As in Video-LLaMA, a learned frame position embedding is added to every token of a frame;
    the tokens of all frames are then flattened to (B, T*N, D) keys for the Q-Former's
    cross-attention, with padded frames' tokens removed by ``encoder_attention_mask``.
    Settings: :class:`VideoQFormerConfig`.
    """

    config_class = VideoQFormerConfig

    def __init__(self, config: VideoQFormerConfig):
        super().__init__(config)
        self.num_queries = config.num_queries
        self.has_cls_token = config.has_cls_token
        self.grid_positions = config.grid_positions
        self.input_norm = nn.LayerNorm(config.input_dim) if config.input_norm else nn.Identity()
        self.max_frames = config.max_frames
        self.frame_position = nn.Embedding(config.max_frames, config.input_dim) if config.frame_positions else None
        self.query_tokens = nn.Parameter(torch.randn(1, config.num_queries, int(config.hidden_size)) * 0.02)  # (1, M, Dq)
        self.qformer = self.build_qformer(config)
        self.projection = output_projection(int(config.hidden_size), self.output_dim)

    def build_qformer(self, config: VideoQFormerConfig) -> nn.Module:
        """The Q-Former itself (the instruction-aware subclass builds InstructBLIP's)."""
        return Blip2QFormerModel(Blip2QFormerConfig(**qformer_settings(config)))

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return self.num_queries

    def frame_keys(self, frame_tokens: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Frame tokens (already through ``input_norm``) + grid positions (if set) + frame
        positions, flattened to the cross-attention keys (B, T*N, D) and their mask (B, T*N),
        1 = a real frame's token."""
        _, num_frames, num_tokens, dim = frame_tokens.shape
        owner = type(self).__name__
        if self._config.beyond_max_frames != "interpolate":
            check_num_frames(num_frames, self.max_frames, owner=owner)
        tokens = frame_tokens
        if self.frame_position is not None:
            positions = self.frame_positions(self.frame_position, num_frames)
            tokens = tokens + rearrange(positions, "t d -> 1 t 1 d")  # (B, T, N, D)
        if self.grid_positions:
            side = grid_side(num_tokens, has_cls_token=self.has_cls_token, owner=owner)
            code = sine_grid_code(side, dim).to(tokens)  # (h*w, D)
            if self.has_cls_token:
                code = torch.cat([code.new_zeros(1, dim), code])  # (N, D): none for the CLS token
            tokens = tokens + code  # (B, T, N, D)
        keys = rearrange(tokens, "b t n d -> b (t n) d")  # (B, T*N, D)
        return keys, repeat(frame_mask, "b t -> b (t n)", n=num_tokens).long()

    def encode(self, frame_tokens: Tensor, frame_mask: Tensor) -> VideoTokens:
        frame_tokens = self.input_norm(frame_tokens)  # (B, T, N, D)
        keys, key_mask = self.frame_keys(frame_tokens, frame_mask)
        queries = self.query_tokens.expand(frame_tokens.shape[0], -1, -1)  # (B, M, Dq)
        output = self.qformer(query_embeds=queries, encoder_hidden_states=keys, encoder_attention_mask=key_mask)
        video = self.projection(output.last_hidden_state)  # (B, M, D_out)
        return all_tokens_real(video)


def qformer_settings(config: VideoQFormerConfig) -> dict:
    """The Q-Former keyword arguments shared by transformers' BLIP-2 and InstructBLIP configs."""
    return {
        "hidden_size": int(config.hidden_size),
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": int(config.intermediate_size),
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.dropout,
        "cross_attention_frequency": config.cross_attention_frequency,
        "encoder_hidden_size": config.input_dim,
    }
