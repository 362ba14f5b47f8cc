"""TimeSformer-style divided space-time attention: attention over time, then over space."""

from __future__ import annotations

from dataclasses import dataclass

from einops import rearrange, reduce, repeat
from torch import Tensor, nn

from videovlm.models.temporal.base import (
    AttentionStackConfig,
    TemporalEncoder,
    VideoTokens,
    feed_forward,
    output_projection,
    zero_masked_tokens,
)


@dataclass
class DividedSpaceTimeConfig(AttentionStackConfig):
    """Config of :class:`DividedSpaceTime`.

    Also ``max_frames``, ``num_layers``, ``num_heads``, ``mlp_ratio``, ``dropout``: see
    :class:`AttentionStackConfig`.

    Attributes:
        input_dim: D of the frame tokens (also the block width).
        output_dim: D_out of the video tokens (linear projection when it differs from D).
        pool_time: average the result over the real frames, giving N tokens (M = N) instead of
            every token of every frame (M = T * N).
    """

    pool_time: bool = False


class _DividedBlock(nn.Module):
    """One block: temporal attention per token position, spatial attention per frame, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.time_norm = nn.LayerNorm(dim)
        self.time_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.space_norm = nn.LayerNorm(dim)
        self.space_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.mlp = feed_forward(dim, mlp_ratio, dropout)

    def forward(self, tokens: Tensor, frame_mask: Tensor) -> Tensor:
        batch, _, num_tokens, _ = tokens.shape
        # Time: each of the N token positions attends over the T frames; padded frames are masked keys.
        along_time = rearrange(tokens, "b t n d -> (b n) t d")  # (B*N, T, D)
        padded_keys = repeat(~frame_mask, "b t -> (b n) t", n=num_tokens)  # (B*N, T)
        normed = self.time_norm(along_time)
        attended, _ = self.time_attention(normed, normed, normed, key_padding_mask=padded_keys, need_weights=False)
        along_time = along_time + attended
        # Space: the N tokens of one frame attend to each other; frames never mix here, so a
        # padded frame cannot reach a real one.
        along_space = rearrange(along_time, "(b n) t d -> (b t) n d", b=batch)  # (B*T, N, D)
        normed = self.space_norm(along_space)
        attended, _ = self.space_attention(normed, normed, normed, need_weights=False)
        along_space = along_space + attended
        along_space = along_space + self.mlp(along_space)
        return rearrange(along_space, "(b t) n d -> b t n d", b=batch)  # (B, T, N, D)


class DividedSpaceTime(TemporalEncoder):
    """(B, T, N, D) -> (B, T*N, D_out), or (B, N, D_out) with ``pool_time``.

    A learned frame position embedding is added to every token of a frame (without it the
    blocks would be permutation-equivariant in time and a reversed video would just give
    reversed outputs). Settings: :class:`DividedSpaceTimeConfig`.
    """

    config_class = DividedSpaceTimeConfig

    def __init__(self, config: DividedSpaceTimeConfig):
        super().__init__(config)
        dim = config.input_dim
        self.pool_time = config.pool_time
        self.frame_position = nn.Embedding(config.max_frames, dim)
        self.blocks = nn.ModuleList(
            _DividedBlock(dim, config.num_heads, config.mlp_ratio, config.dropout) for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.projection = output_projection(dim, self.output_dim)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return tokens_per_frame if self.pool_time else num_frames * tokens_per_frame

    def encode(self, frame_tokens: Tensor, frame_mask: Tensor) -> VideoTokens:
        num_frames, num_tokens = frame_tokens.shape[1:3]
        positions = self.frame_positions(self.frame_position, num_frames)
        tokens = frame_tokens + rearrange(positions, "t d -> 1 t 1 d")  # (B, T, N, D)
        for block in self.blocks:
            tokens = block(tokens, frame_mask)  # (B, T, N, D)
        tokens = self.projection(self.norm(tokens))  # (B, T, N, D_out)
        real = frame_mask[:, :, None, None].to(tokens.dtype)  # (B, T, 1, 1)
        if self.pool_time:
            pooled = reduce(tokens * real, "b t n d -> b n d", "sum") / reduce(real, "b t 1 1 -> b 1 1", "sum")
            mask = frame_mask.new_ones(pooled.shape[:2])  # (B, N)
            return VideoTokens(tokens=pooled, mask=mask)  # (B, N, D_out)
        flat = rearrange(tokens, "b t n d -> b (t n) d")  # (B, T*N, D_out)
        return zero_masked_tokens(flat, repeat(frame_mask, "b t -> b (t n)", n=num_tokens))
