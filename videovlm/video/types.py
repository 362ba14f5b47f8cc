"""Typed records shared by the readers, the samplers and everything downstream.

Canonical layouts: a decoded batch is ``(T, H, W, 3)`` uint8 RGB (what decoders give);
models take ``(B, T, C, H, W)`` float pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


class VideoDecodeError(RuntimeError):
    """A video cannot be opened or decoded. The message names the path and the reason."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class VideoMetadata:
    """What a demux-only index of one video stream says (never the container header).

    ``pts`` and ``keyframes`` are in presentation order; ``pts[i]`` is the presentation
    time in seconds of frame ``i``. ``width``/``height`` are the *display* size, i.e. after
    the rotation in ``rotation`` (degrees, counter-clockwise as FFmpeg's display matrix)
    has been applied.
    """

    path: str
    stream_index: int
    num_frames: int
    fps: float  # average rate: (num_frames - 1) / (pts[-1] - pts[0]) where defined
    duration: float  # seconds from the first frame's pts to the end of the last frame
    width: int
    height: int
    rotation: int
    codec: str
    keyframes: tuple[int, ...]
    pts: tuple[float, ...]
    start_time: float = 0.0  # pts of frame 0 (non-zero for some files)
    frame_durations: tuple[float, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class FrameBatch:
    """Decoded frames in the caller's order (duplicates allowed)."""

    frames: torch.Tensor  # (T, H, W, 3) uint8 RGB
    indices: tuple[int, ...]
    pts: tuple[float, ...]
