"""VideoOFA stage-2 tasks as dataset components: video-text matching and frame-order modelling.

Both read a WebVid captions CSV and turn each video into one yes/no instruction item with
``VideoOFAProcessor``: matching pairs the video with its own caption (``yes``) or with another
video's caption (``no``); frame order shows the frames in playing order (``yes``) or reversed
(``no``), which only a model that encodes frame order can tell apart. Which of the two an item
gets is drawn from (seed, epoch, index) like the engine's frame jitter, so runs and resumes
are exact and the positives and negatives stay balanced in expectation.
"""

from __future__ import annotations

from typing import Any

import torch

from videovlm.train.data import ItemKey, SkippedItem, item_generator
from videovlm.train.datasets import VideoCaptionDataset


class _YesNoVideoTask(VideoCaptionDataset):
    """A captions CSV whose items are yes/no tasks; ``_task_item`` builds one from the draw.
    Takes the arguments of ``videovlm.train.datasets.RecordDataset`` and needs the processor
    of a VideoOFA model (``matching`` / ``frame_order``)."""

    # (positive?, index of the other record) of the item being encoded; see __getitem__.
    _draw: tuple[bool, int] = (True, 0)

    def __getitem__(self, key: ItemKey | int) -> dict[str, torch.Tensor] | SkippedItem:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        # A separate stream from the frame jitter (word 2i+1 vs the engine's i); eval items
        # use epoch 0, so the validation set is the same every time.
        generator = item_generator(self.seed, epoch if self.train else 0, index * 2 + 1)
        positive = bool(torch.rand(1, generator=generator) < 0.5)
        other = (index + 1 + int(torch.randint(max(1, len(self.records) - 1), (1,), generator=generator))) % len(self.records)
        # Each DataLoader worker holds its own copy of the dataset, so this hand-over to
        # ``_encode`` (called by the base class for this very item) is never shared.
        self._draw = (positive, other)
        return super().__getitem__((epoch, index))

    def _encode(self, record: Any, frames: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        if not hasattr(self.processor, "frame_order") or not hasattr(self.processor, "matching"):
            raise TypeError(f"processor: {type(self).__name__} needs a VideoOFAProcessor, got {type(self.processor).__name__}")
        positive, other = self._draw
        return self._task_item(record, frames, valid, positive=positive, other=other)

    def _task_item(self, record: Any, frames: torch.Tensor, valid: torch.Tensor, *, positive: bool, other: int) -> dict[str, torch.Tensor]:
        raise TypeError(f"{type(self).__name__} must define _task_item")


class VideoTextMatchingDataset(_YesNoVideoTask):
    """``does the video describe " caption "?`` with its own caption (yes) or another's (no)."""

    def _task_item(self, record, frames, valid, *, positive, other):
        caption = record.caption if positive else self.records[other].caption
        return {**self.processor.matching(caption, matches=positive, frames=frames), "frame_mask": valid}


class FrameOrderDataset(_YesNoVideoTask):
    """``are the frames of the video in order?`` on the frames as played (yes) or reversed (no)."""

    def _task_item(self, record, frames, valid, *, positive, other):
        item = self.processor.frame_order(frames, reverse=not positive)
        return {**item, "frame_mask": valid if positive else valid.flip(0)}
