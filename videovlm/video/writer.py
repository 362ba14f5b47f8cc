"""Encode frames to a video file with PyAV (used by the synthetic data set, tests and benchmarks)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float | Fraction = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    gop_size: int | None = None,
    max_b_frames: int | None = None,
    crf: int | None = None,
    options: dict[str, str] | None = None,
    threads: int = 1,
) -> Path:
    """Write ``(H, W, 3)`` uint8 RGB frames to ``path``; returns the path.

    ``threads=1`` by default so that the same frames give the same bytes on any machine
    (x264's frame threading makes output depend on the core count).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    opts = dict(options or {})
    if crf is not None:
        opts["crf"] = str(crf)
    if codec in ("libx264", "libx265"):
        opts.setdefault("threads", str(threads))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=opts)
        stream.pix_fmt = pix_fmt
        stream.thread_count = threads
        if gop_size is not None:
            stream.codec_context.gop_size = gop_size
        if max_b_frames is not None:
            stream.codec_context.max_b_frames = max_b_frames
        first = True
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if first:
                stream.height, stream.width = frame.shape[:2]
                first = False
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            container.mux(stream.encode(video_frame))
        if first:
            raise ValueError(f"{path}: no frames to write")
        container.mux(stream.encode(None))
    return path
