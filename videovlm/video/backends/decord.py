"""decord backend: ``VideoReader.get_batch``, used only where decord agrees with the index.

decord lists frames by its own packet scan and is known to be wrong for some files
(variable frame rate, B-frames with edit lists, VP8: dmlc/decord #54, #91, #365). Before
use, its frame count and every frame timestamp are checked against the demux index; any
disagreement makes the constructor raise ``VideoDecodeError``, so ``auto`` falls back
and an explicit ``backend="decord"`` never returns a wrong frame.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from videovlm.video.backends import DecodeOptions
from videovlm.video.index import FrameIndex
from videovlm.video.types import VideoDecodeError

# Codecs for which decord 0.6 returns wrong frames although its timestamps look right.
_REFUSED_CODECS = {"vp8": "decord returns wrong frames for VP8 (dmlc/decord #365)"}
# Tolerance on timestamps: decord reports float32 seconds.
_PTS_TOLERANCE_S = 1e-3


class DecordDecoder:
    """Decodes the best video stream of a file with decord (FFmpeg 4.1 bundled in its wheel)."""

    name = "decord"

    def __init__(self, index: FrameIndex, options: DecodeOptions):
        import decord

        meta = index.metadata
        self._path = meta.path
        if not index.is_best_stream:
            raise VideoDecodeError(
                self._path, f"decord reads only the default video stream; stream {meta.stream_index} disagrees with what it would read"
            )
        if meta.codec in _REFUSED_CODECS:
            raise VideoDecodeError(self._path, _REFUSED_CODECS[meta.codec])
        if index.has_leading_frames:
            # decord seeks to a keyframe and counts decoded frames from there: frames decoded
            # after a keyframe but displayed before it shift every later frame by one.
            raise VideoDecodeError(
                self._path,
                "decord's frame order and the index disagree here: frames displayed before the keyframe "
                "they are decoded after (open GOP) make decord return a neighbouring frame",
            )
        if not index.seeks_land_on_keyframes:
            # decord seeks to a keyframe's timestamp and counts frames from where it lands;
            # MPEG-TS/PS seeks land mid-GOP, so the count starts at the wrong frame.
            raise VideoDecodeError(
                self._path,
                "decord would return wrong frames: seeking in this container does not land on keyframes",
            )
        # decord sizes are of the displayed picture: it applies 90/270 rotation itself.
        height, width = options.resize if options.resize is not None else (-1, -1)
        try:
            self._reader = decord.VideoReader(
                self._path, ctx=decord.cpu(0), width=width, height=height, num_threads=options.num_threads
            )
        except decord.DECORDError as e:
            raise VideoDecodeError(self._path, f"decord cannot open the file: {e}") from e
        self._check_against_index(index, options)

    def _check_against_index(self, index: FrameIndex, options: DecodeOptions) -> None:
        meta = index.metadata
        count = len(self._reader)
        if count != meta.num_frames:
            self.close()
            raise VideoDecodeError(
                self._path, f"decord's frame count {count} and the demux index's {meta.num_frames} disagree"
            )
        # decord's timestamps start at 0 for files whose first pts is not 0.
        stamps = self._reader.get_frame_timestamp(np.arange(count))[:, 0].astype(np.float64)
        expected = np.asarray(meta.pts) - meta.start_time
        worst = int(np.argmax(np.abs(stamps - expected)))
        if abs(stamps[worst] - expected[worst]) > _PTS_TOLERANCE_S:
            self.close()
            raise VideoDecodeError(
                self._path,
                f"decord's timestamp of frame {worst} ({stamps[worst]:.6f} s from start) and the demux "
                f"index's ({expected[worst]:.6f} s) disagree",
            )
        if meta.rotation:
            # Only a rotated file costs a probe decode: decord must have turned the picture.
            shape = tuple(self._reader[0].shape[:2])
            self._reader.seek(0)
            expected_shape = options.resize or (meta.height, meta.width)
            if shape != expected_shape:
                self.close()
                raise VideoDecodeError(
                    self._path,
                    f"decord's frame size {shape} and the display size {expected_shape} after the "
                    f"{meta.rotation} degree rotation disagree",
                )

    def decode(self, indices: Sequence[int]) -> torch.Tensor:
        if self._reader is None:
            raise VideoDecodeError(self._path, "reader is closed")
        try:
            batch = self._reader.get_batch(list(indices)).asnumpy()  # (T, H, W, 3)
        except Exception as e:  # decord raises its own DECORDError and plain RuntimeErrors
            raise VideoDecodeError(self._path, f"decord failed to decode frames {list(indices)[:5]}: {e}") from e
        return torch.from_numpy(np.ascontiguousarray(batch))

    def close(self) -> None:
        self._reader = None
