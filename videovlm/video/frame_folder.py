"""A folder of extracted frames (what ``videovlm extract`` writes: ``000000.jpg ...`` and
``frames.json``) read as a video, so it is accepted wherever a video path is.

Frame ``i`` of the folder is the i-th distinct source frame the extraction sampled, in
presentation order, with its source pts from ``frames.json`` (so a sampler's times and
``--timestamps`` speak of the original video). Padding repeats of a short video are stored
once. Images are read with PIL; ``resize`` scales them as the video backends do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from videovlm.video.backends import DecodeOptions
from videovlm.video.types import VideoDecodeError, VideoMetadata

FRAMES_JSON = "frames.json"


def is_frame_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / FRAMES_JSON).is_file()


class FrameFolderIndex:
    """The reader's view of a frame folder: metadata and time lookup (``FrameIndex``'s part)."""

    def __init__(self, folder: Path):
        record_path = folder / FRAMES_JSON
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            indices, pts, files = record["indices"], record["pts"], record["files"]
            width, height = int(record["width"]), int(record["height"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise VideoDecodeError(str(folder), f"{FRAMES_JSON} is not a frames record of videovlm extract ({type(e).__name__}: {e})") from None
        if not (len(indices) == len(pts) == len(files)) or not files:
            raise VideoDecodeError(str(folder), f"{FRAMES_JSON}: indices, pts and files must be non-empty lists of one length")
        first_file = {}
        for source, time, name in sorted(zip(indices, pts, files), key=lambda row: row[0]):
            first_file.setdefault(int(source), (float(time), name))
        ordered = sorted(first_file.values())
        self.files = [folder / name for _, name in ordered]
        times = tuple(t for t, _ in ordered)
        step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 1.0 / float(record.get("fps") or 1.0)
        self.metadata = VideoMetadata(
            path=str(folder), stream_index=int(record.get("stream", 0)), num_frames=len(times), fps=1.0 / step if step > 0 else 0.0,
            duration=times[-1] - times[0] + step, width=width, height=height, rotation=0, codec="images",
            keyframes=tuple(range(len(times))), pts=times, start_time=times[0],
        )

    def frame_at_time(self, seconds: float) -> int:
        meta = self.metadata
        if not (meta.pts[0] - 1e-6 <= seconds < meta.start_time + meta.duration):
            raise IndexError(f"{meta.path}: time {seconds!r} s is outside the frames [{meta.pts[0]:.6f}, {meta.start_time + meta.duration:.6f}) s")
        return max(i for i, t in enumerate(meta.pts) if t <= seconds + 1e-6)


class FrameFolderDecoder:
    """Reads a frame folder's images (the ``FrameDecoder`` protocol)."""

    name = "images"

    def __init__(self, index: FrameFolderIndex, options: DecodeOptions):
        self._index, self._options = index, options

    def decode(self, indices: Sequence[int]) -> torch.Tensor:
        from PIL import Image

        frames = []
        for i in indices:
            path = self._index.files[i]
            try:
                with Image.open(path) as image:
                    image = image.convert("RGB")
                    if self._options.resize is not None:
                        height, width = self._options.resize
                        image = image.resize((width, height), Image.Resampling.BICUBIC)
                    frames.append(np.asarray(image))
            except OSError as e:
                raise VideoDecodeError(self._index.metadata.path, f"frame file {path.name}: {e}") from None
        return torch.from_numpy(np.stack(frames))  # (T, H, W, 3)

    def close(self) -> None:
        pass
