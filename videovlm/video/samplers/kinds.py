"""The six samplers and their keyword-only builders.

Each sampler is a frozen dataclass (picklable, so it crosses process boundaries to decode
workers) whose ``__call__(metadata, generator=None)`` returns a ``FrameSample``. Randomness
(``segment``/``headtail``/``clips`` jitter) happens only when the sampler's ``jitter`` flag
is on AND a ``torch.Generator`` is passed; without a generator every sampler is
deterministic (evaluation).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch

from videovlm.video.samplers.base import Sampler, SamplingError, Window, random_unit, spread


def _time_segments(window: Window, count: int, offsets: list[float]) -> list[int]:
    """The frame displayed at ``offsets[k]`` of the way through the k-th of ``count`` equal
    time segments of ``window`` (0.5 = the segment's centre)."""
    step = window.length / count
    return [window.frame_at(window.t_start + (k + offsets[k]) * step) for k in range(count)]


@dataclass(frozen=True, kw_only=True)
class FixedCountSampler(Sampler):
    """A sampler that returns exactly ``num_frames`` frames: a window holding fewer is a
    short video; otherwise ``pick`` chooses them."""

    num_frames: int

    positional = "num_frames"

    def validate(self, bad) -> None:
        _check_count(bad, "num_frames", self.num_frames)

    def select(self, metadata, window, generator):
        if window.count < self.num_frames:
            indices, valid = self.fill_short(window, self.num_frames)
            return indices, valid, None
        return self.pick(window, generator), [True] * self.num_frames, None

    @abstractmethod
    def pick(self, window: Window, generator: torch.Generator | None) -> list[int]:
        """``num_frames`` indices from a window that holds at least that many frames."""


@dataclass(frozen=True, kw_only=True)
class UniformSampler(FixedCountSampler):
    """``num_frames`` frames at the centres of equal time segments (Video-LLaMA, Video-LLaVA)."""

    name = "uniform"
    options = {}

    def pick(self, window, generator):
        return _time_segments(window, self.num_frames, [0.5] * self.num_frames)


@dataclass(frozen=True, kw_only=True)
class SegmentSampler(FixedCountSampler):
    """TSN: one frame per equal time segment, at a random time inside the segment when
    ``jitter`` is on and a generator is passed (training), else at its centre (evaluation)."""

    jitter: bool = True

    name = "segment"
    options = {"jitter": "jitter"}

    def pick(self, window, generator):
        if self.jitter and generator is not None:
            offsets = random_unit(self.num_frames, generator)
        else:
            offsets = [0.5] * self.num_frames
        return _time_segments(window, self.num_frames, offsets)


@dataclass(frozen=True, kw_only=True)
class FpsSampler(Sampler):
    """Frames at ``rate`` per second of the window, by timestamps (Qwen2-VL, LLaVA-Video).

    The count is ``round(window seconds * rate)`` clamped to ``[min_frames, max_frames]``
    and never above the frames the window holds (a rate above the video's gives every
    frame); fewer than ``min_frames`` frames in the window is a short video.
    """

    rate: float
    min_frames: int = 1
    max_frames: int | None = None

    name = "fps"
    positional = "rate"
    options = {"min": "min_frames", "max": "max_frames"}

    def validate(self, bad) -> None:
        if isinstance(self.rate, bool) or not (isinstance(self.rate, (int, float)) and 0 < self.rate < float("inf")):
            raise bad("rate", f"must be a number of frames per second > 0, got {self.rate!r}")
        _check_count(bad, "min", self.min_frames)
        if self.max_frames is not None:
            _check_count(bad, "max", self.max_frames)
            if self.max_frames < self.min_frames:
                raise bad("max", f"must be >= min ({self.max_frames} < {self.min_frames})")

    def select(self, metadata, window, generator):
        if window.count < self.min_frames:
            indices, valid = self.fill_short(window, self.min_frames)
            return indices, valid, None
        count = max(round(window.length * self.rate), self.min_frames, 1)
        if self.max_frames is not None:
            count = min(count, self.max_frames)
        if count >= window.count:
            return window.frames(), [True] * window.count, None
        return _time_segments(window, count, [0.5] * count), [True] * count, None


@dataclass(frozen=True, kw_only=True)
class HeadTailSampler(FixedCountSampler):
    """Video-LLaMA's ``headtail``: half the frames from the first half of the window, half
    from the second. Random distinct frames in each half (sorted) when ``jitter`` is on and a
    generator is passed; evenly spread in each half otherwise."""

    jitter: bool = True

    name = "headtail"
    options = {"jitter": "jitter"}

    def pick(self, window, generator):
        middle = min(window.first_at_or_after(window.t_start + window.length / 2), window.last + 1)
        head = range(window.first, middle)
        tail = range(middle, window.last + 1)
        # A VFR half may hold fewer frames than its share: the other half makes up for it.
        from_head = min(self.num_frames // 2, len(head))
        from_tail = min(self.num_frames - from_head, len(tail))
        from_head = self.num_frames - from_tail
        return self._pick(head, from_head, generator) + self._pick(tail, from_tail, generator)

    def _pick(self, frames: range, count: int, generator: torch.Generator | None) -> list[int]:
        if count == 0:
            return []
        if self.jitter and generator is not None:
            chosen = torch.randperm(len(frames), generator=generator)[:count].tolist()
            return [frames[i] for i in sorted(chosen)]
        return [frames[i] for i in spread(count, len(frames))]


@dataclass(frozen=True, kw_only=True)
class ClipsSampler(Sampler):
    """mmaction2's ``SampleFrames``: ``num_clips`` clips of ``clip_len`` frames taken every
    ``frame_interval`` frames, clip starts spread evenly over the window (centred; random
    inside each share when ``jitter`` is on and a generator is passed).

    A window shorter than one clip (``(clip_len - 1) * frame_interval + 1`` frames) is a
    short video: every clip starts at the window's first frame and positions past its last
    frame follow the short policy.
    """

    clip_len: int
    frame_interval: int = 1
    num_clips: int = 1
    jitter: bool = False

    name = "clips"
    positional = "clip_len"
    options = {"interval": "frame_interval", "num": "num_clips", "jitter": "jitter"}

    def validate(self, bad) -> None:
        _check_count(bad, "clip_len", self.clip_len)
        _check_count(bad, "interval", self.frame_interval)
        _check_count(bad, "num", self.num_clips)

    def select(self, metadata, window, generator):
        span = (self.clip_len - 1) * self.frame_interval + 1
        if window.count < span:
            one_clip = [f for f in range(window.first, window.first + span, self.frame_interval) if f <= window.last]
            clip, clip_valid = self.fill_short(window, self.clip_len, one_clip)
            clips = [clip] * self.num_clips
            valid = clip_valid * self.num_clips
        else:
            share = (window.count - span + 1) / self.num_clips
            if self.jitter and generator is not None:
                offsets = random_unit(self.num_clips, generator)
            else:
                offsets = [0.5] * self.num_clips
            starts = [window.first + int(share * (k + offsets[k])) for k in range(self.num_clips)]
            clips = [[s + j * self.frame_interval for j in range(self.clip_len)] for s in starts]
            valid = [True] * (self.clip_len * self.num_clips)
        indices = [i for clip in clips for i in clip]
        return indices, valid, tuple(tuple(clip) for clip in clips)


@dataclass(frozen=True, kw_only=True)
class KeyframesSampler(Sampler):
    """Up to ``max_frames`` keyframes of the window (``metadata.keyframes``), evenly spread
    over them when there are more: decoding them needs no inter-frame decoding, the fastest
    preview. A window holding no keyframe gives its first frame (short ``error``: raises)."""

    max_frames: int

    name = "keyframes"
    positional = "max_frames"
    options = {}

    def validate(self, bad) -> None:
        _check_count(bad, "max_frames", self.max_frames)

    def select(self, metadata, window, generator):
        keyframes = sorted(k for k in metadata.keyframes if window.first <= k <= window.last)
        if not keyframes:
            if self.short == "error":
                raise SamplingError(
                    metadata.path,
                    self.spec,
                    f"the window [{window.t_start:.3f}, {window.t_end:.3f}) s holds no keyframe (short=error)",
                )
            return [window.first], [True], None
        if len(keyframes) > self.max_frames:
            keyframes = [keyframes[i] for i in spread(self.max_frames, len(keyframes))]
        return keyframes, [True] * len(keyframes), None


def _check_count(bad, token: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad(token, f"must be an integer >= 1, got {value!r}")
