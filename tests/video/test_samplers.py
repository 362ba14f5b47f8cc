"""Samplers on hand-built metadata: specs, windows, VFR, short videos, seeded jitter."""

from __future__ import annotations

import pytest
import torch

from videovlm.video.samplers import (
    FrameSample,
    SamplerSpecError,
    SamplingError,
    clips,
    fps,
    parse_sampler,
    segment,
    uniform,
)
from videovlm.video.types import VideoMetadata


def make_metadata(pts, *, duration=None, keyframes=(0,), path="clip.mp4") -> VideoMetadata:
    pts = tuple(float(p) for p in pts)
    if duration is None:
        duration = pts[-1] - pts[0] + (pts[-1] - pts[-2] if len(pts) > 1 else 0.04)
    return VideoMetadata(
        path=path,
        stream_index=0,
        num_frames=len(pts),
        fps=(len(pts) - 1) / (pts[-1] - pts[0]) if len(pts) > 1 else 25.0,
        duration=duration,
        width=64,
        height=48,
        rotation=0,
        codec="h264",
        keyframes=tuple(keyframes),
        pts=pts,
        start_time=pts[0],
    )


def cfr(num_frames=100, rate=25.0, start=0.0, **kw) -> VideoMetadata:
    return make_metadata([start + i / rate for i in range(num_frames)], **kw)


# 10 frames at 10 fps, then 5 frames at 1 fps: 6 s long, 15 frames.
VFR = make_metadata([i / 10 for i in range(10)] + [1.0, 2.0, 3.0, 4.0, 5.0], duration=6.0)


SPECS = [
    "uniform:8",
    "segment:8",
    "segment:8,jitter=0",
    "fps:2,min=4,max=64",
    "fps:0.5",
    "headtail:8",
    "clips:16,interval=2,num=4",
    "clips:4,jitter=1",
    "keyframes:16",
    "uniform:8,start=1.5,end=4",
    "keyframes:3,start=2,short=error",
    "headtail:6,short=pad",
]


@pytest.mark.parametrize("spec", SPECS)
def test_spec_round_trip(spec):
    sampler = parse_sampler(spec)
    assert sampler.spec == spec
    assert parse_sampler(sampler.spec) == sampler
    assert sampler(cfr(keyframes=(0, 50))).spec == spec


def test_spec_is_canonical_and_builders_match():
    assert parse_sampler(" fps:2.0,max=64,min=4 ").spec == "fps:2,min=4,max=64"
    assert parse_sampler("segment:8,jitter=true").spec == "segment:8"
    assert uniform(num_frames=8) == parse_sampler("uniform:8")
    assert segment(num_frames=8, jitter=False, start=1.0) == parse_sampler("segment:8,jitter=0,start=1")
    assert fps(rate=2, min_frames=4, max_frames=64).spec == "fps:2,min=4,max=64"
    assert clips(clip_len=16, frame_interval=2, num_clips=4).spec == "clips:16,interval=2,num=4"
    with pytest.raises(TypeError):
        uniform(8)  # builders are keyword-only
    with pytest.raises(SamplerSpecError, match="'start'.*seconds"):
        uniform(num_frames=8, start="1")
    with pytest.raises(SamplerSpecError, match="'rate'"):
        fps(rate=True)


@pytest.mark.parametrize(
    ("spec", "token"),
    [
        ("unif:8", "unif"),
        ("uniform", "uniform"),
        ("uniform:", "uniform:"),
        ("uniform:eight", "eight"),
        ("uniform:0", "0"),
        ("uniform:8,foo=1", "foo=1"),
        ("uniform:8,start", "start"),
        ("uniform:8,start=-1", "start=-1"),
        ("uniform:8,start=3,end=2", "end=2"),
        ("uniform:8,short=drop", "short=drop"),
        ("uniform:8,end=1,end=2", "end=2"),
        ("uniform:num=8", "num=8"),
        ("fps:0", "0"),
        ("fps:2,min=8,max=4", "max=4"),
        ("segment:8,jitter=maybe", "jitter=maybe"),
        ("clips:16,interval=0", "interval=0"),
    ],
)
def test_spec_errors_name_spec_and_token(spec, token):
    with pytest.raises(SamplerSpecError) as info:
        parse_sampler(spec)
    assert isinstance(info.value, ValueError)
    assert info.value.token == token
    assert repr(spec) in str(info.value) and repr(token) in str(info.value)


def test_uniform_cfr_centres_and_record():
    meta = cfr(100)
    sample = parse_sampler("uniform:4")(meta)
    assert isinstance(sample, FrameSample)
    assert sample.indices == (12, 37, 62, 87)
    assert sample.pts == tuple(meta.pts[i] for i in sample.indices)
    assert sample.valid == (True,) * 4 and sample.clips is None and len(sample) == 4


def test_vfr_selects_by_timestamps_not_indices():
    # Centres of six 1 s segments: 0.5 s is frame 5; 1.5 s .. 5.5 s are the 1 fps frames.
    assert parse_sampler("uniform:6")(VFR).indices == (5, 10, 11, 12, 13, 14)
    assert parse_sampler("fps:1")(VFR).indices == (5, 10, 11, 12, 13, 14)
    assert parse_sampler("fps:1,start=2,end=4")(VFR).indices == (11, 12)
    # Every frame when the rate is above the video's.
    assert parse_sampler("fps:100")(VFR).indices == tuple(range(15))


def test_non_zero_start_and_window():
    meta = cfr(50, rate=10, start=8.0)  # pts 8.0 .. 12.9
    sample = parse_sampler("uniform:2,start=1,end=2")(meta)
    assert sample.indices == (12, 17)
    assert sample.pts == pytest.approx((9.2, 9.7))
    # The window is clipped to the video; start inside the last frame still samples it.
    assert parse_sampler("uniform:1,start=4.95")(meta).indices == (49,)
    assert parse_sampler("uniform:2,start=4,end=99")(meta).indices == (42, 47)
    with pytest.raises(SamplingError, match="clip.mp4.*past the end"):
        parse_sampler("uniform:2,start=5")(meta)


def test_fps_count_clamps():
    meta = cfr(100)  # 4 s
    assert len(parse_sampler("fps:1")(meta)) == 4
    assert len(parse_sampler("fps:1,max=3")(meta)) == 3
    assert len(parse_sampler("fps:0.1,min=4")(meta)) == 4
    assert parse_sampler("fps:0.1")(meta).indices == (50,)


T, F = True, False
SHORT_CASES = [  # (spec, indices, valid under short=pad) on a 5-frame video
    ("uniform:8", [0, 1, 2, 3, 4, 4, 4, 4], [T] * 5 + [F] * 3),
    ("segment:8", [0, 1, 2, 3, 4, 4, 4, 4], [T] * 5 + [F] * 3),
    ("headtail:8", [0, 1, 2, 3, 4, 4, 4, 4], [T] * 5 + [F] * 3),
    ("fps:1,min=8", [0, 1, 2, 3, 4, 4, 4, 4], [T] * 5 + [F] * 3),
    # A clip spans 7 frames: both clips start at frame 0, the 4th position is past the end.
    ("clips:4,interval=2,num=2", [0, 2, 4, 4, 0, 2, 4, 4], [T, T, T, F, T, T, T, F]),
]


@pytest.mark.parametrize(("spec", "indices", "pad_valid"), SHORT_CASES)
@pytest.mark.parametrize("policy", ["repeat", "pad", "error"])
def test_short_video_policies(spec, indices, pad_valid, policy):
    meta = cfr(5)
    sampler = parse_sampler(f"{spec},short={policy}")
    generator = torch.Generator().manual_seed(0)
    if policy == "error":
        with pytest.raises(SamplingError, match="clip.mp4.*short=error"):
            sampler(meta, generator)
        return
    sample = sampler(meta, generator)
    assert list(sample.indices) == indices
    assert list(sample.valid) == (pad_valid if policy == "pad" else [T] * len(indices))


def test_seeded_jitter_is_deterministic_and_needs_a_generator():
    meta = cfr(100)
    sampler = parse_sampler("segment:8")
    first = sampler(meta, torch.Generator().manual_seed(7))
    again = sampler(meta, torch.Generator().manual_seed(7))
    assert first == again
    others = {sampler(meta, torch.Generator().manual_seed(s)).indices for s in range(5)}
    assert len(others) > 1
    # No generator: the evaluation centres, same as uniform.
    assert sampler(meta).indices == parse_sampler("uniform:8")(meta).indices
    # jitter=0 ignores the generator.
    assert parse_sampler("segment:8,jitter=0")(meta, torch.Generator().manual_seed(7)).indices == sampler(meta).indices


@pytest.mark.parametrize("meta", [cfr(100), VFR, cfr(37, rate=30, start=2.5)], ids=["cfr", "vfr", "offset"])
def test_segment_jitter_stays_inside_its_segment(meta):
    sampler = parse_sampler("segment:5")
    window = sampler.window(meta)
    step = window.length / 5
    ends = list(meta.pts[1:]) + [window.t_end]
    for seed in range(40):
        sample = sampler(meta, torch.Generator().manual_seed(seed))
        for k, i in enumerate(sample.indices):
            seg_start, seg_end = window.t_start + k * step, window.t_start + (k + 1) * step
            # The chosen frame is on screen at some moment of its segment.
            assert meta.pts[i] < seg_end and ends[i] > seg_start, (seed, k, i)


def test_headtail_halves():
    meta = cfr(100)
    sampler = parse_sampler("headtail:6")
    assert sampler(meta).indices == (8, 25, 41, 58, 75, 91)
    for seed in range(10):
        indices = sampler(meta, torch.Generator().manual_seed(seed)).indices
        assert all(i < 50 for i in indices[:3]) and all(i >= 50 for i in indices[3:])
        assert list(indices) == sorted(set(indices))
    # VFR: the second half (3 s .. 6 s) holds only three frames; the head makes up for it.
    assert parse_sampler("headtail:8")(VFR).indices[-3:] == (12, 13, 14)


def test_clips_grouping_and_jitter():
    meta = cfr(100)
    sample = parse_sampler("clips:4,interval=2,num=3")(meta)
    assert sample.clips is not None and len(sample.clips) == 3
    assert sum(sample.clips, ()) == sample.indices
    for clip in sample.clips:
        assert [b - a for a, b in zip(clip, clip[1:])] == [2, 2, 2]
    # Share of each clip start: (100 - 7 + 1) / 3 frames; centred starts.
    assert [clip[0] for clip in sample.clips] == [15, 47, 78]
    jittered = parse_sampler("clips:4,interval=2,num=3,jitter=1")
    for seed in range(10):
        starts = [c[0] for c in jittered(meta, torch.Generator().manual_seed(seed)).clips]
        share = 94 / 3
        assert all(int(k * share) <= s < (k + 1) * share for k, s in enumerate(starts))
        assert starts[-1] + 6 <= 99


def test_keyframes():
    meta = cfr(100, keyframes=(0, 30, 60, 90))
    assert parse_sampler("keyframes:16")(meta).indices == (0, 30, 60, 90)
    assert parse_sampler("keyframes:2")(meta).indices == (30, 90)
    assert parse_sampler("keyframes:16,start=1")(meta).indices == (30, 60, 90)
    # A window without a keyframe gives its first frame, or raises with short=error.
    assert parse_sampler("keyframes:4,start=1.3,end=2")(meta).indices == (32,)
    with pytest.raises(SamplingError, match="no keyframe"):
        parse_sampler("keyframes:4,start=1.3,end=2,short=error")(meta)


def test_empty_metadata_is_a_clear_error():
    meta = VideoMetadata(
        path="empty.mp4", stream_index=0, num_frames=0, fps=0.0, duration=0.0, width=1, height=1,
        rotation=0, codec="h264", keyframes=(), pts=(),
    )
    with pytest.raises(SamplingError, match="empty.mp4.*no frames"):
        parse_sampler("uniform:8")(meta)


def test_real_files_keyframes_window_and_pts_agree_with_reader(testvideos):
    from videovlm.video import open_video

    with open_video(testvideos / "nasa_13013.mp4", stream_index=3) as reader:
        meta = reader.metadata
        assert parse_sampler("keyframes:8")(meta).indices == (0, 240)
        sample = parse_sampler("fps:1")(meta)  # 13.013 s at 29.97 fps: the centre of each second
        assert sample.indices == tuple(range(15, 390, 30))
        assert reader.get_frames_at(sample.pts).indices == sample.indices
    with open_video(testvideos / "test_non_zero_start.mp4") as reader:
        # First frame at pts 8.333 s: the window counts from it.
        sample = parse_sampler("uniform:2,start=0.1,end=0.3")(reader.metadata)
        assert sample.indices == (4, 7)
        assert sample.pts[0] == pytest.approx(8.4663, abs=1e-3)
        assert reader.get_frames_at(sample.pts).indices == sample.indices
