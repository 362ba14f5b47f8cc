"""Order-blind baseline: masked mean over the real frames."""

from __future__ import annotations

from dataclasses import dataclass

from einops import reduce
from torch import Tensor

from videovlm.models.temporal.base import (
    TemporalEncoder,
    TemporalEncoderConfig,
    VideoTokens,
    all_tokens_real,
    output_projection,
)


@dataclass
class MeanPoolConfig(TemporalEncoderConfig):
    """Config of :class:`MeanPool`.

    Attributes:
        input_dim: D of the frame tokens.
        output_dim: D_out; a linear projection is added only when it differs from ``input_dim``.
        pool_tokens: also average the N tokens of a frame, giving one video token (M = 1)
            instead of N (M = N, one per token position).
    """

    pool_tokens: bool = False


class MeanPool(TemporalEncoder):
    """Mean over real frames: (B, T, N, D) -> (B, N, D_out), or (B, 1, D_out) with ``pool_tokens``.

    Any permutation of the frames gives the same output, so it cannot tell a video from its
    reverse: it is the baseline that temporal questions should defeat. Settings: :class:`MeanPoolConfig`.
    """

    config_class = MeanPoolConfig

    def __init__(self, config: MeanPoolConfig):
        super().__init__(config)
        self.pool_tokens = config.pool_tokens
        self.projection = output_projection(config.input_dim, self.output_dim)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return 1 if self.pool_tokens else tokens_per_frame

    def encode(self, frame_tokens: Tensor, frame_mask: Tensor) -> VideoTokens:
        # Padded frames arrive zeroed, so a plain sum over T divided by the real count is the masked mean.
        num_real = frame_mask.sum(dim=1).to(frame_tokens.dtype)  # (B,)
        pooled = reduce(frame_tokens, "b t n d -> b n d", "sum") / num_real[:, None, None]  # (B, N, D)
        if self.pool_tokens:
            pooled = reduce(pooled, "b n d -> b 1 d", "mean")  # (B, 1, D)
        tokens = self.projection(pooled)  # (B, M, D_out)
        return all_tokens_real(tokens)
