"""torchcodec backend (0.13, the last CPU build): ``VideoDecoder.get_frames_at``.

torchcodec runs its own exact scan (``seek_mode="exact"``); its frame count and the pts of
every returned frame are checked against the demux index. Handing it our index as
``custom_frame_mappings`` would save that scan, but torchcodec 0.13 then fails on AVI
files with B-frames ("no more frames left to decode"), so it is not used. torchcodec
applies the rotation metadata itself.
"""

from __future__ import annotations

from typing import Sequence

import torch

from videovlm.video.backends import DecodeOptions
from videovlm.video.index import FrameIndex
from videovlm.video.types import VideoDecodeError


class TorchCodecDecoder:
    """Decodes one stream with torchcodec (needs a system FFmpeg 4-7)."""

    name = "torchcodec"

    def __init__(self, index: FrameIndex, options: DecodeOptions):
        meta = index.metadata
        self._path = meta.path
        self._index = index
        if not index.seeks_land_on_keyframes:
            # torchcodec seeks to the wanted frame's pts and decodes forward; where a seek lands
            # mid-GOP after the keyframe (MPEG-TS/PS), the first frame out is a later one.
            raise VideoDecodeError(
                self._path,
                "torchcodec would return wrong frames: seeking in this container does not land on keyframes",
            )
        try:
            from torchcodec.decoders import VideoDecoder
            from torchcodec.transforms import Resize
        except (ImportError, OSError, RuntimeError) as e:
            # torchcodec imports but cannot load libtorchcodec without a matching FFmpeg.
            raise VideoDecodeError(self._path, f"torchcodec is installed but cannot load: {e}") from e
        transforms = [Resize(size=list(options.resize))] if options.resize is not None else None
        try:
            self._decoder = VideoDecoder(
                meta.path,
                stream_index=meta.stream_index,
                dimension_order="NHWC",
                num_ffmpeg_threads=options.num_threads,
                transforms=transforms,
                seek_mode="exact",
            )
        except (RuntimeError, ValueError) as e:
            raise VideoDecodeError(self._path, f"torchcodec cannot open stream {meta.stream_index}: {e}") from e
        count = self._decoder.metadata.num_frames
        if count != meta.num_frames:
            self.close()
            raise VideoDecodeError(self._path, f"torchcodec's frame count {count} and the demux index's {meta.num_frames} disagree")

    def decode(self, indices: Sequence[int]) -> torch.Tensor:
        if self._decoder is None:
            raise VideoDecodeError(self._path, "reader is closed")
        try:
            batch = self._decoder.get_frames_at(list(indices))
        except (RuntimeError, IndexError) as e:
            raise VideoDecodeError(self._path, f"torchcodec failed to decode frames {list(indices)[:5]}: {e}") from e
        # Frames are matched by the pts torchcodec reports, never assumed.
        expected = torch.tensor([self._index.metadata.pts[i] for i in indices], dtype=torch.float64)
        worst = float((batch.pts_seconds.to(torch.float64) - expected).abs().max())
        if worst > 1e-3:
            raise VideoDecodeError(self._path, f"torchcodec returned frames whose pts disagree with the index by {worst:.6f} s")
        return batch.data.contiguous()  # (T, H, W, 3) with dimension_order="NHWC"

    def close(self) -> None:
        self._decoder = None
