"""``open_video``: one reader over the PyAV, decord and torchcodec backends.

Frame ``i`` is the i-th frame in presentation order of the chosen stream, as listed by a
demux-only index (:mod:`videovlm.video.index`). Backends get sorted, unique indices; the
reader returns frames in the caller's order with duplicates, and looks times up by pts.
"""

from __future__ import annotations

import importlib
import operator
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from videovlm.video.backends import BACKEND_NAMES, DecodeOptions, FrameDecoder, importable_backends
from videovlm.video.index import FrameIndex, build_index
from videovlm.video.types import FrameBatch, VideoDecodeError, VideoMetadata

_BACKEND_CLASSES = {
    "pyav": ("videovlm.video.backends.pyav", "PyAVDecoder"),
    "decord": ("videovlm.video.backends.decord", "DecordDecoder"),
    "torchcodec": ("videovlm.video.backends.torchcodec", "TorchCodecDecoder"),
}


def available_backends() -> tuple[str, ...]:
    """Names of the backends usable here (their decoder library is installed)."""
    return importable_backends()


def _make_decoder(name: str, index: FrameIndex, options: DecodeOptions) -> FrameDecoder:
    module_name, class_name = _BACKEND_CLASSES[name]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(index, options)


def select_backend(
    index: FrameIndex,
    options: DecodeOptions,
    *,
    importable: Iterable[str] | None = None,
) -> FrameDecoder:
    """The fastest backend in ``importable`` that is correct for this file (``backend="auto"``).

    ``importable`` defaults to :func:`available_backends`; passing a subset shows what
    ``auto`` does on a machine without decord or torchcodec. A backend refuses a file it
    would decode wrongly (its own frame count or timestamps disagree with the index) by
    raising ``VideoDecodeError``; ``auto`` then falls back to the next one. PyAV, which the
    index itself is built with, is the last resort.
    """
    allowed = set(available_backends() if importable is None else importable)
    unknown = allowed - set(BACKEND_NAMES)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}; known: {list(BACKEND_NAMES)}")
    refusals = []
    for name in BACKEND_NAMES:
        if name not in allowed:
            continue
        try:
            return _make_decoder(name, index, options)
        except VideoDecodeError as e:
            refusals.append(f"{name}: {e.reason}")
    raise VideoDecodeError(index.metadata.path, "no backend can decode this file (" + "; ".join(refusals or ["none importable"]) + ")")


class VideoReader:
    """An open video stream. Use as a context manager, or call :meth:`close`."""

    def __init__(self, index: FrameIndex, decoder: FrameDecoder, options: DecodeOptions):
        self._index = index
        self._decoder: FrameDecoder | None = decoder
        self._options = options

    @property
    def metadata(self) -> VideoMetadata:
        return self._index.metadata

    @property
    def backend(self) -> str:
        """Name of the backend that decodes this file (what ``auto`` chose)."""
        return self._live_decoder().name

    @property
    def frames_decoded(self) -> int | None:
        """Frames the decoder produced so far, where the backend can tell (PyAV); else None."""
        return getattr(self._live_decoder(), "frames_decoded", None)

    def _live_decoder(self) -> FrameDecoder:
        if self._decoder is None:
            raise VideoDecodeError(self._index.metadata.path, "reader is closed")
        return self._decoder

    def _check_indices(self, indices: Sequence[int]) -> list[int]:
        n = self._index.metadata.num_frames
        checked = []
        for position, i in enumerate(indices):
            try:
                i = operator.index(i)  # ints and integer tensors/numpy scalars, never floats
            except TypeError:
                raise TypeError(f"{self._index.metadata.path}: frame index #{position} is {i!r}, not an integer") from None
            if not 0 <= i < n:
                raise IndexError(f"{self._index.metadata.path}: frame index {i} out of range (video has {n} frames)")
            checked.append(i)
        return checked

    def get_frames(self, indices: Iterable[int]) -> FrameBatch:
        """Frames ``indices`` in the caller's order (duplicates allowed) as ``(T, H, W, 3)`` uint8 RGB."""
        if isinstance(indices, torch.Tensor):
            indices = indices.flatten().tolist()
        wanted = self._check_indices(list(indices))
        decoder = self._live_decoder()
        meta = self._index.metadata
        if not wanted:
            height, width = self._options.resize or (meta.height, meta.width)
            return FrameBatch(torch.empty((0, height, width, 3), dtype=torch.uint8), (), ())
        unique = sorted(set(wanted))
        decoded = decoder.decode(unique)  # (U, H, W, 3), one row per unique index
        row = {i: r for r, i in enumerate(unique)}
        frames = decoded[torch.tensor([row[i] for i in wanted])] if unique != wanted else decoded
        return FrameBatch(frames=frames, indices=tuple(wanted), pts=tuple(meta.pts[i] for i in wanted))

    def get_frames_at(self, seconds: Iterable[float]) -> FrameBatch:
        """The frames displayed at ``seconds`` (last frame with pts <= t), in the caller's order.

        Times before the first frame's pts or at/after the end of the last frame raise
        ``IndexError``. ``batch.pts`` holds the pts of the returned frames, not the times asked.
        """
        if isinstance(seconds, torch.Tensor):
            seconds = seconds.flatten().tolist()
        return self.get_frames([self._index.frame_at_time(float(t)) for t in seconds])

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        # Readers dropped without close() must not keep FFmpeg contexts (memory in loops).
        try:
            self.close()
        except Exception:
            pass

    def __len__(self) -> int:
        return self._index.metadata.num_frames

    def __repr__(self) -> str:
        meta = self._index.metadata
        state = self._decoder.name if self._decoder is not None else "closed"
        return f"VideoReader({meta.path!r}, stream={meta.stream_index}, frames={meta.num_frames}, backend={state})"


def open_video(
    path: str | Path,
    backend: str = "auto",
    stream_index: int | None = None,
    *,
    num_threads: int = 0,
    resize: tuple[int, int] | int | Callable[[VideoMetadata], tuple[int, int] | None] | None = None,
) -> VideoReader:
    """Open one video stream of ``path`` for frame-accurate reading.

    Args:
        path: the video file, or a folder of frames written by ``videovlm extract`` (its
            ``frames.json`` gives the frames' source times; see ``videovlm.video.frame_folder``).
        backend: ``"auto"`` (fastest backend that is correct for this file), ``"pyav"``,
            ``"decord"`` or ``"torchcodec"``. An explicit backend that would decode this
            file wrongly raises ``VideoDecodeError`` saying why.
        stream_index: container stream index; ``None`` picks FFmpeg's best video stream.
        num_threads: decoder threads; 0 lets FFmpeg choose.
        resize: ``(height, width)`` of the returned frames (display orientation); an int: the
            short side, aspect kept (``short_side_size``); a function of the video's metadata
            returning either (or None); None: the video's size. The decoder scales and converts
            to RGB in one step (swscale), so no full-size RGB frame exists.

    Raises:
        VideoDecodeError: missing/empty/unreadable file, no such video stream, undecodable data.
    """
    short_side = _check_resize(path, resize)
    if not isinstance(num_threads, int) or num_threads < 0:
        raise ValueError(f"{path}: num_threads must be an int >= 0, got {num_threads!r}")
    from videovlm.video.frame_folder import FrameFolderDecoder, FrameFolderIndex, is_frame_folder

    if is_frame_folder(path):  # frames written by `videovlm extract`: read as the video they came from
        folder_index = FrameFolderIndex(Path(path))
        options = _options(folder_index.metadata, num_threads, resize, short_side)
        return VideoReader(folder_index, FrameFolderDecoder(folder_index, options), options)  # type: ignore[arg-type]
    index = build_index(path, stream_index)
    options = _options(index.metadata, num_threads, resize, short_side)
    if backend == "auto":
        decoder = select_backend(index, options)
    elif backend in BACKEND_NAMES:
        if backend not in available_backends():
            raise VideoDecodeError(str(path), f"backend {backend!r} is not installed (available: {list(available_backends())})")
        decoder = _make_decoder(backend, index, options)
    else:
        raise ValueError(f"{path}: unknown backend {backend!r}; choose 'auto' or one of {list(BACKEND_NAMES)}")
    return VideoReader(index, decoder, options)


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the short side ``short_side`` and the aspect kept, rounded as the
    pixel preprocessing rounds (``videovlm.models.pixels``), so frames decoded at this size
    need no second resize there, only the centre crop."""
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def _check_resize(path: str | Path, resize) -> int | None:
    """The short side when ``resize`` is one; raises ``ValueError`` for a bad ``resize``."""
    if resize is None or callable(resize):
        return None
    if isinstance(resize, int) and not isinstance(resize, bool):
        if resize <= 0:
            raise ValueError(f"{path}: resize must be a positive short side or (height, width), got {resize!r}")
        return resize
    if len(resize) != 2 or not all(isinstance(v, int) and v > 0 for v in resize):
        raise ValueError(f"{path}: resize must be (height, width) positive ints or a short side, got {resize!r}")
    return None


def _options(metadata: VideoMetadata, num_threads: int, resize, short_side: int | None) -> DecodeOptions:
    if callable(resize):  # a size chosen from the metadata (extraction's --size)
        resize = resize(metadata)
        short_side = _check_resize(metadata.path, resize)
    if short_side is not None:
        size = short_side_size(metadata.height, metadata.width, short_side)
    else:
        size = (int(resize[0]), int(resize[1])) if resize is not None else None  # type: ignore[index]
    return DecodeOptions(num_threads=num_threads, resize=size)
