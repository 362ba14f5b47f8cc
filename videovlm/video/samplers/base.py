"""The sample record, the errors, the time window and the short-video policy shared by all samplers.

Times: a sampler's ``start``/``end`` window is in seconds from the video's first frame (what a
player shows), while ``FrameSample.pts`` are the stream's presentation times
(``metadata.pts``), which is what ``reader.get_frames_at`` takes. For most files the two agree;
for a file whose first frame has pts 8.333 s, ``start=1`` means pts 9.333 s.

"The frame at time t" is the frame displayed at t: the last frame whose pts is <= t. That is
correct for variable frame rate (VFR) streams, where index / fps arithmetic is not.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, fields
from typing import ClassVar, Sequence

import torch

from videovlm.video.types import VideoMetadata

# Container timestamps are rationals rounded to float; a time within this many seconds of a
# frame's pts selects that frame instead of the one before it.
TIME_EPS = 1e-6

SHORT_POLICIES = ("repeat", "pad", "error")


class SamplerSpecError(ValueError):
    """A sampler spec or builder argument is invalid. Names the spec and the bad token."""

    def __init__(self, spec: str, token: str, reason: str):
        self.spec = spec
        self.token = token
        self.reason = reason
        super().__init__(f"sampler spec {spec!r}: bad token {token!r}: {reason}")


class SamplingError(ValueError):
    """A valid sampler cannot sample this video (window past the end, short video with
    ``short=error``, no frames). Names the video path and the reason."""

    def __init__(self, path: str, spec: str, reason: str):
        self.path = str(path)
        self.spec = spec
        self.reason = reason
        super().__init__(f"{self.path}: sampler {spec!r}: {reason}")


@dataclass(frozen=True)
class FrameSample:
    """Which frames to decode, in the order the model sees them.

    Fields:
        indices: frame indices (presentation order, duplicates allowed) to decode.
        pts: presentation time in seconds of each index (``metadata.pts[i]``).
        valid: False where a position is padding (short policy ``pad``); the decoder still
            decodes ``indices`` there (the last real frame) and the training collate turns
            ``valid`` into the frame mask.
        clips: for the ``clips`` sampler, ``indices`` grouped per clip
            (``sum(clips, ()) == indices``); None for the other samplers.
        spec: the sampler spec that produced this sample (``parse_sampler(spec)`` rebuilds it).
    """

    indices: tuple[int, ...]
    pts: tuple[float, ...]
    valid: tuple[bool, ...]
    clips: tuple[tuple[int, ...], ...] | None
    spec: str

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class Window:
    """The frames of one video inside a sampler's time window.

    ``first``..``last`` (inclusive) are the frames displayed at some time in
    ``[t_start, t_end)``; ``t_start``/``t_end`` are presentation times in seconds; ``path``
    is the video's, for error messages.
    """

    path: str
    pts: Sequence[float]
    first: int
    last: int
    t_start: float
    t_end: float

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    @property
    def length(self) -> float:
        return self.t_end - self.t_start

    def frames(self) -> list[int]:
        return list(range(self.first, self.last + 1))

    def frame_at(self, t: float) -> int:
        """The frame displayed at presentation time ``t``, clamped to the window."""
        i = bisect_right(self.pts, t + TIME_EPS) - 1
        return min(max(i, self.first), self.last)

    def first_at_or_after(self, t: float) -> int:
        """The first frame whose pts is >= ``t`` (may be ``last + 1``)."""
        return max(bisect_left(self.pts, t - TIME_EPS), self.first)


def _video_end(metadata: VideoMetadata) -> float:
    """Presentation time at which the last frame stops being displayed."""
    pts = metadata.pts
    end = pts[0] + metadata.duration
    if end > pts[-1]:
        return end
    # Some containers report no duration: the last frame lasts as long as its recorded
    # duration, else as long as the frame before it, else 1 / fps.
    if metadata.frame_durations:
        last = metadata.frame_durations[-1]
    elif len(pts) > 1:
        last = pts[-1] - pts[-2]
    else:
        last = 1.0 / metadata.fps if metadata.fps > 0 else 0.0
    return pts[-1] + max(last, TIME_EPS)


@dataclass(frozen=True, kw_only=True)
class Sampler(ABC):
    """Base of every sampler: a frozen, picklable, comparable configuration.

    Fields shared by all samplers:
        start: window start in seconds from the first frame (None: the beginning).
        end: window end in seconds from the first frame (None: the end of the video).
        short: what to do when the window holds fewer frames than the sampler must return:
            ``repeat`` the last frame, ``pad`` (repeat it but mark it invalid), or ``error``.

    Subclasses set ``name`` (the spec's head), ``positional`` (the field written right after
    the colon) and ``options`` (spec key -> field name).
    """

    start: float | None = None
    end: float | None = None
    short: str = "repeat"

    name: ClassVar[str] = ""
    positional: ClassVar[str] = ""
    options: ClassVar[dict[str, str]] = {}
    common_options: ClassVar[dict[str, str]] = {"start": "start", "end": "end", "short": "short"}

    def __post_init__(self) -> None:
        def bad(token: str, reason: str) -> SamplerSpecError:
            return SamplerSpecError(f"{self.name}(...)", token, reason)

        if self.start is not None and not (_is_seconds(self.start) and self.start >= 0):
            raise bad("start", f"must be a finite number of seconds >= 0, got {self.start!r}")
        if self.end is not None and not (_is_seconds(self.end) and self.end > 0):
            raise bad("end", f"must be a finite number of seconds > 0, got {self.end!r}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise bad("end", f"must be after start ({self.end} <= {self.start})")
        if self.short not in SHORT_POLICIES:
            raise bad("short", f"must be one of {', '.join(SHORT_POLICIES)}, got {self.short!r}")
        self.validate(bad)

    def validate(self, bad) -> None:
        """Check the sampler's own fields; ``bad(token, reason)`` builds the error to raise."""

    @property
    def spec(self) -> str:
        """The canonical text spec; ``parse_sampler(s.spec) == s``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        defaults = {f.name: f.default for f in fields(self)}
        head = f"{self.name}:{_format_value(values[self.positional])}"
        parts = [head]
        for key, field_name in {**self.options, **self.common_options}.items():
            value = values[field_name]
            if value != defaults[field_name]:
                parts.append(f"{key}={_format_value(value)}")
        return ",".join(parts)

    def __str__(self) -> str:
        return self.spec

    def __call__(self, metadata: VideoMetadata, generator: torch.Generator | None = None) -> FrameSample:
        window = self.window(metadata)
        indices, valid, clips = self.select(metadata, window, generator)
        pts = metadata.pts
        return FrameSample(
            indices=tuple(indices),
            pts=tuple(float(pts[i]) for i in indices),
            valid=tuple(valid),
            clips=clips,
            spec=self.spec,
        )

    @abstractmethod
    def select(
        self, metadata: VideoMetadata, window: Window, generator: torch.Generator | None
    ) -> tuple[list[int], list[bool], tuple[tuple[int, ...], ...] | None]:
        """Pick ``(indices, valid, clips)`` inside ``window`` of ``metadata``'s video."""

    def window(self, metadata: VideoMetadata) -> Window:
        """The frames of ``metadata`` inside this sampler's ``start``/``end`` window."""
        pts = metadata.pts
        if not pts:
            raise SamplingError(metadata.path, self.spec, "the video has no frames (empty pts)")
        first_pts = pts[0]
        video_end = _video_end(metadata)
        t_start = first_pts + (self.start or 0.0)
        t_end = video_end if self.end is None else min(first_pts + self.end, video_end)
        if t_start >= video_end - TIME_EPS:
            raise SamplingError(
                metadata.path,
                self.spec,
                f"window start {self.start} s is at or past the end of the video "
                f"({video_end - first_pts:.3f} s long)",
            )
        first = max(bisect_right(pts, t_start + TIME_EPS) - 1, 0)
        last = max(bisect_left(pts, t_end - TIME_EPS) - 1, first)
        return Window(path=metadata.path, pts=pts, first=first, last=last, t_start=t_start, t_end=t_end)

    def fill_short(self, window: Window, need: int, frames: list[int] | None = None) -> tuple[list[int], list[bool]]:
        """Apply the short-video policy: all ``frames`` (default: every frame of the window),
        then the last one repeated (``repeat``) or marked invalid (``pad``) up to ``need``."""
        frames = window.frames() if frames is None else frames
        missing = need - len(frames)
        if missing <= 0:
            return frames, [True] * len(frames)
        if self.short == "error":
            raise SamplingError(
                window.path,
                self.spec,
                f"needs {need} frames but the window [{window.t_start:.3f}, {window.t_end:.3f}) s "
                f"({window.count} frames) gives only {len(frames)} (short=error)",
            )
        indices = frames + [frames[-1]] * missing
        valid = [True] * len(frames) + [self.short == "repeat"] * missing
        return indices, valid


def _is_seconds(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def spread(count: int, size: int) -> list[int]:
    """``count`` positions in ``range(size)`` at the centres of ``count`` equal parts."""
    return [min(int((k + 0.5) * size / count), size - 1) for k in range(count)]


def random_unit(count: int, generator: torch.Generator) -> list[float]:
    """``count`` draws from U[0, 1) from ``generator`` (float64, so one seed gives one sample)."""
    return torch.rand(count, generator=generator, dtype=torch.float64).tolist()
