"""Decode benchmark: ms per video to sample 8 and 32 uniform frames, per reader.

    python benchmarks/decode.py [--workdir DIR] [--repeats 3] [--threads 0]

Videos: (a) the NASA clip of ../shared/testvideos (stream 3, 480x270, 390 frames),
(b) a generated 5-minute 640x360 30 fps h264 with GOP 250 and B-frames, (c) a generated
60-second 1920x1080 30 fps h264. (b) and (c) are made once with the ffmpeg command line
and kept in --workdir.

Readers: videovlm (``auto`` and each backend it may use), decord ``get_batch``, PyAV
decoding from the start (what Hugging Face's ``read_video_pyav`` example does), PyAV
seeking once per sampled frame, and torchcodec ``get_frames_at`` (exact seek mode) when
importable. Every row opens the file, samples, and closes it (what a data loader does per
video). The table prints the best (minimum) of --repeats runs, the usual estimate of the
uncontended time on a shared machine, and for the PyAV-based readers the frames decoded
per sampled frame.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import av

from videovlm.video import open_video

REPO_ROOT = Path(__file__).resolve().parents[1]
NASA = REPO_ROOT.parent / "shared" / "testvideos" / "nasa_13013.mp4"


def uniform_indices(num_frames: int, count: int) -> list[int]:
    """Centres of ``count`` equal segments (what the uniform sampler returns at eval time)."""
    return [min(int((k + 0.5) * num_frames / count), num_frames - 1) for k in range(count)]


def generate(ffmpeg: str, path: Path, *, size: str, seconds: int, gop: int, bframes: int) -> Path:
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.mp4")
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", str(bframes), str(tmp),
    ]
    print(f"generating {path.name} ({size}, {seconds} s) ...", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    tmp.rename(path)
    return path


# Each reader: (path, stream_index, num_frames, indices, threads) -> frames decoded (or None).
def read_videovlm(backend: str) -> Callable:
    def read(path, stream, num_frames, indices, threads):
        with open_video(path, backend=backend, stream_index=stream, num_threads=threads) as video:
            video.get_frames(indices)
            return video.frames_decoded
    return read


def read_decord(path, stream, num_frames, indices, threads):
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
    reader.get_batch(indices).asnumpy()
    del reader
    return None


def read_pyav_from_start(path, stream, num_frames, indices, threads):
    """Hugging Face's ``read_video_pyav``: decode from frame 0, keep the wanted ones by count."""
    wanted = set(indices)
    kept, decoded = [], 0
    with av.open(str(path)) as container:
        video_stream = container.streams[stream]
        video_stream.thread_type = "AUTO"
        video_stream.thread_count = threads
        for i, frame in enumerate(container.decode(video_stream)):
            decoded += 1
            if i > indices[-1]:
                break
            if i in wanted:
                kept.append(frame.to_ndarray(format="rgb24"))
    return decoded


def read_pyav_seek(path, stream, num_frames, indices, threads):
    """Seek to the keyframe before each frame's nominal time (index / fps), decode up to it."""
    decoded = 0
    with av.open(str(path)) as container:
        video_stream = container.streams[stream]
        video_stream.thread_type = "AUTO"
        video_stream.thread_count = threads
        time_base, rate = video_stream.time_base, video_stream.average_rate
        start = video_stream.start_time or 0
        for index in indices:
            target = start + int(index / rate / time_base)
            container.seek(target, stream=video_stream, backward=True, any_frame=False)
            for frame in container.decode(video_stream):
                decoded += 1
                if frame.pts is not None and frame.pts >= target:
                    frame.to_ndarray(format="rgb24")
                    break
    return decoded


def read_torchcodec(path, stream, num_frames, indices, threads):
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), stream_index=stream, seek_mode="exact", num_ffmpeg_threads=threads, dimension_order="NHWC")
    decoder.get_frames_at(indices)
    del decoder
    return None


def readers(include_backends: bool) -> dict[str, Callable]:
    out = {"videovlm auto": read_videovlm("auto")}
    if include_backends:
        for backend in ("pyav", "torchcodec", "decord"):
            if importlib.util.find_spec({"pyav": "av"}.get(backend, backend)):
                out[f"videovlm {backend}"] = read_videovlm(backend)
    if importlib.util.find_spec("decord"):
        out["decord get_batch"] = read_decord
    out["PyAV from start"] = read_pyav_from_start
    out["PyAV seek per frame"] = read_pyav_seek
    if importlib.util.find_spec("torchcodec"):
        out["torchcodec 0.13"] = read_torchcodec
    return out


def time_reader(read: Callable, args: tuple, repeats: int) -> tuple[float, int | None]:
    times, decoded = [], None
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        decoded = read(*args)
        times.append(time.perf_counter() - start)
        if times[-1] > 3.0:  # slow readers (decode from start of a 5-minute video): once is enough
            break
    return min(times) * 1000, decoded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "videovlm-bench")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="decoder threads for every reader (0: FFmpeg decides)")
    parser.add_argument("--counts", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--videos", nargs="+", default=["nasa", "5min-360p", "60s-1080p"], choices=["nasa", "5min-360p", "60s-1080p"])
    parser.add_argument("--backends", action="store_true", help="also time each videovlm backend explicitly")
    args = parser.parse_args(argv)

    ffmpeg = shutil.which("ffmpeg")
    videos: dict[str, tuple[Path, int]] = {}
    if "nasa" in args.videos:
        if not NASA.is_file():
            parser.error(f"{NASA} not found (the shared reference videos live beside the checkout)")
        videos["NASA clip, stream 3 (480x270, 13 s)"] = (NASA, 3)
    for name, size, seconds in (("5min-360p", "640x360", 300), ("60s-1080p", "1920x1080", 60)):
        if name in args.videos:
            if ffmpeg is None:
                parser.error("the ffmpeg command line is needed to generate the benchmark videos")
            path = generate(ffmpeg, args.workdir / f"{name}.mp4", size=size, seconds=seconds, gop=250, bframes=3)
            videos[f"{name} h264 GOP 250, B-frames ({size}, {seconds} s)"] = (path, 0)

    table = readers(args.backends)
    print(f"# decode benchmark, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} cores, python {platform.python_version()}, "
          f"av {av.__version__}, threads={args.threads}, best of {args.repeats}")
    print("| video | frames | reader | ms / video | frames decoded / sampled frame |")
    print("|---|---|---|---|---|")
    for label, (path, stream) in videos.items():
        with open_video(path, stream_index=stream) as video:
            num_frames = video.metadata.num_frames
        # Untimed warm-up of every reader on this file with one frame: loads libraries,
        # fills the page cache and the allocator's pools at this resolution, so that the
        # first timed row is not charged for them.
        for read in table.values():
            read(path, stream, num_frames, [0], args.threads)
        for count in args.counts:
            indices = uniform_indices(num_frames, count)
            results = {}
            for name, read in table.items():
                ms, decoded = time_reader(read, (path, stream, num_frames, indices, args.threads), args.repeats)
                results[name] = ms
                per_frame = f"{decoded / count:.1f}" if decoded is not None else "n/a"
                print(f"| {label} | {count} | {name} | {ms:.0f} | {per_frame} |", flush=True)
            fastest = min(results.values())
            ratio = results["videovlm auto"] / fastest
            print(f"| {label} | {count} | **videovlm auto / fastest** | {ratio:.2f}x | |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
