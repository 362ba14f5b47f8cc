"""``videovlm extract INPUT OUTPUT``: sample frames from many videos into image folders or
webdataset shards.

Output (jpg/png): ``OUTPUT/<key>/000000.jpg ...`` and ``OUTPUT/<key>/frames.json`` with
``video``, ``key``, ``stream``, ``sampler``, ``indices``, ``pts``, ``valid``, ``clips``,
``files``, ``width``/``height`` (of the saved frames), ``num_frames``/``fps``/``duration``/
``source_width``/``source_height`` (of the video) and ``backend``. ``--format wds``: tar
shards ``OUTPUT/videos-NNNNNN.tar``, one sample per video (``000000.jpg ...`` or ``.png`` with
``--wds-frames png``, and ``json``, the same record). With a manifest as INPUT the record also
holds ``rows``: the manifest's rows of that video, every field but ``video`` (its captions,
questions or conversations; rows naming the same video under one key are one video), which
the shard datasets of ``videovlm.train.datasets`` train from. Failures: ``OUTPUT/failures.jsonl`` (``failures-shardIofN.jsonl`` with
``--shard``, so parts running at once never share a file).

A rerun skips videos already done; a video counts as done only once its ``frames.json``
(or its shard) is in place, written under ``OUTPUT/.partial`` first and renamed.
Exit code: 0, 1 with ``--strict`` when a video failed, 2 for usage errors, 143 after SIGTERM
(stopped like Ctrl-C: workers stopped, temporary files removed; a worker also ends by itself
when the run's process is killed outright).

Nothing extract did not write is removed or overwritten: each video folder keeps a hidden
``.extract-files.json`` naming the files extract wrote there (all a rerun may replace); a
user's file where a frame would go fails that video (``OutputConflictError``), and a
``failures.jsonl`` that is not extract's stops the run. OUTPUT may not be a searched INPUT
folder nor contain it (a sub-folder of INPUT is fine and left out of the search). Manifest
paths are relative to the manifest's folder. ``--size`` is capped at 8192 pixels a side and
4096x4096 pixels a frame; a key part over 251 bytes is one failure line.
"""

from __future__ import annotations

import argparse
import os
import sys

from videovlm.video.extract.frames import ExtractJob, ExtractResult, FrameSize, extract_video
from videovlm.video.extract.inputs import ExtractUsageError, VideoEntry, list_inputs, parse_shard, shard_of
from videovlm.video.extract.runner import FORMATS, ExtractSummary, extract_videos

__all__ = [
    "ExtractJob",
    "ExtractResult",
    "ExtractSummary",
    "ExtractUsageError",
    "FrameSize",
    "VideoEntry",
    "add_arguments",
    "extract_video",
    "extract_videos",
    "list_inputs",
    "parse_shard",
    "run",
    "shard_of",
]


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="a folder (searched recursively), a glob (quote it), a video, or a manifest (.csv/.json/.jsonl with a 'video' column and optional 'id')")
    parser.add_argument("output", metavar="OUTPUT", help="output folder (created); nothing is written outside it")
    parser.add_argument("--sampler", default="uniform:8", metavar="SPEC", help="frame sampler spec, e.g. uniform:8, segment:8, fps:2,min=4,max=64, headtail:8, clips:16,interval=2,num=4, keyframes:16, with optional ,start=S,end=E,short=repeat|pad|error (default: %(default)s)")
    parser.add_argument("--size", default=None, metavar="N|WxH", help="resize: N = short side in pixels (aspect kept), WxH = exact size; at most 8192 a side and 4096x4096 pixels (default: the video's size)")
    parser.add_argument("--format", default="jpg", choices=FORMATS, help="jpg/png folders per video, or wds = webdataset tar shards (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=_default_workers(), metavar="N", help="worker processes (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S", help="seconds per video before its worker is killed and the video counted as failed (default: %(default)s)")
    parser.add_argument("--shard", default=None, metavar="I/N", help="take only part I of N (0 <= I < N) of the input, split by a hash of each key: run N times (machines, array jobs) to cover it all; failures then go to failures-shardIofN.jsonl")
    parser.add_argument("--contact-sheet", action="store_true", help="also write a PNG grid of the sampled frames per video (OUTPUT/<key>/contact_sheet.png; wds: OUTPUT/contact_sheets/<key>.png)")
    parser.add_argument("--strict", action="store_true", help="exit code 1 when any video failed")
    parser.add_argument("--backend", default="auto", help="decoder backend: auto, pyav, decord or torchcodec (default: %(default)s)")
    parser.add_argument("--wds-frames", default="jpg", choices=("jpg", "png"), help="wds: how frames are stored; png is lossless, the decoded frames bit for bit (default: %(default)s)")
    parser.add_argument("--tar-size", type=int, default=1000, metavar="N", help="wds: videos per tar shard (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        size = FrameSize.parse(args.size) if args.size else None
        shard = parse_shard(args.shard) if args.shard else None
        summary = extract_videos(
            input_spec=args.input,
            output=args.output,
            sampler=args.sampler,
            size=size,
            image_format=args.format,
            workers=args.workers,
            timeout=args.timeout,
            shard=shard,
            contact_sheet=args.contact_sheet,
            backend=args.backend,
            tar_size=args.tar_size,
            wds_frames=args.wds_frames,
            progress=not args.no_progress,
        )
    except ValueError as e:  # ExtractUsageError, or a bad --size
        print(f"videovlm extract: error: {e}", file=sys.stderr)
        return 2
    print(summary.line())
    return 1 if args.strict and summary.failed else 0
