"""Processors: typed records or strings -> input_ids / attention_mask / labels, frames -> pixels.

One per family (``VideoLlamaProcessor``, ``VideoOFAProcessor``, ``VideoBertProcessor``). An
item is a dict of 1-D tensors (``input_ids``, ``attention_mask``, ``labels``) plus
``pixel_values`` ``(T, C, H, W)`` when frames are given; ``collate`` pads a list of items into a
batch with ``frame_mask (B, T)``. Settings live in the family config, so a processor is saved
and loaded with its model (``Processor.from_pretrained(folder)`` reads the same folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from videovlm.models.base import IGNORE_INDEX
from videovlm.models.pixels import PixelConfig, frames_to_pixel_values
from videovlm.models.tokenizer import ASSISTANT_MARKER, HUMAN_MARKER, IMAGE_TOKEN, VIDEO_TOKEN


class ProcessorError(ValueError):
    """A record or string cannot be turned into model inputs; the message names what is wrong."""


@dataclass(frozen=True)
class Turn:
    """One conversation turn as the processors see it (role ``human`` or ``gpt``)."""

    role: str
    text: str


def record_turns(record: Any, *, video_prompt: str, image_prompt: str) -> tuple[str, str, tuple[Turn, ...]]:
    """(record id, media kind, turns with the media placeholder in the first human turn) of a
    ``videovlm.data.formats`` record: VideoQA, VideoCaption, ImageCaption or Conversation."""
    from videovlm.data.formats import Conversation, ImageCaption, VideoCaption, VideoQA

    if isinstance(record, VideoQA):
        return record.video_id, "video", (Turn("human", f"{VIDEO_TOKEN} {record.question}"), Turn("gpt", record.answer))
    if isinstance(record, VideoCaption):
        return record.video_id, "video", (Turn("human", video_prompt), Turn("gpt", record.caption))
    if isinstance(record, ImageCaption):
        return record.id, "image", (Turn("human", image_prompt), Turn("gpt", record.caption))
    if isinstance(record, Conversation):
        turns = tuple(Turn(t.role, t.text) for t in record.turns)
        placeholder = VIDEO_TOKEN if record.media_kind == "video" else IMAGE_TOKEN
        humans = [t for t in turns if t.role == "human"]
        if not humans or placeholder not in humans[0].text:
            raise ProcessorError(
                f"conversation {record.id}: the first human turn must contain the {placeholder} placeholder "
                f"(where the {record.media_kind} tokens go)"
            )
        for i, t in enumerate(turns):
            if t.role not in ("human", "gpt"):
                raise ProcessorError(f"conversation {record.id}: turn {i} has role {t.role!r} (expected human or gpt)")
        return record.id, record.media_kind, turns
    raise ProcessorError(
        f"record: unsupported type {type(record).__name__} (expected VideoQA, VideoCaption, ImageCaption or Conversation)"
    )


def strip_placeholders(text: str) -> str:
    """Text without ``<video>`` / ``<image>`` (families that place visual tokens themselves)."""
    return " ".join(text.replace(VIDEO_TOKEN, " ").replace(IMAGE_TOKEN, " ").split())


class FamilyProcessor:
    """Shared pixel preprocessing, frame-count checks and collation."""

    def __init__(self, *, tokenizer, pixel: PixelConfig, max_frames: int, max_length: int):
        self.tokenizer = tokenizer
        self.pixel = pixel
        self.max_frames = max_frames
        self.max_length = max_length

    def frames_to_pixel_values(self, frames) -> torch.Tensor:
        """uint8 ``(T, H, W, 3)`` or ``(B, T, H, W, 3)`` -> float ``(B, T, C, H, W)``."""
        pixels = frames_to_pixel_values(frames, self.pixel)
        if pixels.shape[1] > self.max_frames:
            raise ProcessorError(f"frames: {pixels.shape[1]} frames but the model takes at most max_frames={self.max_frames}")
        return pixels

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, token_ids) -> list[str]:
        """Generated ids (B, L) -> texts, special tokens dropped."""
        return [t.strip() for t in self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)]

    def _item(self, input_ids: list[int], labels: list[int] | None, frames, where: str) -> dict[str, torch.Tensor]:
        if len(input_ids) > self.max_length:
            raise ProcessorError(f"{where}: {len(input_ids)} tokens, more than max_length={self.max_length}")
        item = {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "attention_mask": torch.ones(len(input_ids), dtype=torch.long),
        }
        if labels is not None:
            item["labels"] = torch.tensor(labels, dtype=torch.long)
        if frames is not None:
            item["pixel_values"] = self.frames_to_pixel_values(frames)[0]  # (T, C, H, W)
        return item

    def collate(self, items: Sequence[dict[str, torch.Tensor]], *, padding_side: str = "right") -> dict[str, torch.Tensor]:
        """Pad items into a batch. Text keys are padded (labels with -100); ``pixel_values``
        ``(T_i, C, H, W)`` are zero-padded at the end to the longest T with ``frame_mask (B, T)``."""
        if not items:
            raise ProcessorError("collate: empty list of items")
        keys = set(items[0])
        for i, item in enumerate(items):
            if set(item) != keys:
                raise ProcessorError(f"collate: item {i} has keys {sorted(item)}, item 0 has {sorted(keys)}")
        batch: dict[str, torch.Tensor] = {}
        pad_values = {"labels": IGNORE_INDEX, "attention_mask": 0, "instruction_mask": 0}
        for key in items[0]:
            if key == "pixel_values":
                continue
            values = [it[key] for it in items]
            pad = pad_values.get(key, self.tokenizer.pad_token_id)
            # The instruction is a separate sequence with its own absolute positions (the
            # instruction-aware Q-Former's): always padded at the end, as in training.
            batch[key] = _pad_1d(values, pad, "right" if key.startswith("instruction_") else padding_side)
        if "pixel_values" in items[0]:
            frames = [it["pixel_values"] for it in items]
            longest = max(f.shape[0] for f in frames)
            pixels = frames[0].new_zeros((len(frames), longest, *frames[0].shape[1:]))  # (B, T, C, H, W)
            mask = torch.zeros(len(frames), longest, dtype=torch.bool)
            for i, f in enumerate(frames):
                pixels[i, : f.shape[0]] = f
                mask[i, : f.shape[0]] = True
            batch["pixel_values"] = pixels
            batch["frame_mask"] = mask
        return batch


def _pad_1d(values: Sequence[torch.Tensor], pad: int, side: str) -> torch.Tensor:
    """(B, L_max) from 1-D tensors; left padding pads the flipped rows and flips back."""
    if side not in ("left", "right"):
        raise ProcessorError(f"padding_side: expected 'left' or 'right', got {side!r}")
    if side == "right":
        return pad_sequence(list(values), batch_first=True, padding_value=pad)
    return pad_sequence([v.flip(0) for v in values], batch_first=True, padding_value=pad).flip(1)


@dataclass
class ChatTemplateConfig:
    """The Video-LLaMA conversation template, token for token::

        <s>{system}###Human: <video> {question}###Assistant: {answer}</s>###Human: ...

    (Video-LLaMA writes ``<Video><ImageHere></Video>``; here ``<video>`` / ``<image>`` is the
    one placeholder the model replaces by its visual tokens.) Only the answers and their
    closing ``</s>`` are trained; the system text, human turns and markers get label -100.

    Fields: system (text before the first turn, may be empty), human_marker,
    assistant_marker, video_prompt / image_prompt (human turn for caption records),
    max_length (tokens before splicing the visual tokens).
    """

    system: str = ""
    human_marker: str = HUMAN_MARKER
    assistant_marker: str = ASSISTANT_MARKER
    video_prompt: str = f"{VIDEO_TOKEN} describe the video briefly."
    image_prompt: str = f"{IMAGE_TOKEN} describe the image briefly."
    max_length: int = 256


def encode_chat(tokenizer, template: ChatTemplateConfig, turns: Sequence[Turn], *, where: str, generation: bool = False) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 except the answers and their ``</s>``) of a conversation in
    the Video-LLaMA template; ``generation`` ends with the assistant marker. The one encoding of
    the template: the processor's, and the tiny LLM's chat pretraining (so the two agree token
    for token)."""

    def text_ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids += text_ids(template.system) if template.system else []
    labels = [IGNORE_INDEX] * len(ids)
    for i, turn in enumerate(turns):
        if turn.role == "human":
            piece = text_ids(f"{template.human_marker} {turn.text}") + text_ids(template.assistant_marker)
            ids += piece
            labels += [IGNORE_INDEX] * len(piece)
        elif turn.role == "gpt":
            if i == 0:
                raise ProcessorError(f"{where}: turn 0 is a gpt turn; conversations start with a human turn")
            piece = text_ids(f" {turn.text}") + [tokenizer.eos_token_id]
            ids += piece
            labels += piece
        else:
            raise ProcessorError(f"{where}: turn {i} has role {turn.role!r} (expected human or gpt)")
    if generation and (not turns or turns[-1].role != "human"):
        raise ProcessorError(f"{where}: a generation prompt must end with a human turn")
    return ids, labels


class VideoLlamaProcessor(FamilyProcessor):
    """Chat-template processor of Video-LLaMA (see ``ChatTemplateConfig``).

    With ``instruction=True`` (a model whose temporal encoder reads the instruction, e.g.
    ``InstructVideoQFormer``) every item also carries ``instruction_ids`` / ``instruction_mask``:
    ``<s>`` + the human turns' text without the placeholder, at most ``max_instruction_tokens``
    tokens (a longer instruction is an error naming the record)."""

    def __init__(
        self,
        *,
        tokenizer,
        pixel: PixelConfig,
        max_frames: int,
        template: ChatTemplateConfig,
        instruction: bool = False,
        max_instruction_tokens: int = 64,
    ):
        super().__init__(tokenizer=tokenizer, pixel=pixel, max_frames=max_frames, max_length=template.max_length)
        self.template = template
        self.instruction = instruction
        self.max_instruction_tokens = max_instruction_tokens

    def with_instruction(self, item: dict[str, torch.Tensor], turns: Sequence[Turn], *, where: str) -> dict[str, torch.Tensor]:
        """``item`` plus the instruction inputs of ``turns`` when this processor makes them."""
        if not self.instruction:
            return item
        text = " ".join(strip_placeholders(t.text) for t in turns if t.role == "human")
        ids = [self.tokenizer.bos_token_id, *self._ids(text)]
        if len(ids) > self.max_instruction_tokens:
            raise ProcessorError(f"{where}: instruction of {len(ids)} tokens, more than max_instruction_tokens={self.max_instruction_tokens}")
        item["instruction_ids"] = torch.tensor(ids, dtype=torch.long)
        item["instruction_mask"] = torch.ones(len(ids), dtype=torch.long)
        return item

    @classmethod
    def from_pretrained(cls, directory) -> VideoLlamaProcessor:
        from videovlm.models.io import load_processor

        return load_processor(directory, expected=cls)

    def encode_turns(self, turns: Sequence[Turn], *, where: str, generation: bool = False) -> tuple[list[int], list[int]]:
        """Token ids and labels of a conversation; ``generation`` ends with the assistant marker."""
        return encode_chat(self.tokenizer, self.template, turns, where=where, generation=generation)

    def __call__(self, record: Any, frames=None) -> dict[str, torch.Tensor]:
        """A training item from a record (labels -100 except the answers), or a generation
        prompt from a plain question string."""
        if isinstance(record, str):
            return self.prompt(record, frames)
        record_id, _, turns = record_turns(
            record, video_prompt=self.template.video_prompt, image_prompt=self.template.image_prompt
        )
        ids, labels = self.encode_turns(turns, where=f"record {record_id}")
        item = self._item(ids, labels, frames, where=f"record {record_id}")
        return self.with_instruction(item, turns, where=f"record {record_id}")

    def prompt(self, question: str, frames=None, *, media: str = "video") -> dict[str, torch.Tensor]:
        """A generation prompt for one question; the placeholder is prepended if absent."""
        if media not in ("video", "image"):
            raise ProcessorError(f"media: expected 'video' or 'image', got {media!r}")
        placeholder = VIDEO_TOKEN if media == "video" else IMAGE_TOKEN
        if VIDEO_TOKEN not in question and IMAGE_TOKEN not in question:
            question = f"{placeholder} {question}"
        turns = [Turn("human", question)]
        ids, _ = self.encode_turns(turns, where="prompt", generation=True)
        return self.with_instruction(self._item(ids, None, frames, where="prompt"), turns, where="prompt")
