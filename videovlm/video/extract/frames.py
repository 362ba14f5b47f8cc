"""Per-video work of ``videovlm extract``, run in a worker process: open, sample, decode,
resize, encode images, draw the contact sheet, and (jpg/png) publish the video's folder
atomically."""

from __future__ import annotations

import io
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from videovlm.paths import write_atomic
from videovlm.video.extract.publish import FRAMES_JSON, publish_folder, record_owned
from videovlm.video.samplers.base import spread

CONTACT_SHEET = "contact_sheet.png"
_PIL_FORMATS = {"jpg": "JPEG", "png": "PNG"}
_JPEG_QUALITY = 95
_THUMB_WIDTH = 160
_CAPTION_HEIGHT = 14
_DECODE_CHUNK = 64  # frames decoded and held at once per video, at most...
_DECODE_CHUNK_BYTES = 512 << 20  # ...and at most this much decoded RGB (64 1080p frames fit)
_SHEET_MAX = 64  # thumbnails on a contact sheet, evenly spread over the sample


# The largest frame extract makes (--size): memory per decoded-and-resized frame is 3 bytes a
# pixel, so an unbounded size (100000x100000) would allocate tens of GB per worker. 8192 per
# side covers 8K; 4096 x 4096 pixels (16.8 MP, 50 MB a frame) covers 4K UHD and DCI 4K.
MAX_SIDE = 8192
MAX_PIXELS = 4096 * 4096


def _size_problem(width: int, height: int) -> str | None:
    if max(width, height) > MAX_SIDE:
        return f"a side over {MAX_SIDE} pixels"
    if width * height > MAX_PIXELS:
        return f"{width * height:,} pixels, over the cap of {MAX_PIXELS:,} (4096x4096)"
    return None


@dataclass(frozen=True)
class FrameSize:
    """Output frame size: ``short_side`` scales the short side to that many pixels keeping
    the aspect ratio; ``width``/``height`` give an exact size. All None: the video's size.
    Sizes are capped (``MAX_SIDE`` per side, ``MAX_PIXELS`` per frame): ``ValueError``."""

    short_side: int | None = None
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        if (self.width is None) != (self.height is None):
            raise ValueError(f"--size: give both width and height, got {self.width}x{self.height}")
        given = [v for v in (self.short_side, self.width, self.height) if v is not None]
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in given):
            raise ValueError(f"--size {self.text()}: sizes must be whole numbers >= 1 pixel")
        if self.short_side is not None:
            # The long side is at least the short one: N x N is the least a short side of N gives.
            problem = _size_problem(self.short_side, self.short_side)
        else:
            problem = _size_problem(self.width, self.height) if self.width is not None else None
        if problem is not None:
            raise ValueError(f"--size {self.text()}: {problem}")

    def text(self) -> str:
        """The ``--size`` spelling of this size."""
        return str(self.short_side) if self.short_side is not None else f"{self.width}x{self.height}"

    @classmethod
    def parse(cls, text: str) -> FrameSize:
        """``"224"`` (short side) or ``"320x240"`` (width x height)."""
        width, x, height = text.lower().partition("x")
        try:
            values = [int(v) for v in ((width, height) if x else (width,))]
        except ValueError:
            raise ValueError(f"--size {text!r}: expected N (short side) or WxH, e.g. 224 or 320x240") from None
        if any(v < 1 for v in values):
            raise ValueError(f"--size {text!r}: sizes must be >= 1 pixel")
        return cls(width=values[0], height=values[1]) if x else cls(short_side=values[0])

    def for_source(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of the output for a ``width`` x ``height`` video; a short side
        that makes the long side of a very elongated video too large raises ``ValueError``."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        if self.short_side is not None:
            scale = self.short_side / min(width, height)
            size = max(1, round(width * scale)), max(1, round(height * scale))
            problem = _size_problem(*size)
            if problem is not None:
                raise ValueError(f"--size {self.short_side} makes this {width}x{height} video {size[0]}x{size[1]}: {problem}")
            return size
        return width, height


@dataclass(frozen=True)
class ExtractJob:
    """One video for a worker (plain fields: it crosses to the worker process).

    Fields:
        key: output name under OUTPUT.
        path: the video file.
        sampler: sampler spec (``parse_sampler``).
        backend: reader backend (``open_video``).
        size: output frame size.
        image_format: ``jpg`` or ``png`` (of the files, or of the frames in a wds shard).
        contact_sheet: where the contact sheet PNG (at most 64 of the frames, evenly
            spread) ends up, or None for none.
        staging_dir: jpg/png: the temporary folder to write into; None for wds (the
            encoded files come back to the parent, which writes the shard).
        final_dir: jpg/png: the video's output folder.
        rows: the manifest's rows of this video, kept in the record (``VideoEntry.rows``).
    """

    key: str
    path: str
    sampler: str
    backend: str
    size: FrameSize
    image_format: str
    contact_sheet: str | None
    staging_dir: str | None
    final_dir: str | None
    rows: tuple[dict, ...] = ()


@dataclass(frozen=True)
class ExtractResult:
    """What a worker sends back. ``error`` is set on failure; for wds, ``files`` holds the
    encoded frames by member name and ``record`` the frames.json content."""

    key: str
    path: str
    error: str | None = None
    record: dict | None = None
    files: dict[str, bytes] | None = None


def extract_video(job: ExtractJob) -> ExtractResult:
    """Extract one video; never raises (a failure is a result, so the run goes on)."""
    try:
        if job.staging_dir is not None and job.final_dir is not None:
            staging = Path(job.staging_dir)
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            record = _decode_and_encode(job, lambda name, data: (staging / name).write_bytes(data))
            (staging / FRAMES_JSON).write_text(json.dumps(record), encoding="utf-8")
            record_owned(staging, (p.name for p in staging.iterdir()))
            publish_folder(staging, Path(job.final_dir))
            return ExtractResult(key=job.key, path=job.path, record=record)
        files: dict[str, bytes] = {}
        record = _decode_and_encode(job, files.__setitem__)
        return ExtractResult(key=job.key, path=job.path, record=record, files=files)
    except Exception as e:  # noqa: BLE001  any failure of one video is reported, not raised
        message = str(e) or type(e).__name__
        if job.path not in message:
            message = f"{job.path}: {message}"
        return ExtractResult(key=job.key, path=job.path, error=f"{type(e).__name__}: {message}")


def _decode_and_encode(job: ExtractJob, emit: Callable[[str, bytes], object]) -> dict:
    """Decode the sampled frames, hand each encoded file to ``emit(name, data)`` (and the
    wds contact sheet to its path); return the frames.json record."""
    # Imported here: the parent process never decodes, and workers import once.
    from videovlm.video import open_video
    from videovlm.video.samplers import parse_sampler

    suffix = job.image_format
    names: list[str] = []
    thumbnails: list[Image.Image] = []
    def output_size(meta) -> tuple[int, int]:  # (height, width): the decoder scales to it
        width, height = job.size.for_source(meta.width, meta.height)
        return height, width

    with open_video(job.path, backend=job.backend, num_threads=1, resize=output_size) as reader:
        metadata = reader.metadata
        sample = parse_sampler(job.sampler)(metadata)
        out_width, out_height = job.size.for_source(metadata.width, metadata.height)
        on_sheet = set(spread(min(_SHEET_MAX, len(sample)), len(sample))) if job.contact_sheet else set()
        # In chunks: an fps sampler over a long video may pick thousands of frames, which
        # must not all sit decoded in memory at once (fewer per chunk for 4K and 8K videos).
        chunk = max(1, min(_DECODE_CHUNK, _DECODE_CHUNK_BYTES // (3 * out_width * out_height)))  # RGB frames at the output size
        for chunk_start in range(0, len(sample.indices), chunk):
            batch = reader.get_frames(sample.indices[chunk_start : chunk_start + chunk])
            for offset, frame in enumerate(batch.frames.numpy()):
                image = Image.fromarray(np.ascontiguousarray(frame))
                if image.size != (out_width, out_height):  # only where a backend could not scale
                    image = image.resize((out_width, out_height), Image.Resampling.BICUBIC)
                names.append(f"{chunk_start + offset:06d}.{suffix}")
                emit(names[-1], _encode(image, suffix))
                if chunk_start + offset in on_sheet:
                    thumbnails.append(_thumbnail(image))
        backend = reader.backend
    record = {
        "video": job.path,
        "key": job.key,
        "stream": metadata.stream_index,
        "sampler": sample.spec,
        "indices": list(sample.indices),
        "pts": list(sample.pts),
        "valid": list(sample.valid),
        "clips": [list(c) for c in sample.clips] if sample.clips is not None else None,
        "files": names,
        "width": out_width,
        "height": out_height,
        # The video's own frame count, rate and size (the sample is `indices`).
        "num_frames": metadata.num_frames,
        "fps": metadata.fps,
        "duration": metadata.duration,
        "source_width": metadata.width,
        "source_height": metadata.height,
        "backend": backend,
    }
    if any(job.rows):  # a manifest's text: captions, questions, conversations
        record["rows"] = list(job.rows)
    if job.contact_sheet is not None:
        shown = sorted(on_sheet)
        sheet = contact_sheet(
            thumbnails,
            [sample.pts[n] for n in shown],
            [sample.indices[n] for n in shown],
            [sample.valid[n] for n in shown],
        )
        if job.staging_dir is not None:
            emit(CONTACT_SHEET, sheet)
        else:
            write_atomic(Path(job.contact_sheet), sheet)
    return record


def _encode(image: Image.Image, suffix: str) -> bytes:
    buffer = io.BytesIO()
    if suffix == "jpg":
        image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    else:
        image.save(buffer, format=_PIL_FORMATS[suffix])
    return buffer.getvalue()


def _thumbnail(image: Image.Image) -> Image.Image:
    height = max(1, round(image.height * _THUMB_WIDTH / image.width))
    return image.resize((_THUMB_WIDTH, height), Image.Resampling.BILINEAR)


def contact_sheet(thumbnails: list[Image.Image], pts, indices, valid) -> bytes:
    """A PNG grid of same-size thumbnails with ``t=<pts>s #<index>`` under each (``pad``
    when the position is padding), for a human to check what a sampler picked."""
    columns = max(1, math.ceil(math.sqrt(len(thumbnails))))
    rows = max(1, math.ceil(len(thumbnails) / columns))
    width, height = thumbnails[0].size if thumbnails else (_THUMB_WIDTH, _THUMB_WIDTH)
    cell_height = height + _CAPTION_HEIGHT
    sheet = Image.new("RGB", (columns * width, rows * cell_height), "black")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for n, thumbnail in enumerate(thumbnails):
        x, y = (n % columns) * width, (n // columns) * cell_height
        sheet.paste(thumbnail, (x, y))
        caption = f"t={pts[n]:.2f}s #{indices[n]}" + ("" if valid[n] else " pad")
        draw.text((x + 2, y + height + 1), caption, fill="white", font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
