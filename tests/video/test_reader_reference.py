"""Frame accuracy against the FFmpeg reference PNGs in ../shared/testvideos, per backend."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TESTVIDEOS
from videovlm.video import VideoDecodeError, available_backends, open_video

_REF = re.compile(r"(?P<video>.+)\.stream(?P<stream>\d+)\.frame(?P<frame>\d+)\.png$")
REFERENCES = sorted(p.name for p in TESTVIDEOS.glob("*.png")) if TESTVIDEOS.is_dir() else []
BACKENDS = ["auto", *available_backends()]


def _parse(name: str) -> tuple[str, int, int]:
    m = _REF.match(name)
    assert m, name
    return m["video"], int(m["stream"]), int(m["frame"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reference", REFERENCES or ["(no reference videos)"])
def test_right_frame_and_pts(testvideos, reference, backend):
    video, stream, frame = _parse(reference)
    expected = np.asarray(Image.open(testvideos / reference).convert("RGB"), dtype=np.float64)
    timing = json.loads((testvideos / f"{video}.stream{stream}.frames.json").read_text())
    try:
        reader = open_video(testvideos / video, backend=backend, stream_index=stream)
    except VideoDecodeError as e:
        # An explicit backend may refuse a file it would decode wrongly; auto never may.
        assert backend != "auto", e
        assert str(testvideos / video) in str(e) and re.search("disagree|wrong frames", e.reason), e
        return
    with reader:
        meta = reader.metadata
        assert meta.num_frames == len(timing)
        neighbours = [i for i in (frame - 2, frame - 1, frame, frame + 1, frame + 2) if 0 <= i < meta.num_frames]
        batch = reader.get_frames(neighbours)
    assert batch.frames.dtype == torch.uint8 and batch.frames.shape[1:] == expected.shape
    mad = [float(np.abs(f.numpy().astype(np.float64) - expected).mean()) for f in batch.frames]
    own = neighbours.index(frame)
    assert mad[own] <= 1.0, (backend, mad)
    assert mad[own] == min(mad), mad
    assert abs(batch.pts[own] - timing[frame]["pts_time"]) <= 1e-3
    assert batch.indices == tuple(neighbours)


def test_metadata_matches_ffprobe_timing(testvideos):
    for timing_file in sorted(testvideos.glob("*.frames.json")):
        video, stream = re.match(r"(.+)\.stream(\d+)\.frames\.json$", timing_file.name).groups()
        timing = json.loads(timing_file.read_text())
        with open_video(testvideos / video, backend="pyav", stream_index=int(stream)) as reader:
            meta = reader.metadata
        assert meta.num_frames == len(timing), video
        assert max(abs(a - t["pts_time"]) for a, t in zip(meta.pts, timing)) <= 1e-3, video
        assert meta.keyframes == tuple(t["index"] for t in timing if t["key_frame"]), video
        assert meta.start_time == pytest.approx(timing[0]["pts_time"], abs=1e-3)


def test_default_stream_is_ffmpeg_best_and_rotation_applied(testvideos):
    with open_video(testvideos / "nasa_13013.mp4") as reader:
        assert reader.metadata.stream_index == 3 and reader.metadata.num_frames == 390
        assert (reader.metadata.width, reader.metadata.height) == (480, 270)
    with open_video(testvideos / "nasa_13013_rotated.mp4") as reader:
        meta = reader.metadata
        assert (meta.rotation, meta.width, meta.height) == (90, 270, 480)
        assert reader.get_frames([0]).frames.shape == (1, 480, 270, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reference", REFERENCES or ["(no reference videos)"])
def test_decode_time_resize_matches_a_resize_of_the_reference(testvideos, reference, backend):
    """``resize=<short side>``: the decoder scales (and converts to RGB) in one step; the
    frame is the reference resized (PIL bicubic) to the same size, within a few levels."""
    from videovlm.video.reader import short_side_size

    video, stream, frame = _parse(reference)
    with Image.open(testvideos / reference) as image:
        full = image.convert("RGB")
    height, width = short_side_size(full.height, full.width, 96)
    expected = np.asarray(full.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    try:
        reader = open_video(testvideos / video, backend=backend, stream_index=stream, resize=96)
    except VideoDecodeError as e:
        assert backend != "auto", e
        return
    with reader:
        got = reader.get_frames([frame]).frames[0].numpy().astype(np.float64)
    assert got.shape == expected.shape == (height, width, 3)
    assert min(height, width) == 96
    assert np.abs(got - expected).mean() <= 4.0, (backend, np.abs(got - expected).mean())
