"""Reader semantics on generated videos: order, duplicates, times, VFR, mkv/webm, options."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from tests.video.conftest import decode_all_in_order, moving_square_frames, run_ffmpeg
from videovlm.video import VideoDecodeError, available_backends, open_video, select_backend
from videovlm.video.backends import DecodeOptions
from videovlm.video.index import build_index
from videovlm.video.writer import write_video

BACKENDS = ["auto", *available_backends()]


def _mad(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.numpy().astype(np.float64) - b.astype(np.float64)).mean())


def _assert_frames_match(path, batch, oracle_frames, backend):
    for frame, i in zip(batch.frames, batch.indices):
        mads = {j: _mad(frame, oracle_frames[j]) for j in (i - 1, i, i + 1) if 0 <= j < len(oracle_frames)}
        assert mads[i] <= 1.0 and mads[i] == min(mads.values()), (path, backend, i, mads)


@pytest.mark.parametrize("backend", BACKENDS)
def test_caller_order_and_duplicates(small_h264, backend):
    pts, oracle = decode_all_in_order(small_h264)
    wanted = [59, 0, 13, 13, 12, 40, 0, 11, 24]
    with open_video(small_h264, backend=backend) as video:
        assert video.metadata.num_frames == 60 and len(video) == 60
        batch = video.get_frames(wanted)
        again = video.get_frames(torch.tensor([5, 3]))  # second request on the same reader, going back
        # One frame per request, forward through a GOP: each request decodes on its own.
        for i in range(20, 26):
            _assert_frames_match(small_h264, video.get_frames([i]), oracle, backend)
    assert batch.frames.shape == (len(wanted), 48, 64, 3) and batch.frames.dtype == torch.uint8
    assert batch.indices == tuple(wanted)
    assert batch.pts == pytest.approx([pts[i] for i in wanted], abs=1e-6)
    assert torch.equal(batch.frames[2], batch.frames[3]) and torch.equal(batch.frames[1], batch.frames[6])
    _assert_frames_match(small_h264, batch, oracle, backend)
    _assert_frames_match(small_h264, again, oracle, backend)


def test_get_frames_at_is_the_frame_displayed_at_t(small_h264):
    with open_video(small_h264, backend="pyav") as video:
        meta = video.metadata
        step = 1 / 30
        batch = video.get_frames_at([0.0, step * 0.99, step, 1.0, meta.pts[-1] + 0.5 * step, meta.pts[7]])
        assert batch.indices == (0, 0, 1, 30, 59, 7)
        assert batch.pts[3] == pytest.approx(1.0)
        for t in (-0.001, meta.start_time + meta.duration, 100.0):
            with pytest.raises(IndexError, match=str(small_h264)):
                video.get_frames_at([t])
        assert video.get_frames([]).frames.shape == (0, 48, 64, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate_by_pts(vfr_h264, backend):
    pts, oracle = decode_all_in_order(vfr_h264)
    expected = [(n + n * n // 40) / 30 for n in range(60)]
    assert pts == pytest.approx(expected, abs=1e-3)  # the file really is VFR
    try:
        video = open_video(vfr_h264, backend=backend)
    except VideoDecodeError as e:
        assert backend == "decord" and "disagree" in e.reason, e  # refused, never a wrong frame
        return
    with video:
        meta = video.metadata
        assert meta.num_frames == 60 and meta.pts == pytest.approx(expected, abs=1e-3)
        assert meta.frame_durations[:-1] == pytest.approx(np.diff(expected).tolist(), abs=1e-3)
        batch = video.get_frames_at([expected[50] + 0.01, expected[10], expected[59]])
        assert batch.indices == (50, 10, 59)
        _assert_frames_match(vfr_h264, batch, oracle, backend)
        _assert_frames_match(vfr_h264, video.get_frames([1, 30, 45, 46]), oracle, backend)


@pytest.mark.parametrize("codec,suffix", [("libvpx", ".webm"), ("libvpx-vp9", ".webm"), ("libx264", ".mkv")])
def test_matroska_where_header_counts_lie(tmp_path, codec, suffix):
    import av

    path = write_video(tmp_path / f"clip{suffix}", moving_square_frames(40), fps=25, codec=codec, gop_size=10)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # what the header says
    pts, oracle = decode_all_in_order(path)
    for backend in BACKENDS:
        try:
            video = open_video(path, backend=backend)
        except VideoDecodeError as e:
            assert backend == "decord" and re.search("disagree|wrong frames", e.reason), e
            continue
        with video:
            assert video.metadata.num_frames == 40
            assert video.metadata.pts == pytest.approx(pts, abs=1e-3)
            _assert_frames_match(path, video.get_frames([39, 0, 17, 21, 9]), oracle, backend)


def test_resize_and_threads(testvideos):
    path = testvideos / "nasa_13013_rotated.mp4"
    for backend in BACKENDS:
        with open_video(path, backend=backend, resize=(64, 36), num_threads=1) as video:
            assert video.get_frames([0, 5]).frames.shape == (2, 64, 36, 3), backend
    with pytest.raises(ValueError, match="resize"):
        open_video(path, resize=(0, 10))


def test_auto_with_pyav_alone(small_h264):
    index = build_index(small_h264)
    decoder = select_backend(index, DecodeOptions(), importable=["pyav"])
    try:
        assert decoder.name == "pyav"
    finally:
        decoder.close()
    with pytest.raises(VideoDecodeError, match="none importable"):
        select_backend(index, DecodeOptions(), importable=[])
    with pytest.raises(ValueError, match="unknown backends"):
        select_backend(index, DecodeOptions(), importable=["opencv"])


def test_auto_falls_back_where_decord_is_wrong(testvideos):
    # HEVC with keyframes every 2 frames: decord counts frames from the keyframe and
    # returns the neighbour (checked in test_reader_reference); auto must not choose it.
    index = build_index(testvideos / "h265_video.mp4")
    assert index.has_leading_frames
    decoder = select_backend(index, DecodeOptions(), importable=["decord", "pyav"])
    try:
        assert decoder.name == "pyav"
    finally:
        decoder.close()


def test_avi_with_b_frames_never_a_wrong_frame(tmp_path, ffmpeg_cli):
    # MPEG-4 part 2 in AVI with B-frames: torchcodec 0.13 returns neighbouring frames for
    # late indices and decord sees leading frames; both must refuse, PyAV must be right.
    path = tmp_path / "bframes.avi"
    run_ffmpeg(ffmpeg_cli, "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-t", "3", "-c:v", "mpeg4",
               "-bf", "2", "-g", "12", "-threads", "1", str(path))
    pts, oracle = decode_all_in_order(path)
    wanted = [50, 3, 20, 21, 22, 74, 0]
    for backend in BACKENDS:
        try:
            with open_video(path, backend=backend) as video:
                assert video.metadata.pts == pytest.approx(pts, abs=1e-6)
                batch = video.get_frames(wanted)
        except VideoDecodeError as e:
            assert backend in ("decord", "torchcodec") and str(path) in str(e), e
            continue
        _assert_frames_match(path, batch, oracle, backend)


def test_single_frame_video(tmp_path):
    path = write_video(tmp_path / "one.mp4", moving_square_frames(1), fps=25)
    with open_video(path) as video:
        meta = video.metadata
        assert (meta.num_frames, meta.keyframes, meta.start_time) == (1, (0,), 0.0)
        assert meta.duration == pytest.approx(0.04, abs=1e-3)
        assert video.get_frames_at([0.0, 0.039]).indices == (0, 0)
        with pytest.raises(IndexError):
            video.get_frames_at([0.04])


def test_variable_rate_avi_whose_header_counts_gaps(tmp_path, ffmpeg_cli):
    import av

    path = tmp_path / "gaps.avi"
    run_ffmpeg(ffmpeg_cli, "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-t", "2", "-vf",
               "setpts='(N+floor(N*N/40))/25/TB'", "-fps_mode", "passthrough", "-c:v", "mpeg4", "-threads", "1", str(path))
    pts, oracle = decode_all_in_order(path)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames > len(pts)  # the header counts the gaps too
    for backend in BACKENDS:
        try:
            video = open_video(path, backend=backend)
        except VideoDecodeError as e:
            assert backend == "decord" and "disagree" in e.reason, e
            continue
        with video:
            assert video.metadata.num_frames == len(pts) and video.metadata.pts == pytest.approx(pts, abs=1e-6)
            _assert_frames_match(path, video.get_frames([len(pts) - 1, 3, 15]), oracle, backend)
