"""Decoder backends behind ``open_video``.

A backend is built from a :class:`~videovlm.video.index.FrameIndex` and decodes frames by
index. The reader owns validation, ordering and duplicates; a backend only gets sorted,
unique, in-range indices and returns their frames in that order, in display orientation,
resized when asked. Each backend lives in its own module and is imported only when used,
so a missing optional decoder (decord, torchcodec) never breaks the others.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

# Preference order of `backend="auto"` among the backends that are correct for a file,
# fastest first, as measured by benchmarks/decode.py (see docs/benchmarks.md).
BACKEND_NAMES: tuple[str, ...] = ("pyav", "torchcodec", "decord")


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode, shared by all backends.

    Attributes:
        num_threads: decoder threads; 0 lets FFmpeg choose (one per core).
        resize: ``(height, width)`` of the returned frames in display orientation, or
            ``None`` for the native size. Scaling happens in the decoder (swscale).
    """

    num_threads: int = 0
    resize: tuple[int, int] | None = None


class FrameDecoder(Protocol):
    """What the reader needs from a backend."""

    name: str

    def decode(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` (sorted, unique, in range) as ``(T, H, W, 3)`` uint8 RGB."""

    def close(self) -> None:
        """Release the file and decoder (idempotent)."""


def importable_backends() -> tuple[str, ...]:
    """Backends whose decoder library is installed, in ``BACKEND_NAMES`` order.

    Only checks that the module can be found: importing torchcodec loads FFmpeg shared
    libraries, which is left to the first real use (and reported as a clear error there).
    """
    modules = {"pyav": "av", "decord": "decord", "torchcodec": "torchcodec"}
    return tuple(name for name in BACKEND_NAMES if importlib.util.find_spec(modules[name]) is not None)


def coded_resize(resize: tuple[int, int] | None, rotation: int) -> tuple[int, int] | None:
    """The ``(height, width)`` to scale the stored picture to, before rotating it for display."""
    if resize is None:
        return None
    height, width = resize
    return (width, height) if rotation in (90, 270) else (height, width)


def rotate_to_display(frames: torch.Tensor, rotation: int) -> torch.Tensor:
    """Apply a counter-clockwise display rotation (FFmpeg display matrix) to stored frames.

    ``frames`` is ``(T, H, W, 3)``; rotating turns the ``(H, W)`` plane, so 90/270 swap them.
    """
    quarter_turns = (rotation // 90) % 4
    if quarter_turns == 0:
        return frames
    # dims (1, 2) are (H, W): k=1 turns counter-clockwise, as FFmpeg's autorotate does.
    return torch.rot90(frames, k=quarter_turns, dims=(1, 2)).contiguous()
