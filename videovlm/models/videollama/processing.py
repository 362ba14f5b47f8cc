"""Video-LLaMA's processor: records and questions in its conversation template, frames to pixels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from videovlm.models.base import IGNORE_INDEX
from videovlm.models.configs import resolve_temporal_encoder_class
from videovlm.models.pixels import PixelConfig
from videovlm.models.processing import FamilyProcessor, ProcessorError, Turn, record_turns, strip_placeholders
from videovlm.models.tokenizer import IMAGE_TOKEN, VIDEO_TOKEN
from videovlm.models.videollama.configuration import ChatTemplateConfig, VideoLlamaConfig


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

    MODEL_TYPE = "videollama"
    CONFIG_CLASS = VideoLlamaConfig

    def __init__(
        self,
        *,
        tokenizer,
        pixel: PixelConfig,
        max_frames: int,
        template: ChatTemplateConfig,
        instruction: bool = False,
        max_instruction_tokens: int = 64,
        beyond_max_frames: str = "error",
    ):
        super().__init__(tokenizer=tokenizer, pixel=pixel, max_frames=max_frames, max_length=template.max_length)
        self.beyond_max_frames = beyond_max_frames
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
    def options_from_config(cls, config: VideoLlamaConfig) -> dict[str, Any]:
        """The processor also makes the instruction inputs when the temporal encoder reads them."""
        options = {"beyond_max_frames": config.beyond_max_frames}
        encoder = resolve_temporal_encoder_class(config.temporal["_component_"], where="temporal._component_")
        if not getattr(encoder, "reads_instruction", False):
            return options
        longest = config.temporal.get("max_instruction_tokens", encoder.config_class.max_instruction_tokens)
        return {**options, "instruction": True, "max_instruction_tokens": int(longest)}

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
