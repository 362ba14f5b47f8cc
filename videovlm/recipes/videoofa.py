"""VideoOFA's own dataset components: stage 2 video-text matching and frame-order modelling,
and stage 1 image QA on the synthetic images.

Both read a WebVid captions CSV and turn each video into one yes/no instruction item with
``VideoOFAProcessor``: matching pairs the video with its own caption (``yes``) or with another
video's caption (``no``); frame order shows the frames in playing order (``yes``) or reversed
(``no``), which only a model that encodes frame order can tell apart. Which of the two an item
gets is drawn from (seed, epoch, index) like the engine's frame jitter, so runs and resumes
are exact and the positives and negatives stay balanced in expectation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from videovlm.data.formats import Conversation, Turn
from videovlm.train.data import ItemKey, MediaTextDataset, SkippedItem, item_generator
from videovlm.train.datasets import VideoCaptionDataset, record_media


class _YesNoVideoTask(VideoCaptionDataset):
    """A captions CSV whose items are yes/no tasks; ``_task_text`` builds one from the draw.
    Takes the arguments of ``videovlm.train.datasets.RecordDataset`` and needs the processor
    of a VideoOFA model (``matching`` / ``frame_order``). Items come from decoded frames
    (``pixel_values``) or, under ``features: cached``, from the cached frame features
    (``cached_item``): the same draw, the same text, the same frame order."""

    # (positive?, index of the other record, a spare uniform draw) of the item being encoded.
    _draw: tuple[bool, int, float] = (True, 0, 1.0)

    def draw(self, epoch: int, index: int) -> tuple[bool, int, float]:
        """(positive?, index of another record, a uniform number in [0, 1) a task may use)
        for item ``index`` in ``epoch``."""
        # A separate stream from the frame jitter (word 2i+1 vs the engine's i); eval items
        # use epoch 0, so the validation set is the same every time.
        generator = item_generator(self.seed, epoch if self.train else 0, index * 2 + 1)
        positive = bool(torch.rand(1, generator=generator) < 0.5)
        other = (index + 1 + int(torch.randint(max(1, len(self.records) - 1), (1,), generator=generator))) % len(self.records)
        return positive, other, float(torch.rand(1, generator=generator))

    def __getitem__(self, key: ItemKey | int) -> dict[str, torch.Tensor] | SkippedItem:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        # Each DataLoader worker holds its own copy of the dataset, so this hand-over to
        # ``_encode`` (called by the base class for this very item) is never shared.
        self._draw = self.draw(epoch, index)
        return super().__getitem__((epoch, index))

    def _encode(self, record: Any, frames: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        text, reverse = self._checked_task_text(record, *self._draw)
        if reverse:
            frames, valid = frames.flip(0), valid.flip(0)
        return {**text, "pixel_values": self.processor.frames_to_pixel_values(frames)[0], "frame_mask": valid}  # (T, C, H, W), (T,)

    def cached_item(self, key: ItemKey, record: Any, features: torch.Tensor, valid: torch.Tensor, *, input_name: str) -> dict[str, torch.Tensor]:
        """The item of ``key`` from cached frame features (T, N, D) (``CachedFeatureDataset``
        calls this): frame order permutes the cached frames, matching pairs them with another
        video's caption, exactly as ``_encode`` does with decoded frames."""
        epoch, index = key
        text, reverse = self._checked_task_text(record, *self.draw(epoch, index))
        if reverse:
            features, valid = features.flip(0), valid.flip(0)
        return {**text, input_name: features, "frame_mask": valid}  # (T, N, D), (T,)

    def _checked_task_text(self, record: Any, positive: bool, other: int, spare: float) -> tuple[dict[str, torch.Tensor], bool]:
        if not hasattr(self.processor, "frame_order") or not hasattr(self.processor, "matching"):
            raise TypeError(f"processor: {type(self).__name__} needs a VideoOFAProcessor, got {type(self.processor).__name__}")
        return self._task_text(record, positive=positive, other=other, spare=spare)

    def _task_text(self, record: Any, *, positive: bool, other: int, spare: float) -> tuple[dict[str, torch.Tensor], bool]:
        """The item's text side and whether its frames play reversed."""
        raise TypeError(f"{type(self).__name__} must define _task_text")


class VideoTextMatchingDataset(_YesNoVideoTask):
    """``does the video describe " caption "?`` with its own caption (yes) or another's (no).

    ``reversed_negatives``: the share of negatives that are the video played backwards with its
    own caption instead (temporal hard negatives: "moves left" next to a square moving right,
    "appears" next to one vanishing), so that matching needs the order of the frames and not
    only what is on screen. A caption that names no event still describes its reversed video:
    keep the share where captions name events (the synthetic ones all do)."""

    def __init__(self, *, reversed_negatives: float = 0.0, **kwargs: Any):
        if not 0.0 <= reversed_negatives <= 1.0:
            raise ValueError(f"reversed_negatives: must be in [0, 1], got {reversed_negatives}")
        self.reversed_negatives = reversed_negatives
        super().__init__(**kwargs)

    def _task_text(self, record, *, positive, other, spare):
        if not positive and spare < self.reversed_negatives:
            return self.processor.matching(record.caption, matches=False), True
        caption = record.caption if positive else self.records[other].caption
        return self.processor.matching(caption, matches=positive), False


class FrameOrderDataset(_YesNoVideoTask):
    """``are the frames of the video in order?`` on the frames as played (yes) or reversed (no)."""

    def _task_text(self, record, *, positive, other, spare):
        return self.processor.frame_order(None, reverse=not positive), not positive


# --------------------------------------------------------------------------------------
# Stage 1: image QA as instructions


def image_qa_records(image_captions: Path, annotations: Path | None = None) -> list[Conversation]:
    """Questions about each synthetic image, answered from the ground truth of its frame.

    The image ``<video_id>_fNN.jpg`` is frame NN of the video; ``annotations.jsonl`` (default:
    beside ``image_captions``) says which objects are visible there and their colour at that
    frame. Per image: the colour of each visible object, the shape of each, and how many are
    visible. Each question is a one-turn image conversation (``<image> question`` -> answer)."""
    from videovlm.data.formats import DataFormatError, read_annotations_jsonl, read_image_captions_json
    from videovlm.data.synthetic.vocabulary import NUMBER_WORDS

    image_captions = Path(image_captions)
    annotations = Path(annotations) if annotations is not None else image_captions.parent / "annotations.jsonl"
    truth = {a.video_id: a for a in read_annotations_jsonl(annotations, check_files=False)}
    records = []
    for image in read_image_captions_json(image_captions, check_files=False):
        video_id, sep, frame_text = image.id.rpartition("_f")
        if not sep or not frame_text.isdigit() or video_id not in truth:
            raise DataFormatError(image_captions, f"item {image.id}", "id", f"expected <video_id>_fNN of a video in {annotations}")
        frame = int(frame_text)
        visible = [o for o in truth[video_id].objects if o.positions[frame] is not None]
        pairs = []
        for obj in visible:
            colour = obj.color_after if obj.change_frame is not None and frame >= obj.change_frame else obj.color
            pairs += [(f"what colour is the {obj.shape}?", colour), (f"what shape is the {colour} object?", obj.shape)]
        if 1 <= len(visible) <= len(NUMBER_WORDS):
            pairs.append(("how many objects are in the image?", NUMBER_WORDS[len(visible) - 1]))
        for i, (question, answer) in enumerate(pairs):
            turns = (Turn("human", f"<image> {question}"), Turn("gpt", answer))
            records.append(Conversation(id=f"{image.id}_q{i}", media=image.image, media_kind="image", turns=turns))
    return records


class ImageQADataset(MediaTextDataset):
    """Image QA instructions (``image_qa_records``) for the engine: ``path`` is a synthetic
    ``image_captions.json``; the family processor is injected by the engine."""

    def __init__(self, *, path: Path, processor: Any, train: bool = True, seed: int = 0, annotations: Path | None = None, limit: int | None = None):
        records = image_qa_records(path, annotations)
        self.processor = processor
        super().__init__(
            records=records[:limit],
            media_path=record_media,
            encode=lambda record, frames, valid: {**processor(record, frames), "frame_mask": valid},
            train=train,
            seed=seed,
            pad_values={"input_ids": processor.tokenizer.pad_token_id},
        )
