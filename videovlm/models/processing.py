"""What the family processors share: typed records or strings -> input_ids / attention_mask /
labels, frames -> pixels.

One processor per family, in its folder (``videollama/processing.py``, ``videoofa/``,
``videobert/``), each a ``FamilyProcessor``. An item is a dict of 1-D tensors (``input_ids``, ``attention_mask``, ``labels``) plus
``pixel_values`` ``(T, C, H, W)`` when frames are given; ``collate`` pads a list of items into a
batch with ``frame_mask (B, T)``. Settings live in the family config, so a processor is saved
and loaded with its model (``Processor.from_pretrained(folder)`` reads the same folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.nn.utils.rnn import pad_sequence

from videovlm.models.base import IGNORE_INDEX, load_saved_tokenizer, read_config_json, require_pixel_settings
from videovlm.models.configs import ModelConfigError, config_from_dict
from videovlm.models.pixels import PixelConfig, frames_to_pixel_values
from videovlm.models.tokenizer import IMAGE_TOKEN, VIDEO_TOKEN


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
    """Shared pixel preprocessing, frame-count checks and collation. A family's processor
    sets ``MODEL_TYPE`` and ``CONFIG_CLASS`` (its config dataclass, whose ``template`` field
    holds the text settings) and takes ``tokenizer``, ``pixel``, ``max_frames`` and
    ``template`` (plus ``options_from_config``) as keyword arguments."""

    MODEL_TYPE: ClassVar[str]
    CONFIG_CLASS: ClassVar[type]

    # Families whose config has ``beyond_max_frames`` pass it through ``options_from_config``.
    beyond_max_frames: str = "error"

    def __init__(self, *, tokenizer, pixel: PixelConfig, max_frames: int, max_length: int):
        self.tokenizer = tokenizer
        self.pixel = pixel
        self.max_frames = max_frames
        self.max_length = max_length

    @classmethod
    def from_config(cls, config: Any, *, tokenizer, pixel: PixelConfig | None = None):
        """The processor of a family config. ``pixel`` comes from the built vision tower;
        without it, from the config (a saved config always carries the tower's pixel settings)."""
        return cls(
            tokenizer=tokenizer,
            pixel=pixel if pixel is not None else require_pixel_settings(config.vision),
            max_frames=config.max_frames,
            template=config.template,
            **cls.options_from_config(config),
        )

    @classmethod
    def options_from_config(cls, config: Any) -> dict[str, Any]:
        """Family-specific keyword arguments of the processor, from the config (none by default)."""
        return {}

    @classmethod
    def from_pretrained(cls, directory: str | Path):
        """The processor saved with a model (``save_pretrained``): the tokenizer files plus the
        processor settings in config.json. Builds only the text/pixel side (no weights are read)."""
        directory = Path(directory)
        data = read_config_json(directory)
        model_type = data.get("model_type")
        if model_type != cls.MODEL_TYPE:
            raise ModelConfigError(f"{directory}: holds a {model_type!r} model, whose processor is not a {cls.__name__}")
        config = config_from_dict(cls.CONFIG_CLASS, data, where=str(directory / "config.json"))
        return cls.from_config(config, tokenizer=load_saved_tokenizer(directory))

    def frames_to_pixel_values(self, frames) -> torch.Tensor:
        """uint8 ``(T, H, W, 3)`` or ``(B, T, H, W, 3)`` -> float ``(B, T, C, H, W)``."""
        pixels = frames_to_pixel_values(frames, self.pixel)
        if pixels.shape[1] > self.max_frames and self.beyond_max_frames == "error":
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
