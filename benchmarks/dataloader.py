"""Data-loader throughput: a Video-LLaMA-style batch (8 frames at 224 px through the processor,
collated) per loader, from 640x360 and 1920x1080 h264 clips of 10-60 s, side by side.

    python benchmarks/dataloader.py [--workdir DIR] [--workers 1,2] [--batches 6] [--batch-size 4]

Loaders (every one gets the same 8 frame indices per clip: the uniform sampler's centres):

- **videovlm**: ``MediaTextDataset`` as the training datasets use it: ``open_video`` with
  ``decode_size`` = the processor's short side (the decoder scales and converts to RGB in one
  swscale step), then ``frames_to_pixel_values`` (crop + normalise, CLIP settings).
- **VideoLLaMA2 recipe** (``videollama2/mm_utils.py: process_video``, rewritten here): decord
  ``VideoReader(num_threads=1)`` + ``get_batch`` + PIL images, ``expand2square`` padding, then the
  CLIP image processor (PIL resize of the full-size frames, crop, normalise).
- **transformers** ``read_video_pyav`` (the model docs' example: decode from the start up to
  the last index, ``to_ndarray(format="rgb24")`` of the chosen frames) + the CLIP image processor.

Each cell: samples/s over ``--batches`` batches after the first (worker start-up excluded), and
CPU-seconds per sample (the workers' own process time per item, decoder threads included).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import generate  # noqa: E402  (the ffmpeg-CLI clip generator of the decode benchmark)

from videovlm.models.pixels import PixelConfig, decode_target, frames_to_pixel_values  # noqa: E402
from videovlm.train.data import MediaTextDataset  # noqa: E402
from videovlm.video import open_video  # noqa: E402
from videovlm.video.samplers import parse_sampler  # noqa: E402

PIXELS = PixelConfig(image_size=224)  # CLIP ViT-L/14 settings: short side 224, centre crop, CLIP mean/std
SECONDS = (10, 25, 40, 60)
SIZES = {"640x360": "(a) 640x360", "1920x1080": "(b) 1920x1080"}


def make_clips(workdir: Path, size: str) -> list[Path]:
    ffmpeg = os.environ.get("FFMPEG", "ffmpeg")
    return [generate(ffmpeg, workdir / f"clip_{size}_{s}s.mp4", size=size, seconds=s, gop=250, bframes=3) for s in SECONDS]


def frame_indices(path: Path) -> list[int]:
    with open_video(path) as reader:
        return list(parse_sampler("uniform:8")(reader.metadata).indices)


def check_same_frames(path: Path, indices: list[int]) -> float:
    """Largest mean abs difference between videovlm's full-size frames and decord's /
    PyAV-from-the-start's for ``indices``: the loaders must be decoding the same frames."""
    import av
    from decord import VideoReader, cpu

    with open_video(path) as reader:
        ours = reader.get_frames(indices).frames.numpy().astype(np.float32)
    theirs = [VideoReader(str(path), ctx=cpu(0), num_threads=1).get_batch(indices).asnumpy()]
    with av.open(str(path)) as container:
        wanted = set(indices)
        theirs.append(np.stack([f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i in wanted and i <= max(wanted)]))
    return max(float(np.abs(ours - other.astype(np.float32)).mean()) for other in theirs)


class _Timed(Dataset):
    """``load(i)`` -> pixel values (8, 3, 224, 224), with the worker's CPU time for the item."""

    def __init__(self, clips: list[Path], indices: list[list[int]], samples: int):
        self.clips, self.indices, self.samples = clips, indices, samples

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, i: int):
        began = time.process_time()
        pixels = self.load(i % len(self.clips))
        return {"pixel_values": pixels, "cpu_s": torch.tensor(time.process_time() - began, dtype=torch.float64)}


class VideovlmLoader(_Timed):
    def __init__(self, clips, indices, samples):
        super().__init__(clips, indices, samples)
        self.dataset = MediaTextDataset(
            records=list(range(len(clips))),
            media_path=lambda i: (clips[i], True),
            encode=lambda record, frames, valid: {"pixel_values": frames_to_pixel_values(frames, PIXELS)[0]},
            sampler="uniform:8",  # eval mode: the centres, the `indices` the other loaders get
            train=False,
            decode_size=decode_target(PIXELS),
        )

    def load(self, clip: int) -> torch.Tensor:
        return self.dataset[clip]["pixel_values"]


def _clip_processor():
    from transformers import CLIPImageProcessor

    import transformers

    transformers.logging.set_verbosity_error()  # the "falls back to the PIL backend" note (no torchvision)
    return CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})


class VideoLlama2Loader(_Timed):
    """VideoLLaMA2's ``process_video`` with ``aspect_ratio='pad'`` (its default for video)."""

    def __init__(self, clips, indices, samples):
        super().__init__(clips, indices, samples)
        self.processor = _clip_processor()

    def load(self, clip: int) -> torch.Tensor:
        from decord import VideoReader, cpu
        from PIL import Image

        reader = VideoReader(str(self.clips[clip]), ctx=cpu(0), num_threads=1)
        frames = reader.get_batch(self.indices[clip]).asnumpy()
        images = [Image.fromarray(f) for f in frames]
        background = tuple(int(x * 255) for x in self.processor.image_mean)
        images = [_expand2square(image, background) for image in images]
        return self.processor.preprocess(images, return_tensors="pt")["pixel_values"]


def _expand2square(image, background):
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), background)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


class TransformersLoader(_Timed):
    """The ``read_video_pyav`` example of transformers' video model docs + the image processor."""

    def __init__(self, clips, indices, samples):
        super().__init__(clips, indices, samples)
        self.processor = _clip_processor()

    def load(self, clip: int) -> torch.Tensor:
        import av

        with av.open(str(self.clips[clip])) as container:
            wanted = set(self.indices[clip])
            frames = []
            container.seek(0)
            for i, frame in enumerate(container.decode(video=0)):
                if i > max(wanted):
                    break
                if i in wanted:
                    frames.append(frame)
            video = np.stack([f.to_ndarray(format="rgb24") for f in frames])
        return self.processor(images=list(video), return_tensors="pt")["pixel_values"]


LOADERS = {"videovlm": VideovlmLoader, "VideoLLaMA2 (decord + PIL)": VideoLlama2Loader, "transformers read_video_pyav": TransformersLoader}


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def measure(loader_cls, clips, indices, *, workers: int, batches: int, batch_size: int) -> tuple[float, float]:
    """(samples/s after the first batch, CPU-s per sample)."""
    dataset = loader_cls(clips, indices, samples=(batches + 1) * batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, worker_init_fn=_worker_init, shuffle=False)
    cpu, seen = 0.0, 0
    began = None
    for n, batch in enumerate(loader):
        assert batch["pixel_values"].shape[1:] == (8, 3, 224, 224), batch["pixel_values"].shape
        if n == 0:
            began = time.perf_counter()
            continue
        cpu += float(batch["cpu_s"].sum())
        seen += len(batch["cpu_s"])
    return seen / (time.perf_counter() - began), cpu / seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "videovlm-bench")
    parser.add_argument("--workers", default=None, help="comma list (default: 1, 2 and all cores)")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    workers = sorted({int(w) for w in args.workers.split(",")}) if args.workers else sorted({1, 2, cores})
    torch.set_num_threads(1)
    print(f"# {datetime.date.today()} {platform.node()} {platform.machine()}, {cores} cores, load {os.getloadavg()[0]:.1f}; "
          f"{args.batches} batches of {args.batch_size} after the first, 8 frames at 224 px")
    names = list(LOADERS)
    print("(every loader decodes the same frames: checked per clip, full size, mean abs difference < 1 level)")
    print("| clips | workers | " + " | ".join(f"{n} samples/s (CPU-s/sample)" for n in names) + " | videovlm / best other |")
    print("|" + "---|" * (len(names) + 3))
    for size, label in SIZES.items():
        clips = make_clips(args.workdir, size)
        indices = [frame_indices(c) for c in clips]
        worst = max(check_same_frames(c, i) for c, i in zip(clips, indices))
        assert worst < 1.0, f"{label}: the loaders decode different frames (mean abs difference {worst:.2f})"
        for w in workers:
            cells = {n: measure(LOADERS[n], clips, indices, workers=w, batches=args.batches, batch_size=args.batch_size) for n in names}
            best_other = max(cells[n][0] for n in names[1:])
            row = " | ".join(f"{cells[n][0]:.2f} ({cells[n][1]:.3f})" for n in names)
            print(f"| {label}, 10-60 s | {w} | {row} | **{cells['videovlm'][0] / best_other:.2f}x** |", flush=True)


if __name__ == "__main__":
    main()
