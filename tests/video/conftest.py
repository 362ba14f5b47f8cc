"""Fixtures for the video reader tests: small real videos generated in tmp dirs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from videovlm.video.writer import write_video


def moving_square_frames(num_frames: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Frames whose content identifies them: a bright square that moves one step per frame
    over a background whose level encodes the frame number (frame i has mean ~ 2 * i)."""
    frames = []
    for i in range(num_frames):
        frame = np.full((height, width, 3), (2 * i) % 256, dtype=np.uint8)
        x = (3 * i) % (width - 8)
        frame[8:16, x : x + 8] = 255
        frames.append(frame)
    return frames


@pytest.fixture(scope="session")
def ffmpeg_cli() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("the ffmpeg command line is not installed")
    return exe


def run_ffmpeg(ffmpeg: str, *args: str) -> None:
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="session")
def small_h264(tmp_path_factory) -> Path:
    """60 frames 64x48 at 30 fps, GOP 12 with B-frames: several GOPs to seek between."""
    path = tmp_path_factory.mktemp("videos") / "small.mp4"
    return write_video(path, moving_square_frames(60), fps=30, gop_size=12, max_b_frames=2, crf=18)


def decode_all_in_order(path: Path, stream_index: int | None = None) -> tuple[list[float], list[np.ndarray]]:
    """Oracle: every frame by a plain sequential PyAV decode, sorted by pts (no seeking)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.best("video") if stream_index is None else container.streams[stream_index]
        frames = sorted(((f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(stream)), key=lambda x: x[0])
        tb = float(stream.time_base)
    return [p * tb for p, _ in frames], [f for _, f in frames]


@pytest.fixture(scope="session")
def vfr_h264(small_h264, ffmpeg_cli, tmp_path_factory) -> Path:
    """Variable frame rate: frame n shown at (n + floor(n^2 / 40)) / 30 s, B-frames."""
    path = tmp_path_factory.mktemp("videos") / "vfr.mp4"
    run_ffmpeg(
        ffmpeg_cli, "-i", str(small_h264), "-vf", "setpts='(N+floor(N*N/40))/30/TB'", "-fps_mode", "passthrough",
        "-c:v", "libx264", "-bf", "2", "-g", "12", "-threads", "1", str(path),
    )
    return path
