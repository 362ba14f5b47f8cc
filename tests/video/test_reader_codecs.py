"""Frame accuracy on real codecs and containers, against references from the ffmpeg command line.

Each case is a tiny file (64x48 to 160x120, 1-11 s) encoded in the test session by the
ffmpeg command line from its ``testsrc2`` source (every frame differs from its neighbours).
The references come from the ffmpeg command line too, never from the reader's own
libraries: the frames it decodes (``select`` + ``-fps_mode passthrough``, rotation applied
as ffmpeg does by default) and ffprobe's frame list (pts, keyframes). Cases whose encoder
the installed ffmpeg lacks are skipped, saying which.

The reader is asked for the frames in an order that seeks (last GOP first, a non-keyframe
before any keyframe), because the failures this guards against depended on it: a decoder
opened while the first packet was being skipped (libdav1d keeps that setting), and MPEG-TS
seeks that land after the keyframe they were aimed at.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from videovlm.video import VideoDecodeError, available_backends, open_video

BACKENDS = ["auto", *available_backends()]
SOURCE = "testsrc2=size={size}:rate={rate}:duration={seconds}"


@dataclass(frozen=True)
class Case:
    """One generated file: ffmpeg output options after ``-i testsrc2``."""

    name: str
    encoder: str  # the ffmpeg encoder it needs
    decoder: str  # the codec PyAV must be able to decode
    suffix: str
    args: tuple[str, ...]
    size: str = "96x64"
    rate: str = "25"
    seconds: float = 2.0
    filters: str = ""  # -vf before encoding (e.g. a VFR setpts)


X264 = ("-c:v", "libx264", "-preset", "veryfast", "-threads", "1")
CASES = [
    # AV1 in Matroska: SVT-AV1 (hierarchical, non-reference frames) with a non-zero start,
    # libaom with hidden alt-ref frames (show_existing_frame).
    Case("av1_svt_mkv", "libsvtav1", "av1", ".mkv",
         ("-c:v", "libsvtav1", "-preset", "12", "-g", "24", "-pix_fmt", "yuv420p", "-output_ts_offset", "1.5")),
    Case("av1_aom_mkv", "libaom-av1", "av1", ".mkv",
         ("-c:v", "libaom-av1", "-cpu-used", "8", "-g", "20", "-lag-in-frames", "10", "-row-mt", "0",
          "-threads", "1", "-pix_fmt", "yuv420p")),
    # MPEG-TS starts at 1.4 s even without an offset; these start at 10 s and 5 s.
    Case("h264_ts_start10", "libx264", "h264", ".ts", (*X264, "-g", "12", "-bf", "2", "-output_ts_offset", "10")),
    Case("mpeg2_ts_start5", "mpeg2video", "mpeg2video", ".ts",
         ("-c:v", "mpeg2video", "-g", "12", "-bf", "2", "-q:v", "3", "-output_ts_offset", "5")),
    # MPEG-PS: seeks land inside a packet, which the parser cuts and labels with the next pts.
    Case("mpeg2_ps_open_gop", "mpeg2video", "mpeg2video", ".mpg", ("-c:v", "mpeg2video", "-g", "12", "-bf", "2", "-q:v", "3", "-f", "mpeg")),
    Case("vp9_webm", "libvpx-vp9", "vp9", ".webm",
         ("-c:v", "libvpx-vp9", "-deadline", "good", "-cpu-used", "8", "-g", "20", "-lag-in-frames", "12",
          "-auto-alt-ref", "1", "-row-mt", "0", "-threads", "1", "-b:v", "300k")),
    Case("hevc_open_gop_mp4", "libx265", "hevc", ".mp4",
         ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
          "keyint=12:min-keyint=12:open-gop=1:bframes=3:b-adapt=0:scenecut=0:pools=1:frame-threads=1:log-level=error")),
    Case("h264_vfr_mkv", "libx264", "h264", ".mkv", (*X264, "-g", "12", "-bf", "2", "-fps_mode", "passthrough"),
         filters="setpts='(N+floor(N*N/40))/25/TB'"),
    Case("h264_rotated90_mp4", "libx264", "h264", ".mp4", (*X264, "-g", "12", "-bf", "2", "-metadata:s:v:0", "rotate=90")),
    Case("h264_yuv444_odd_mp4", "libx264", "h264", ".mp4", (*X264, "-g", "12", "-bf", "2", "-pix_fmt", "yuv444p"),
         size="67x45"),
    Case("mjpeg_avi", "mjpeg", "mjpeg", ".avi", ("-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-q:v", "3"), seconds=1.0),
    # One GOP of 330 frames (11 s): frames near the end are decoded from the first keyframe.
    Case("h264_long_gop_mp4", "libx264", "h264", ".mp4",
         (*X264, "-g", "400", "-keyint_min", "400", "-sc_threshold", "0", "-bf", "3"), size="64x48", rate="30", seconds=11.0),
]


@functools.lru_cache(maxsize=None)
def _ffmpeg_encoders(ffmpeg: str) -> frozenset[str]:
    out = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True, timeout=60).stdout
    return frozenset(m.group(1) for m in re.finditer(r"^ [VAS][\w.]{5} (\S+)", out, re.MULTILINE))


def _ffmpeg(ffmpeg: str, *args: str) -> None:
    # capture_output: some encoders (SVT-AV1) print banners whatever -loglevel says.
    run = subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


@dataclass(frozen=True)
class Reference:
    path: Path
    pts: list[float]  # ffprobe: pts of every frame, presentation order
    keyframes: list[int]
    frames: dict[int, np.ndarray]  # ffmpeg: decoded RGB of the checked frames (display orientation)


def _checked_frames(num_frames: int, keyframes: list[int]) -> list[int]:
    """Frames to compare: both ends, around the first keyframes after 0, the middle."""
    middle = num_frames // 2
    picked = {0, 1, middle - 1, middle, middle + 1, num_frames - 2, num_frames - 1}
    for k in [k for k in keyframes if k > 0][:2]:
        picked |= {k - 1, k, k + 1}
    return sorted(i for i in picked if 0 <= i < num_frames)


def _make_reference(case: Case, ffmpeg: str, ffprobe: str, folder: Path) -> Reference:
    path = folder / f"{case.name}{case.suffix}"
    source = SOURCE.format(size=case.size, rate=case.rate, seconds=case.seconds)
    _ffmpeg(ffmpeg, "-f", "lavfi", "-i", source, *(("-vf", case.filters) if case.filters else ()), *case.args, str(path))
    probe = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v:0",
         "-show_entries", "frame=pts_time,best_effort_timestamp_time,key_frame", "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )
    listed = json.loads(probe.stdout)["frames"]
    # FFmpeg 5.1's MPEG-PS demuxer gives some packets no pts; ffprobe then lists its guess.
    pts = [float(f.get("pts_time", f.get("best_effort_timestamp_time"))) for f in listed]
    keyframes = [i for i, f in enumerate(listed) if f["key_frame"]]
    checked = _checked_frames(len(pts), keyframes)
    select = "select='" + "+".join(f"eq(n,{i})" for i in checked) + "',format=rgb24"
    _ffmpeg(ffmpeg, "-i", str(path), "-map", "0:v:0", "-vf", select, "-fps_mode", "passthrough",
            str(folder / f"{case.name}.ref%03d.png"))
    pngs = sorted(folder.glob(f"{case.name}.ref*.png"))
    assert len(pngs) == len(checked), (case.name, len(pngs), checked)
    frames = {i: np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for i, p in zip(checked, pngs)}
    return Reference(path, pts, keyframes, frames)


@pytest.fixture(scope="session")
def codec_references(ffmpeg_cli, tmp_path_factory):
    """Builds each case's file and references once per session, on first use."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        pytest.skip("ffprobe (the reference pts and keyframes) is not installed")
    folder = tmp_path_factory.mktemp("codecs")
    made: dict[str, Reference] = {}

    def get(case: Case) -> Reference:
        if case.encoder not in _ffmpeg_encoders(ffmpeg_cli):
            pytest.skip(f"{case.name}: the installed ffmpeg has no {case.encoder} encoder")
        try:
            av.Codec(case.decoder, "r")
        except av.FFmpegError:
            pytest.skip(f"{case.name}: PyAV's FFmpeg has no {case.decoder} decoder")
        if case.name not in made:
            made[case.name] = _make_reference(case, ffmpeg_cli, ffprobe, folder)
        return made[case.name]

    return get


def _mad(frame: torch.Tensor, expected: np.ndarray) -> float:
    return float(np.abs(frame.numpy().astype(np.float64) - expected).mean())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_right_frame_and_pts(codec_references, case, backend):
    ref = codec_references(case)
    try:
        reader = open_video(ref.path, backend=backend)
    except VideoDecodeError as e:
        # An explicit backend may refuse a file it would decode wrongly (or cannot open at
        # all: decord's FFmpeg 4.1 has no AV1 decoder), always saying so; auto never may.
        assert backend != "auto", e
        assert str(ref.path) in str(e) and re.search("disagree|wrong frames|cannot open", e.reason), e
        return
    checked = sorted(ref.frames)
    with reader:
        meta = reader.metadata
        assert meta.num_frames == len(ref.pts), (meta.num_frames, len(ref.pts))
        assert max(abs(a - b) for a, b in zip(meta.pts, ref.pts)) <= 1e-3
        assert list(meta.keyframes) == ref.keyframes
        assert meta.start_time == pytest.approx(ref.pts[0], abs=1e-3)
        first_shape = next(iter(ref.frames.values())).shape
        assert (meta.height, meta.width, 3) == first_shape
        # Seeking order: the first request is a lone non-keyframe late in the file, then the
        # checked frames from the last backwards with their neighbours, then all at once.
        non_key = [i for i in checked if i not in ref.keyframes]
        requests = [[non_key[-1]]] if non_key else []
        requests += [[j for j in (i - 1, i, i + 1) if 0 <= j < meta.num_frames] for i in reversed(checked)]
        requests.append(checked[::-1] + checked[:2])
        for wanted in requests:
            batch = reader.get_frames(wanted)
            assert batch.indices == tuple(wanted) and batch.frames.dtype == torch.uint8
            assert batch.pts == pytest.approx([ref.pts[i] for i in wanted], abs=1e-3)
            for frame, i in zip(batch.frames, wanted):
                if i not in ref.frames:
                    continue
                mads = {j: _mad(frame, ref.frames[j]) for j in (i - 1, i, i + 1) if j in ref.frames}
                assert mads[i] <= 1.5, (case.name, backend, reader.backend, i, mads)
                assert mads[i] == min(mads.values()), (case.name, backend, i, mads)
