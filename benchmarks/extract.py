"""Extraction at scale: `videovlm extract` on 200 short videos with 1 and 2 workers, then 1,000
videos with the memory of the run and its workers sampled as it goes.

    python benchmarks/extract.py [--workdir DIR] [--videos 200] [--long-run 1000]

Videos: ``--videos`` 5-10 s 640x360 30 fps h264 clips (GOP 60) made once with the ffmpeg command
line, plus 2 broken files (a truncated mp4 and a text file named .mp4), so the summary line shows
failures by reason. The long run extracts a JSONL manifest naming the same clips under
``--long-run`` distinct ids. Each run is ``videovlm extract MANIFEST OUT --sampler uniform:8``
(jpg) in a fresh process, ``--repeats`` times per worker count (the fastest is shown). "run s" is the whole process (Python start-up and imports
included), "extract s" the time the summary line reports (from listing the input to the last
video, the worker pool's start included); the speed-up is of the latter.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path


def make_videos(workdir: Path, count: int) -> list[Path]:
    folder = workdir / "extract_clips"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"clip640_{i:04d}.mp4"
        if not path.is_file():
            seconds = 5 + i % 6
            pattern = ("testsrc2", "smptebars", "rgbtestsrc", "mandelbrot")[i % 4]
            tmp = path.with_suffix(".partial.mp4")
            subprocess.run(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"{pattern}=size=640x360:rate=30",
                 "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "60", str(tmp)],
                check=True,
            )
            tmp.rename(path)
        paths.append(path)
    truncated = folder / "broken_truncated.mp4"
    truncated.write_bytes(paths[0].read_bytes()[:2000])
    not_video = folder / "broken_text.mp4"
    not_video.write_text("not a video\n")
    return paths + [truncated, not_video]


def write_manifest(path: Path, videos: list[Path], count: int) -> Path:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"video": str(videos[i % len(videos)]), "id": f"v{i:05d}"}) + "\n")
    return path


def tree_rss_mib(root: int) -> float:
    """Resident memory of ``root`` and all its descendants (the pool's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def run_extract(manifest: Path, out: Path, workers: int, *, sample_rss: bool = False) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "videovlm", "extract", str(manifest), str(out), "--sampler", "uniform:8", "--workers", str(workers), "--no-progress"]
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[int, float]] = []
    if sample_rss:
        def watch() -> None:
            while process.poll() is None:
                done = sum(1 for _ in out.glob("v*/frames.json")) if out.is_dir() else 0
                samples.append((done, tree_rss_mib(process.pid)))
                time.sleep(1.0)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"extract failed ({process.returncode}): {stderr[-2000:]}")
    summary = stdout.strip().splitlines()[-1]
    found = re.search(r"in ([0-9.]+) s", summary)
    return {"wall": wall, "extract": float(found.group(1)) if found else float("nan"), "summary": summary, "rss": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "videovlm-bench")
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--long-run", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2, help="runs per worker count; the table keeps the fastest (a shared machine's noise)")
    args = parser.parse_args()
    videos = make_videos(args.workdir, args.videos)
    cores = os.cpu_count() or 1
    print(f"# {datetime.date.today()} {platform.node()} {platform.machine()}, {cores} cores, load {os.getloadavg()[0]:.1f}")
    manifest = write_manifest(args.workdir / "extract_200.jsonl", videos, len(videos))
    print("| run | videos | workers | run s | extract s | videos/s (extract) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    for workers in (1, 2):
        tries = [run_extract(manifest, args.workdir / f"extract_out_{workers}", workers) for _ in range(args.repeats)]
        result = min(tries, key=lambda r: r["extract"])
        results[workers] = result
        speed = results[1]["extract"] / result["extract"]
        print(f"| {args.videos} clips + 2 broken | {len(videos)} | {workers} | {result['wall']:.1f} | {result['extract']:.1f} | "
              f"{len(videos) / result['extract']:.2f} | **{speed:.2f}x** |", flush=True)
    print(f"\nsummary line (2 workers): `{results[2]['summary']}`\n")
    long_manifest = write_manifest(args.workdir / "extract_long.jsonl", videos[:-2], args.long_run)
    one = run_extract(long_manifest, args.workdir / "extract_out_long", 1)
    long = run_extract(long_manifest, args.workdir / "extract_out_long", 2, sample_rss=True)
    print(f"{args.long_run} videos, 1 worker: `{one['summary']}`")
    print(f"{args.long_run} videos, 2 workers: `{long['summary']}`: **{one['extract'] / long['extract']:.2f}x**")
    marks = sorted({int(args.long_run * f) for f in (0.1, 0.25, 0.5, 0.75, 0.95)})
    rss = []
    for mark in marks:
        seen = [m for done, m in long["rss"] if done >= mark]
        if seen:
            rss.append(f"{mark}: {seen[0]:.0f} MiB")
    print("RSS of the run + its workers after N videos: " + ", ".join(rss))
    shutil.rmtree(args.workdir / "extract_out_long", ignore_errors=True)


if __name__ == "__main__":
    main()
