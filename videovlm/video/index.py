"""Demux-only index of one video stream: exact frame count, pts of every frame, keyframes.

Container headers lie (PyAV ``stream.frames`` is 0 for mkv/webm, decord counts packets,
edit lists hide pre-roll frames), so every reader builds its metadata from one pass over
the chosen stream's packets instead. Packets are not decoded, except the first frame: it
proves the stream is decodable and carries the display matrix (rotation), which FFmpeg
attaches to decoded frames.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from videovlm.paths import file_problem
from videovlm.video.types import VideoDecodeError, VideoMetadata


@dataclass(frozen=True)
class FrameIndex:
    """Everything the decoders need to find frame ``i`` (presentation order) by pts.

    Attributes:
        metadata: the public view (seconds, display size, keyframe indices).
        time_base: the stream time base; ``pts_ticks[i] * time_base`` is ``metadata.pts[i]``.
        pts_ticks: pts of every frame in stream time-base ticks, strictly increasing.
        seek_ticks: for every frame, the timestamp to pass to ``container.seek`` so that
            decoding forward from there produces it: the pts of the last keyframe at or
            before it in presentation order (FFmpeg's demuxers, mp4 included, seek by pts;
            a dts would land one GOP early when B-frames delay decode times).
        coded_width: width of the decoded picture before rotation.
        coded_height: height of the decoded picture before rotation.
        is_best_stream: whether the stream is FFmpeg's "best" video stream (the only one
            decord can read).
        has_leading_frames: some frame is decoded after a keyframe but displayed before it
            (open GOPs, HEVC with short GOPs). Readers that count frames from a keyframe
            instead of matching pts (decord) return the wrong frame for such streams.
        decode_rank: for every frame, the position of its packet in decode (file) order;
            tells a reader where a seek made the demuxer start.
        dts_ticks: for every frame, its packet's dts (its pts where the container has none).
        seeks_land_on_keyframes: seeking to a frame's pts makes the demuxer start at or
            before the keyframe that frame is decoded from (demuxers that seek in a keyframe
            index: mp4, mkv, avi, ...). False where seeking binary-searches packets by dts
            and starts at whatever packet it finds, usually after the keyframe (MPEG-TS/PS):
            there only a seek to the keyframe's own dts lands on it.
    """

    metadata: VideoMetadata
    time_base: Fraction
    pts_ticks: tuple[int, ...]
    seek_ticks: tuple[int, ...]
    coded_width: int
    coded_height: int
    is_best_stream: bool
    has_leading_frames: bool
    decode_rank: tuple[int, ...] = ()
    dts_ticks: tuple[int, ...] = ()
    seeks_land_on_keyframes: bool = True

    @functools.cached_property
    def frame_by_pts(self) -> dict[int, int]:
        """Frame index of every pts (stream ticks)."""
        return {t: i for i, t in enumerate(self.pts_ticks)}

    @functools.cached_property
    def frame_by_decode_rank(self) -> tuple[int, ...]:
        """Frame index of every packet, in decode order (the inverse of ``decode_rank``)."""
        inverse = [0] * len(self.decode_rank)
        for frame, rank in enumerate(self.decode_rank):
            inverse[rank] = frame
        return tuple(inverse)

    def frame_at_time(self, seconds: float) -> int:
        """Index of the frame displayed at ``seconds``: the last frame with pts <= t.

        Raises ``IndexError`` before the first frame's pts and at or after the end of the
        last frame (``start_time + duration``). A tolerance of 1 microsecond absorbs float
        rounding of pts values the caller read from ``metadata.pts``.
        """
        meta = self.metadata
        end = meta.start_time + meta.duration
        if not (meta.pts[0] - 1e-6 <= seconds < end):
            raise IndexError(
                f"{meta.path}: time {seconds!r} s is outside the video "
                f"[{meta.pts[0]:.6f}, {end:.6f}) s"
            )
        return max(bisect.bisect_right(meta.pts, seconds + 1e-6) - 1, 0)


@dataclass
class _PacketTable:
    """The chosen stream's frame packets in decode order (one demux pass)."""

    time_base: Fraction
    pts: list[int] = field(default_factory=list)
    dts: list[int] = field(default_factory=list)
    keyframe: list[bool] = field(default_factory=list)
    duration: list[int] = field(default_factory=list)


def _check_path(path: Path) -> None:
    # A FIFO or device passes here and is refused below by its size, or probed by FFmpeg.
    problem = file_problem(path, missing="no such file", special_ok=True)
    if problem is not None:
        raise VideoDecodeError(str(path), problem)
    if path.stat().st_size == 0:
        raise VideoDecodeError(str(path), "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError(str(path), "file is not readable (permission denied)")


def open_container(path: str | Path) -> av.container.InputContainer:
    """Open ``path`` with PyAV, turning every failure into a ``VideoDecodeError``."""
    path = Path(path)
    _check_path(path)
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        raise VideoDecodeError(str(path), f"not a readable media file ({type(e).__name__}: {e})") from e


def select_stream(container: av.container.InputContainer, path: str, stream_index: int | None) -> av.video.VideoStream:
    """The video stream to read: FFmpeg's "best" one, or ``container.streams[stream_index]``."""
    if stream_index is None:
        stream = container.streams.best("video")
        if stream is None:
            kinds = ", ".join(f"#{s.index} {s.type}" for s in container.streams) or "none"
            raise VideoDecodeError(path, f"no video stream (streams: {kinds})")
        return stream
    if not isinstance(stream_index, int) or isinstance(stream_index, bool):
        raise VideoDecodeError(path, f"stream_index must be an int or None, got {stream_index!r}")
    if not 0 <= stream_index < len(container.streams):
        raise VideoDecodeError(path, f"stream index {stream_index} does not exist ({len(container.streams)} streams)")
    stream = container.streams[stream_index]
    if stream.type != "video":
        raise VideoDecodeError(path, f"stream {stream_index} is not a video stream (its type is {stream.type})")
    return stream


def _first_frame(path: str, stream: av.video.VideoStream, packets: list[av.Packet]) -> av.VideoFrame:
    """Decode just enough packets to get one frame (rotation, coded size, decodability)."""
    codec = stream.codec_context
    for packet in packets + [None]:
        try:
            frames = codec.decode(packet)
        except av.FFmpegError as e:
            raise VideoDecodeError(path, f"stream {stream.index} cannot be decoded: {e}") from e
        if frames:
            return frames[0]
    raise VideoDecodeError(path, f"stream {stream.index} has packets but the decoder produced no frame")


def build_index(path: str | Path, stream_index: int | None = None) -> FrameIndex:
    """Demux the chosen video stream of ``path`` once and return its exact frame index."""
    path_str = str(path)
    container = open_container(path)
    try:
        stream = select_stream(container, path_str, stream_index)
        codec_name = stream.codec_context.name if stream.codec_context is not None else None
        if not codec_name:
            raise VideoDecodeError(path_str, f"stream {stream.index} has no decoder in this FFmpeg build")
        packets = _PacketTable(time_base=Fraction(stream.time_base or Fraction(1, 1)))
        head_packets: list[av.Packet] = []
        last_ts: int | None = None
        packets_seen = 0
        last_corrupt = False
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the end-of-stream flush packet
                packets_seen += 1
                last_corrupt = packet.is_corrupt
                if packet.is_discard:
                    continue  # pre-roll an edit list hides: the decoder drops it, not a frame
                pts = packet.pts if packet.pts is not None else packet.dts
                if pts is None:
                    if last_ts is None or not packet.duration:
                        raise VideoDecodeError(path_str, f"packet {len(packets.pts)} of stream {stream.index} has neither pts nor dts")
                    pts = last_ts + packet.duration
                last_ts = pts
                packets.pts.append(pts)
                packets.dts.append(packet.dts if packet.dts is not None else pts)
                packets.keyframe.append(packet.is_keyframe)
                packets.duration.append(packet.duration or 0)
                if len(head_packets) < 64:
                    head_packets.append(packet)
        except av.FFmpegError as e:
            raise VideoDecodeError(path_str, f"demuxing stream {stream.index} failed after {len(packets.pts)} packets: {e}") from e
        if not packets.pts:
            raise VideoDecodeError(path_str, f"stream {stream.index} has no packets")
        # Demuxers stop quietly at the end of a cut-off file; the incomplete last packet and,
        # in mp4/mov, the sample table give it away. (AVI headers count timeline slots,
        # gaps of variable-rate files included, so they are no evidence.)
        listed = (stream.frames or 0) if "mov" in container.format.name.split(",") else 0
        if last_corrupt or 0 < packets_seen < listed:
            raise VideoDecodeError(
                path_str,
                f"file is truncated: stream {stream.index} ends after {packets_seen} packets"
                + (f" of the {listed} its sample table lists" if packets_seen < listed else " with an incomplete packet"),
            )
        first = _first_frame(path_str, stream, head_packets)
        best = container.streams.best("video")
        index = _assemble(path_str, stream, packets, first, codec_name, best is not None and best.index == stream.index)
        return dataclasses.replace(index, seeks_land_on_keyframes=_seeks_land_on_keyframes(container, stream, index))
    finally:
        container.close()


def packet_frame(index: FrameIndex, packet: av.Packet) -> int | None:
    """The frame (presentation-order index) a demuxed packet carries, or None if the index
    does not list it (edit-list pre-roll, the flush packet)."""
    if packet.size == 0:
        return None
    ticks = packet.pts if packet.pts is not None else packet.dts
    return index.frame_by_pts.get(ticks) if ticks is not None else None


def read_to_keyframe(index: FrameIndex, packets: Iterator[av.Packet], key: int, limit: int = 256) -> list[av.Packet] | None:
    """After a seek, read packets until keyframe ``key`` comes out intact (its own pts, flagged
    as a keyframe) and return every packet read, which the caller must still decode.

    Returns None where the seek did not land at or before it: a packet that comes after it in
    decode order was read first (a seek that landed late, or a landing packet the parser cut
    and gave the next packet's pts, as MPEG-PS does), or the stream ended. After ``limit``
    packets, all before it, the seek landed early enough and the packets are returned.
    """
    rank = index.decode_rank[key]
    read = []
    for packet in packets:
        read.append(packet)
        frame = packet_frame(index, packet)
        if frame is None:
            continue
        if frame == key and packet.is_keyframe:
            return read
        if index.decode_rank[frame] > rank:
            return None
        if len(read) >= limit:
            return read
    return None


def _seeks_land_on_keyframes(container: av.container.InputContainer, stream: av.video.VideoStream, index: FrameIndex) -> bool:
    """Probe whether seeking to a non-keyframe's pts starts the demuxer at or before the
    keyframe it is decoded from (see :attr:`FrameIndex.seeks_land_on_keyframes`).

    Probes the first and the last non-keyframe: two seeks and the packets up to their
    keyframes read, no decoding.
    """
    keys = set(index.metadata.keyframes)
    others = [i for i in range(index.metadata.num_frames) if i not in keys]
    if not others:
        return True  # every packet is a keyframe: wherever a seek lands, decoding can start
    for frame in {others[0], others[-1]}:
        key = index.frame_by_pts[index.seek_ticks[frame]]
        try:
            container.seek(index.pts_ticks[frame], stream=stream, backward=True, any_frame=False)
            if read_to_keyframe(index, container.demux(stream), key) is None:
                return False
        except av.FFmpegError:
            return False  # cannot seek at all: readers must not trust a seek either
    return True


def _assemble(
    path: str,
    stream: av.video.VideoStream,
    packets: _PacketTable,
    first: av.VideoFrame,
    codec_name: str,
    is_best_stream: bool,
) -> FrameIndex:
    """Turn the decode-order packet table into the presentation-order index (vectorised:
    a 5-minute video has ~10k frames and opening a file must stay cheap)."""
    pts_decode = np.asarray(packets.pts, dtype=np.int64)
    key_decode = np.asarray(packets.keyframe, dtype=bool)
    order = np.argsort(pts_decode, kind="stable")
    pts_ticks = pts_decode[order]
    same = np.flatnonzero(np.diff(pts_ticks) == 0)
    if same.size:
        raise VideoDecodeError(path, f"stream {stream.index} has two packets with pts {int(pts_ticks[same[0]])}: frames cannot be told apart")
    is_key = key_decode[order]
    keyframes = np.flatnonzero(is_key)
    if not keyframes.size:
        raise VideoDecodeError(path, f"stream {stream.index} has no keyframe")
    # Leading frames: decoded after a keyframe (decode order) but shown before it.
    last_key_pts = np.maximum.accumulate(np.where(key_decode, pts_decode, np.iinfo(np.int64).min))
    has_leading_frames = bool(np.any(~key_decode & (pts_decode < last_key_pts)))
    # Seek point of every frame: the last keyframe at or before it in presentation order;
    # frames before the first keyframe (open-GOP leading pictures) decode after that one.
    last_key_rank = np.maximum.accumulate(np.where(is_key, np.arange(len(order)), -1))
    seek_ticks = pts_ticks[np.where(last_key_rank < 0, keyframes[0], last_key_rank)]
    dts_ticks = np.asarray(packets.dts, dtype=np.int64)[order]

    tb = float(packets.time_base)
    pts_s = pts_ticks.astype(np.float64) * tb
    steps = np.diff(pts_s)
    last_duration = packets.duration[int(order[-1])] * tb
    if last_duration <= 0:
        last_duration = float(np.median(steps)) if steps.size else 1.0 / float(stream.average_rate or 25)
    durations = np.append(steps, last_duration)
    span = float(pts_s[-1] - pts_s[0])
    fps = (len(pts_s) - 1) / span if span > 0 else float(stream.average_rate or 0)

    rotation = int(first.rotation) % 360
    if rotation % 90:
        raise VideoDecodeError(path, f"rotation {first.rotation} degrees is not a multiple of 90")
    coded_w, coded_h = first.width, first.height
    display_w, display_h = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    pts_tuple = tuple(pts_s.tolist())
    metadata = VideoMetadata(
        path=path,
        stream_index=stream.index,
        num_frames=len(pts_tuple),
        fps=fps,
        duration=span + last_duration,
        width=display_w,
        height=display_h,
        rotation=rotation,
        codec=codec_name,
        keyframes=tuple(keyframes.tolist()),
        pts=pts_tuple,
        start_time=pts_tuple[0],
        frame_durations=tuple(durations.tolist()),
    )
    return FrameIndex(
        metadata=metadata,
        time_base=packets.time_base,
        pts_ticks=tuple(pts_ticks.tolist()),
        seek_ticks=tuple(seek_ticks.tolist()),
        coded_width=coded_w,
        coded_height=coded_h,
        is_best_stream=is_best_stream,
        has_leading_frames=has_leading_frames,
        decode_rank=tuple(order.tolist()),
        dts_ticks=tuple(dts_ticks.tolist()),
    )
