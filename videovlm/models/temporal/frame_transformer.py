"""Frame position embedding + a transformer encoder over frames."""

from __future__ import annotations

from dataclasses import dataclass

from einops import rearrange, reduce, repeat
from torch import Tensor, nn

from videovlm.models.temporal.base import (
    AttentionStackConfig,
    TemporalEncoder,
    VideoTokens,
    output_projection,
    zero_masked_tokens,
)


@dataclass
class FrameTransformerConfig(AttentionStackConfig):
    """Config of :class:`FrameTransformer`.

    Also ``max_frames``, ``num_layers``, ``num_heads``, ``mlp_ratio``, ``dropout``: see
    :class:`AttentionStackConfig`.

    Attributes:
        input_dim: D of the frame tokens (also the transformer width).
        output_dim: D_out of the video tokens (linear projection when it differs from D).
        pool_patches: average the N tokens of each frame first, so the transformer runs over T
            frame tokens (M = T); False keeps every token (M = T * N) and attends over all of them.
    """

    pool_patches: bool = True


class FrameTransformer(TemporalEncoder):
    """(B, T, N, D) -> (B, T, D_out) with ``pool_patches`` else (B, T*N, D_out).

    A learned frame position embedding is added to every token of a frame, then a pre-norm
    ``nn.TransformerEncoder`` attends across frames with padded frames as masked keys.
    Settings: :class:`FrameTransformerConfig`.
    """

    config_class = FrameTransformerConfig

    def __init__(self, config: FrameTransformerConfig):
        super().__init__(config)
        dim = config.input_dim
        self.pool_patches = config.pool_patches
        self.frame_position = nn.Embedding(config.max_frames, dim)
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=config.num_heads,
            dim_feedforward=int(round(dim * config.mlp_ratio)),
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Nested tensors would drop padded positions in eval mode only; keep one code path.
        self.transformer = nn.TransformerEncoder(layer, num_layers=config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.projection = output_projection(dim, self.output_dim)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return num_frames if self.pool_patches else num_frames * tokens_per_frame

    def encode(self, frame_tokens: Tensor, frame_mask: Tensor) -> VideoTokens:
        num_tokens = frame_tokens.shape[2]
        positions = self.frame_positions(self.frame_position, frame_tokens.shape[1])
        if self.pool_patches:
            frames = reduce(frame_tokens, "b t n d -> b t d", "mean")  # (B, T, D)
            sequence = frames + rearrange(positions, "t d -> 1 t d")  # (B, T, D)
            token_mask = frame_mask  # (B, T)
        else:
            tokens = frame_tokens + rearrange(positions, "t d -> 1 t 1 d")  # (B, T, N, D)
            sequence = rearrange(tokens, "b t n d -> b (t n) d")  # (B, T*N, D)
            token_mask = repeat(frame_mask, "b t -> b (t n)", n=num_tokens)  # (B, T*N)
        encoded = self.transformer(sequence, src_key_padding_mask=~token_mask)  # (B, M, D)
        return zero_masked_tokens(self.projection(self.norm(encoded)), token_mask)  # (B, M, D_out)
