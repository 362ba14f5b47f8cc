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
