"""What a question is asked about: a video file sampled into frames, or frames given directly.

A video path is opened with ``videovlm.video.open_video`` and sampled with the QA sampler
(no generator: inference always takes the deterministic eval-time positions). Frames given
as a uint8 ``(T, H, W, 3)`` tensor or array are used as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch

from videovlm.paths import file_problem
from videovlm.video.types import VideoDecodeError

# What ``VideoQA.qa`` accepts as the video: a file path, or decoded uint8 frames (T, H, W, 3).
VideoInput = Union[str, Path, torch.Tensor, np.ndarray]

# Used when a model folder records no sampler (Video-LLaMA's eval setting: 8 frames).
FALLBACK_SAMPLER = "uniform:8"
# Files of a model folder that may name the sampler the model was trained with, in order:
# the model config (``sampler`` field) and the training engine's stage marker.
SAMPLER_SOURCES = ("config.json", "training_stage.json")


class QAInputError(ValueError):
    """A video, frames or question given to QA is unusable; the message names which and why."""


@dataclass(frozen=True)
class SampledFrames:
    """Frames for one question.

    Fields:
        frames: uint8 RGB ``(T, H, W, 3)``.
        valid: ``(T,)`` bool, False where the sampler padded a short video.
        times: seconds from the video's first frame of each sampled frame (None for raw frames).
        source: the path, or ``"<frames>"``, for messages.
    """

    frames: torch.Tensor
    valid: torch.Tensor
    times: tuple[float, ...] | None
    source: str


def model_sampler_spec(model_dir: str | Path, *, max_frames: int | None = None) -> str:
    """The sampler a model folder records (``sampler`` in config.json or training_stage.json),
    else ``uniform:N`` with N = min(8, max_frames). A training spec with jitter is fine here:
    without a generator every sampler takes its eval-time centres."""
    model_dir = Path(model_dir)
    for name in SAMPLER_SOURCES:
        path = model_dir / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise QAInputError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from e
        spec = data.get("sampler") if isinstance(data, dict) else None
        if spec is not None:
            if not isinstance(spec, str):
                raise QAInputError(f"{path}: field 'sampler' must be a sampler spec string, got {type(spec).__name__}")
            return spec
    if max_frames is not None and max_frames < 8:
        return f"uniform:{max_frames}"
    return FALLBACK_SAMPLER


def checked_decode_size(value) -> int | tuple[int, int] | None:
    """A decode size as ``open_video`` takes it: None, a short side or (height, width);
    ``QAInputError`` for anything else."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return (int(value[0]), int(value[1]))
    raise QAInputError(f"decode_size: expected auto, a short side or (height, width), got {value!r}")


def model_decode_size(model_dir: str | Path) -> int | tuple[int, int] | None:
    """The ``decode_size`` the model was trained with (recorded in training_stage.json by
    the engine), so QA decodes its frames as training did; None: full size."""
    path = Path(model_dir) / "training_stage.json"
    try:
        value = json.loads(path.read_text()).get("decode_size") if path.is_file() else None
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return checked_decode_size(value)


def load_frames(video: VideoInput, *, sampler, backend: str = "auto", times=None, decode_size=None) -> SampledFrames:
    """Sample and decode a video file, or check and wrap given frames (``times``: their
    seconds, optional, for ``--timestamps``). ``decode_size``: a short side or (height,
    width) the decoder scales to (``open_video``'s ``resize``); None: full size.

    Raises ``VideoDecodeError`` for a missing or undecodable file (the batch mode turns it
    into an error line) and ``QAInputError`` for frames of the wrong layout.
    """
    if isinstance(video, (str, Path)):
        return _decode(Path(video), sampler=sampler, backend=backend, decode_size=decode_size)
    frames = torch.as_tensor(video)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise QAInputError(
            f"frames: expected uint8 RGB (T, H, W, 3) with T >= 1, got dtype {frames.dtype} shape {tuple(frames.shape)}"
        )
    if times is not None:
        times = tuple(float(t) for t in times)
        if len(times) != frames.shape[0]:
            raise QAInputError(f"times: {len(times)} times for {frames.shape[0]} frames")
    return SampledFrames(frames=frames, valid=torch.ones(frames.shape[0], dtype=torch.bool), times=times, source="<frames>")


def _decode(path: Path, *, sampler, backend: str, decode_size=None) -> SampledFrames:
    from videovlm.video import open_video

    from videovlm.video.frame_folder import is_frame_folder

    problem = None if is_frame_folder(path) else file_problem(path)  # a folder or a symlink loop is named, not "not found"
    if problem is not None:
        raise VideoDecodeError(str(path), problem)
    with open_video(path, backend=backend, resize=decode_size) as reader:
        meta = reader.metadata
        try:
            sample = sampler(meta)
        except ValueError as e:  # SamplingError: e.g. a window past the end of a short video
            raise VideoDecodeError(str(path), f"cannot sample frames: {e}") from e
        batch = reader.get_frames(list(sample.indices))
    times = tuple(round(t - meta.start_time, 3) for t in sample.pts)
    return SampledFrames(frames=batch.frames, valid=torch.tensor(sample.valid, dtype=torch.bool), times=times, source=str(path))


def blank_frames_like(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """All-black frames of the same shape: uint8 zeros ``(T, H, W, 3)``.

    Black *pixels*, not zero model inputs: they go through the model's processor like any
    frames, so after its normalisation they become ``(0 - mean) / std``, the value a black
    frame really has (zeros after normalisation would be a mid-grey image)."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise QAInputError(f"frames: expected uint8 RGB (T, H, W, 3), got dtype {frames.dtype} shape {tuple(frames.shape)}")
    return torch.zeros_like(frames)


def blank_sampled_frames(frames: SampledFrames) -> SampledFrames:
    """``frames`` with black pixels in place of the picture; the validity mask (the sampler's
    padding) and the frame times are kept, so only what the frames show changes."""
    return SampledFrames(
        frames=blank_frames_like(frames.frames), valid=frames.valid, times=frames.times, source=f"black frames shaped like {frames.source}"
    )


def timestamp_prefix(times: tuple[float, ...] | None, *, source: str) -> str:
    """``"the video's 4 frames are sampled at 0.0s, 0.5s, 1.0s, 1.5s."`` (``--timestamps``)."""
    if times is None:
        raise QAInputError(f"{source}: --timestamps needs frame times; pass a video file (or frame times with the frames)")
    listed = ", ".join(f"{t:.1f}s" for t in times)
    return f"the video's {len(times)} frames are sampled at {listed}."
