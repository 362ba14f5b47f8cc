"""A visual-token budget picks the frame count: ``max_visual_tokens`` instead of a fixed 8.

The language model's context holds the video's tokens; how many a frame count costs depends
on the temporal encoder (``num_output_tokens``: T x per-frame tokens for a pooling encoder, a
fixed M for a Q-Former). The frame count is the largest T, up to what the model accepts
(``max_frames``, or 256 with ``beyond_max_frames: interpolate``), whose tokens fit the budget.
"""

from __future__ import annotations

from videovlm.models.base import frame_limit

INTERPOLATION_CAP = 256  # frames tried when the model accepts any count


def tokens_per_frame(model) -> int:
    """Tokens of one frame as the temporal encoder receives them."""
    qformer = getattr(model, "image_qformer", None)
    return int(qformer.num_queries) if qformer is not None else int(model.vision.tokens_per_frame)


def frames_for_budget(model, max_visual_tokens: int) -> int:
    """The most frames whose video tokens fit ``max_visual_tokens`` (at least 1 frame must fit)."""
    if max_visual_tokens < 1:
        raise ValueError(f"max_visual_tokens: must be >= 1, got {max_visual_tokens}")
    temporal = getattr(model, "temporal", None)
    encoder = getattr(temporal, "encoder", temporal)  # VideoOFA wraps its encoder (VisualTokens)
    if encoder is None or not hasattr(encoder, "num_output_tokens"):
        raise ValueError(f"max_visual_tokens: {type(model).__name__} has no temporal encoder whose token count depends on frames")
    per_frame = tokens_per_frame(model)
    limit = min(frame_limit(model.config), INTERPOLATION_CAP)
    best = 0
    for frames in range(1, limit + 1):
        if encoder.num_output_tokens(frames, per_frame) <= max_visual_tokens:
            best = frames
    if best == 0:
        raise ValueError(f"max_visual_tokens: {max_visual_tokens} is fewer than one frame's {encoder.num_output_tokens(1, per_frame)} video tokens")
    return best
