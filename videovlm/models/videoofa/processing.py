"""VideoOFA processor: every task is instruction text (encoder) -> target text (decoder).

Encoder ids: ``<s> instruction </s>`` (the visual tokens are put in front by the model);
labels: ``target </s>``. Task instructions (OFA style, one template per task):

- QA: ``{question}`` -> answer
- captioning: ``what does the video describe?`` -> caption (``image`` for images)
- video-text matching: ``does the video describe " {caption} "?`` -> ``yes`` / ``no``
- frame order: ``are the frames of the video in order?`` -> ``yes`` / ``no``
"""

from __future__ import annotations

from typing import Any

import torch

from videovlm.models.pixels import PixelConfig
from videovlm.models.videoofa.configuration import VideoOFAConfig, OFATemplateConfig
from videovlm.models.processing import FamilyProcessor, ProcessorError, record_turns, strip_placeholders


class VideoOFAProcessor(FamilyProcessor):
    MODEL_TYPE = "videoofa"
    CONFIG_CLASS = VideoOFAConfig

    def __init__(self, *, tokenizer, pixel: PixelConfig, max_frames: int, template: OFATemplateConfig, beyond_max_frames: str = "error"):
        super().__init__(tokenizer=tokenizer, pixel=pixel, max_frames=max_frames, max_length=template.max_length)
        self.template = template
        self.beyond_max_frames = beyond_max_frames

    @classmethod
    def options_from_config(cls, config: VideoOFAConfig) -> dict[str, Any]:
        return {"beyond_max_frames": config.beyond_max_frames}

    def encode(self, instruction: str, target: str | None, frames=None, *, where: str) -> dict[str, torch.Tensor]:
        """An item from an instruction and its target (None for a generation prompt)."""
        tok = self.tokenizer
        # T5-family tokenizers have no BOS token: start with the instruction then.
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        ids = [*bos, *self._ids(strip_placeholders(instruction)), tok.eos_token_id]
        item = self._item(ids, None, frames, where=where)
        if target is not None:
            labels = [*self._ids(target), tok.eos_token_id]
            if len(labels) > self.template.max_target_length:
                raise ProcessorError(
                    f"{where}: target has {len(labels)} tokens, more than max_target_length={self.template.max_target_length}"
                )
            item["labels"] = torch.tensor(labels, dtype=torch.long)
        return item

    def __call__(self, record: Any, frames=None) -> dict[str, torch.Tensor]:
        """A training item from a VideoQA / VideoCaption / ImageCaption / Conversation record
        (a conversation becomes: all turns before the last answer -> the last answer), or a
        generation prompt from a plain instruction string."""
        from videovlm.data.formats import VideoQA

        if isinstance(record, str):
            return self.prompt(record, frames)

        record_id, _, turns = record_turns(
            record, video_prompt=self.template.video_caption, image_prompt=self.template.image_caption
        )
        where = f"record {record_id}"
        if isinstance(record, VideoQA):
            return self.encode(self.template.qa.format(question=record.question), record.answer, frames, where=where)
        answers = [i for i, t in enumerate(turns) if t.role == "gpt"]
        if not answers:
            raise ProcessorError(f"{where}: no gpt turn to use as the target")
        instruction = " ".join(t.text for t in turns[: answers[-1]])
        return self.encode(instruction, turns[answers[-1]].text, frames, where=where)

    def matching(self, caption: str, *, matches: bool, frames=None) -> dict[str, torch.Tensor]:
        """Video-text matching item: does ``caption`` describe these frames? (yes / no)."""
        answer = self.template.yes if matches else self.template.no
        return self.encode(self.template.matching.format(caption=caption), answer, frames, where="matching")

    def frame_order(self, frames, *, reverse: bool) -> dict[str, torch.Tensor]:
        """Frame-order item: are the frames in playing order? With ``reverse`` they are
        played backwards (answer ``no``), the negative that only a temporal model can spot.
        ``frames=None`` gives the text side only (the caller orders cached features itself)."""
        if frames is not None and reverse:
            frames = torch.as_tensor(frames).flip(0)
        answer = self.template.no if reverse else self.template.yes
        return self.encode(self.template.frame_order, answer, frames, where="frame_order")

    def prompt(self, instruction: str, frames=None) -> dict[str, torch.Tensor]:
        """A generation prompt (the encoder side only)."""
        return self.encode(instruction, None, frames, where="prompt")
