"""Bad input gives a typed error naming the path and the reason; no leaks in long loops."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from tests.video.conftest import run_ffmpeg
from videovlm.video import VideoDecodeError, available_backends, open_video

BACKENDS = ["auto", *available_backends()]


def _expect_decode_error(path, match: str, **kwargs) -> VideoDecodeError:
    with pytest.raises(VideoDecodeError) as info:
        open_video(path, **kwargs)
    assert str(path) in str(info.value), info.value
    assert info.value.path == str(path)
    assert __import__("re").search(match, info.value.reason), info.value.reason
    return info.value


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_empty_directory_random(tmp_path, backend):
    _expect_decode_error(tmp_path / "missing.mp4", "no such file", backend=backend)
    (tmp_path / "empty.mp4").write_bytes(b"")
    _expect_decode_error(tmp_path / "empty.mp4", "empty", backend=backend)
    _expect_decode_error(tmp_path, "directory", backend=backend)
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    _expect_decode_error(noise, "not a readable media file|cannot be decoded|no video stream", backend=backend)


def test_truncated_files(tmp_path, small_h264, ffmpeg_cli):
    data = small_h264.read_bytes()  # moov at the end: a cut file has no sample table
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    _expect_decode_error(cut, "not a readable media file")
    # moov first (faststart): the sample table survives, the frames at the end do not.
    big = tmp_path / "big.mp4"
    run_ffmpeg(ffmpeg_cli, "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30", "-t", "2", "-c:v", "libx264",
               "-g", "12", "-bf", "2", "-threads", "1", "-movflags", "+faststart", str(big))
    data = big.read_bytes()
    cut_fast = tmp_path / "cut_faststart.mp4"
    cut_fast.write_bytes(data[: int(len(data) * 0.6)])
    _expect_decode_error(cut_fast, "truncated")


def test_audio_only_and_wrong_streams(tmp_path, small_h264, ffmpeg_cli, testvideos):
    audio = tmp_path / "audio.mp4"
    run_ffmpeg(ffmpeg_cli, "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(audio))
    _expect_decode_error(audio, "no video stream")
    _expect_decode_error(small_h264, "stream index 7 does not exist", stream_index=7)
    _expect_decode_error(testvideos / "nasa_13013.mp4", r"stream 1 is not a video stream \(its type is audio\)", stream_index=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_and_bad_indices(small_h264, backend):
    with open_video(small_h264, backend=backend) as video:
        for bad in ([60], [-1], [0, 1000]):
            with pytest.raises(IndexError, match=rf"{small_h264}.*out of range \(video has 60 frames\)"):
                video.get_frames(bad)
        with pytest.raises(TypeError, match="not an integer"):
            video.get_frames([1.5])
        assert video.get_frames([59]).frames.shape[0] == 1  # still usable after the errors
    with pytest.raises(VideoDecodeError, match="closed"):
        video.get_frames([0])


def test_unknown_backend_and_options(small_h264):
    with pytest.raises(ValueError, match="unknown backend 'opencv'"):
        open_video(small_h264, backend="opencv")
    with pytest.raises(ValueError, match="num_threads"):
        open_video(small_h264, num_threads=-1)


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc to read RSS")
@pytest.mark.parametrize("backend", BACKENDS)
def test_decoding_in_a_loop_does_not_grow_memory(small_h264, backend):
    def loop(n):
        for i in range(n):
            with open_video(small_h264, backend=backend) as video:
                video.get_frames([i % 60, 59 - i % 60])
        gc.collect()

    loop(40)  # warm up allocator pools and lazily loaded libraries
    before = _rss_mb()
    loop(200)
    growth = _rss_mb() - before
    assert growth < 8.0, f"{backend}: RSS grew {growth:.1f} MB over 200 open/decode/close cycles"
