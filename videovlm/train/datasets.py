"""Dataset components for recipes: the community formats, read by ``videovlm.data.formats``
and turned into model inputs by the family's processor (injected by the engine).

    data:
      train:
        - {_component_: videovlm.train.datasets.VideoCaptionDataset, captions_csv: .cache/synthetic/train/captions.csv, sampler: "segment:8"}
        - {_component_: videovlm.train.datasets.ImageCaptionDataset, image_captions_json: .cache/synthetic/train/image_captions.json}
      val:
        - {_component_: videovlm.train.datasets.VideoQADataset, qa_json: .cache/synthetic/val/qa.json, sampler: "uniform:8"}

At train time the sampler jitters with a per-item generator; at eval time it takes centres.
A missing or corrupt video is skipped and counted by the engine (``max_skip_fraction``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from videovlm.train.data import MediaTextDataset


class RecordDataset(MediaTextDataset):
    """Typed records (VideoQA, VideoCaption, Conversation, ImageCaption) + a family processor."""

    def __init__(
        self,
        *,
        records: Sequence[Any],
        processor: Any,
        sampler: str = "uniform:8",
        train: bool = True,
        seed: int = 0,
        decode_size: Sequence[int] | None = None,
    ):
        if processor is None or not callable(processor):
            raise TypeError("processor: the model has no processor (a model with a `processor` attribute is needed for record datasets)")
        self.processor = processor
        super().__init__(
            records=records,
            media_path=record_media,
            encode=self._encode,
            sampler=sampler,
            train=train,
            seed=seed,
            pad_values={"input_ids": processor.tokenizer.pad_token_id},
            decode_size=decode_size,
        )

    def _encode(self, record: Any, frames: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        item = self.processor(record, frames)
        if "pixel_values" in item:
            item["frame_mask"] = valid  # (T,) False where the sampler padded a short video
        return item


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


def _limited(records: list[Any], limit: int | None) -> list[Any]:
    return records if limit is None else records[:limit]


def VideoQADataset(
    *,
    qa_json: Path,
    processor: Any,
    sampler: str = "uniform:8",
    train: bool = True,
    seed: int = 0,
    media_root: Path | None = None,
    limit: int | None = None,
    decode_size: Sequence[int] | None = None,
) -> RecordDataset:
    """MSRVTT-QA / MSVD-QA style ``qa.json`` (``read_qa_json``); ``limit`` keeps the first N."""
    from videovlm.data.formats import read_qa_json

    records = _limited(read_qa_json(qa_json, media_root=media_root, check_files=False), limit)
    return RecordDataset(records=records, processor=processor, sampler=sampler, train=train, seed=seed, decode_size=decode_size)


def VideoCaptionDataset(
    *,
    captions_csv: Path,
    processor: Any,
    sampler: str = "uniform:8",
    train: bool = True,
    seed: int = 0,
    media_root: Path | None = None,
    limit: int | None = None,
    decode_size: Sequence[int] | None = None,
) -> RecordDataset:
    """WebVid style ``captions.csv`` (``read_webvid_csv``)."""
    from videovlm.data.formats import read_webvid_csv

    records = _limited(read_webvid_csv(captions_csv, media_root=media_root, check_files=False), limit)
    return RecordDataset(records=records, processor=processor, sampler=sampler, train=train, seed=seed, decode_size=decode_size)


def InstructionDataset(
    *,
    instructions_json: Path,
    processor: Any,
    sampler: str = "uniform:8",
    train: bool = True,
    seed: int = 0,
    media_root: Path | None = None,
    limit: int | None = None,
    decode_size: Sequence[int] | None = None,
) -> RecordDataset:
    """LLaVA / VideoChat style ``instructions.json`` (``read_instructions_json``)."""
    from videovlm.data.formats import read_instructions_json

    records = _limited(read_instructions_json(instructions_json, media_root=media_root, check_files=False), limit)
    return RecordDataset(records=records, processor=processor, sampler=sampler, train=train, seed=seed, decode_size=decode_size)


def ImageCaptionDataset(
    *,
    image_captions_json: Path,
    processor: Any,
    train: bool = True,
    seed: int = 0,
    media_root: Path | None = None,
    limit: int | None = None,
) -> RecordDataset:
    """LLaVA-CC595K style ``image_captions.json`` (``read_image_captions_json``): 1-frame items."""
    from videovlm.data.formats import read_image_captions_json

    records = _limited(read_image_captions_json(image_captions_json, media_root=media_root, check_files=False), limit)
    return RecordDataset(records=records, processor=processor, train=train, seed=seed)
