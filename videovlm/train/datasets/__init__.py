"""Dataset components for recipes: the community formats, read by ``videovlm.data.formats``
and turned into model inputs by the family's processor (injected by the engine).

    data:
      train:
        - {_component_: videovlm.train.datasets.VideoCaptionDataset, path: .cache/synthetic/train/captions.csv, sampler: "segment:8"}
        - {_component_: videovlm.train.datasets.ImageCaptionDataset, path: .cache/synthetic/train/image_captions.json}
      val:
        - {_component_: videovlm.train.datasets.VideoQADataset, path: .cache/synthetic/val/qa.json, sampler: "uniform:8"}

At train time the sampler jitters with a per-item generator; at eval time it takes centres.
A missing or corrupt video is skipped and counted by the engine (``max_skip_fraction``).

``ShardQADataset`` / ``ShardCaptionDataset`` / ``ShardInstructionDataset`` stream the
webdataset shards of ``videovlm extract --format wds`` instead (``videovlm.train.datasets.shards``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from videovlm.train.data import DataError, MediaTextDataset, encode_with_frame_mask
from videovlm.train.datasets.shards import ShardCaptionDataset, ShardInstructionDataset, ShardQADataset

# The shard datasets (``videovlm.train.datasets.shards``) are components of this package too.
__all__ = [
    "ActivityNetQADataset",
    "ImageCaptionDataset",
    "InstructionDataset",
    "MixtureDataset",
    "ObjectCaptionDataset",
    "RecordDataset",
    "ShardCaptionDataset",
    "ShardInstructionDataset",
    "ShardQADataset",
    "VideoCaptionDataset",
    "VideoInstructDataset",
    "VideoQADataset",
    "record_media",
]


class RecordDataset(MediaTextDataset):
    """Records of one file in a community format + a family processor (injected by the
    engine). Subclasses name the reader of ``videovlm.data.formats`` that parses ``path``;
    relative media paths resolve against ``media_root`` (default: the file's folder);
    ``limit`` keeps the first N records; ``decode_size`` is what to decode at: (height,
    width), a short side (aspect kept), or ``auto``: the size the processor resizes to, so
    the decoder scales in one step and the processor only crops."""

    READER: str = ""  # a reader function of videovlm.data.formats

    def __init__(
        self,
        *,
        path: Path,
        processor: Any,
        sampler: str = "uniform:8",
        train: bool = True,
        seed: int = 0,
        media_root: Path | None = None,
        limit: int | None = None,
        decode_size: Sequence[int] | int | str | None = None,
    ):
        if processor is None or not callable(processor):
            raise TypeError(f"processor: {type(self).__name__} needs a model with a `processor` attribute")
        if decode_size == "auto":
            from videovlm.models.pixels import decode_target

            decode_size = decode_target(processor.pixel)
        elif isinstance(decode_size, str):
            raise DataError(f"decode_size: expected [height, width], a short side or 'auto', got {decode_size!r}")
        records = self.read_records(path, media_root=media_root)
        self.processor = processor
        super().__init__(
            records=records if limit is None else records[:limit],
            media_path=record_media,
            encode=self._encode,
            sampler=sampler,
            train=train,
            seed=seed,
            pad_values={"input_ids": processor.tokenizer.pad_token_id},
            decode_size=decode_size,
        )

    def read_records(self, path: Path, *, media_root: Path | None) -> list[Any]:
        """The records of ``path`` (by default with the ``READER`` of ``videovlm.data.formats``)."""
        from videovlm.data import formats

        return getattr(formats, self.READER)(path, media_root=media_root, check_files=False)

    def _encode(self, record: Any, frames: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        return encode_with_frame_mask(self.processor, record, frames, valid)


class VideoQADataset(RecordDataset):
    """MSRVTT-QA / MSVD-QA style ``qa.json``. ``types`` keeps only the questions of these types
    (the items' ``type`` field), e.g. a second entry of the same file with ``types:
    [direction]`` and a weight, to sample a type that is learned more slowly more often."""

    READER = "read_qa_json"

    def __init__(self, *, types: Sequence[str] | None = None, **kwargs: Any):
        """``kwargs``: those of ``RecordDataset``."""
        if types is not None and (isinstance(types, str) or not types or not all(isinstance(t, str) for t in types)):
            raise DataError(f"types: expected a non-empty list of question type names, got {types!r}")
        self.types = None if types is None else tuple(types)
        super().__init__(**kwargs)

    def read_records(self, path: Path, *, media_root: Path | None) -> list[Any]:
        records = super().read_records(path, media_root=media_root)
        if self.types is None:
            return records
        kept = [r for r in records if r.type in self.types]
        if not kept:
            present = sorted({r.type for r in records})
            raise DataError(f"{path}: no question of type {', '.join(self.types)} (types: {', '.join(present) or 'none'})")
        return kept


class VideoCaptionDataset(RecordDataset):
    """WebVid style ``captions.csv``."""

    READER = "read_webvid_csv"


class InstructionDataset(RecordDataset):
    """LLaVA / VideoChat style ``instructions.json`` (conversations; human turns get label -100)."""

    READER = "read_instructions_json"


class VideoInstructDataset(RecordDataset):
    """VideoInstruct-100K (Video-ChatGPT) ``{"video_id", "q", "a"}`` JSON: one-turn conversations."""

    def read_records(self, path: Path, *, media_root: Path | None) -> list[Any]:
        from videovlm.data.community import read_videoinstruct_json

        return read_videoinstruct_json(path, media_root=media_root, check_files=False)


class ActivityNetQADataset(RecordDataset):
    """ActivityNet-QA: ``path`` is ``<split>_q.json``; the answers are the ``_a.json`` beside it."""

    def read_records(self, path: Path, *, media_root: Path | None) -> list[Any]:
        from videovlm.data.community import read_activitynet_qa

        return read_activitynet_qa(path, media_root=media_root, check_files=False)


class MixtureDataset(RecordDataset):
    """A LLaVA-Video-178K / LLaVA-NeXT style mixture YAML of instruction files, each sampled by
    its ``sampling_strategy`` (``videovlm.data.community.read_mixture``)."""

    def read_records(self, path: Path, *, media_root: Path | None) -> list[Any]:
        from videovlm.data.community import read_mixture

        # A fixed seed: the same items every run and on every rank (random:N% is a subset, not an order).
        return read_mixture(path, media_root=media_root, check_files=False, seed=0)


class ObjectCaptionDataset(RecordDataset):
    """Object captions of the synthetic data (``videovlm.data.synthetic.object_captions``): for
    every object of every video of an ``annotations.jsonl``, "<video> describe the {shape}."
    answered by that object's own caption."""

    def read_records(self, path: Path, *, media_root: Path | None) -> list[Any]:
        from videovlm.data.synthetic.object_captions import object_caption_conversations

        return object_caption_conversations(path, media_root=media_root)


class ImageCaptionDataset(RecordDataset):
    """LLaVA-CC595K style ``image_captions.json``: 1-frame items (the sampler is unused)."""

    READER = "read_image_captions_json"


def record_media(record: Any) -> tuple[Path, bool]:
    """(media path, is_video) of a ``videovlm.data.formats`` record."""
    for field, is_video in (("video", True), ("image", False)):
        value = getattr(record, field, None)
        if value is not None:
            return Path(value), is_video
    media = getattr(record, "media", None)
    if media is not None:
        return Path(media), getattr(record, "media_kind", "video") == "video"
    raise TypeError(f"record: {type(record).__name__} has no video, image or media field")
