"""VideoBERT processor: text side ``[CLS] text [SEP]``; the model appends ``visual words [SEP]``.

Captions are masked-LM targets (the model masks them at random while training). QA uses
template filling: ``{question} answer: [MASK]`` where the answer's word pieces are the
targets, and at test time ``score_candidates`` fills the ``[MASK]`` with each candidate word.
"""

from __future__ import annotations

from typing import Any

import torch

from videovlm.models.base import IGNORE_INDEX
from videovlm.models.pixels import PixelConfig
from videovlm.models.videobert.configuration import VideoBertConfig, BertTemplateConfig
from videovlm.models.processing import FamilyProcessor, ProcessorError, strip_placeholders

MASK = "[MASK]"


class VideoBertProcessor(FamilyProcessor):
    MODEL_TYPE = "videobert"
    CONFIG_CLASS = VideoBertConfig

    def __init__(self, *, tokenizer, pixel: PixelConfig, max_frames: int, template: BertTemplateConfig):
        super().__init__(tokenizer=tokenizer, pixel=pixel, max_frames=max_frames, max_length=template.max_length)
        self.template = template
        if MASK not in template.qa:
            raise ProcessorError(f"template.qa: {template.qa!r} has no {MASK} where the answer goes")

    def text(self, text: str, frames=None, *, where: str = "text") -> dict[str, torch.Tensor]:
        """Masked-LM item: every text word piece is a target the model may mask."""
        tok = self.tokenizer
        pieces = self._ids(strip_placeholders(text))
        ids = [tok.cls_token_id, *pieces, tok.sep_token_id]
        labels = [IGNORE_INDEX, *pieces, IGNORE_INDEX]
        return self._item(ids, labels, frames, where=where)

    def fill(self, template: str, answer: str | None, frames=None, *, where: str = "template") -> dict[str, torch.Tensor]:
        """Template item: ``[MASK]`` becomes one ``[MASK]`` per answer word piece (one when
        ``answer`` is None); labels are the answer pieces at those positions, -100 elsewhere."""
        if template.count(MASK) != 1:
            raise ProcessorError(f"{where}: template must contain exactly one {MASK}, got {template!r}")
        tok = self.tokenizer
        before, after = template.split(MASK)
        answer_ids = self._ids(answer) if answer is not None else [tok.mask_token_id]
        if not answer_ids:
            raise ProcessorError(f"{where}: answer {answer!r} has no tokens")
        head = [tok.cls_token_id, *self._ids(strip_placeholders(before))]
        tail = [*self._ids(after), tok.sep_token_id]
        ids = head + [tok.mask_token_id] * len(answer_ids) + tail
        labels = [IGNORE_INDEX] * len(head) + (answer_ids if answer is not None else [IGNORE_INDEX]) + [IGNORE_INDEX] * len(tail)
        return self._item(ids, labels, frames, where=where)

    def __call__(self, record: Any, frames=None) -> dict[str, torch.Tensor]:
        """A training item from a VideoQA (template filling), VideoCaption or ImageCaption
        (masked LM) record, or a masked-LM item from a plain string."""
        from videovlm.data.formats import ImageCaption, VideoCaption, VideoQA

        if isinstance(record, str):
            return self.text(record, frames)
        if isinstance(record, VideoQA):
            template = self.template.qa.format(question=record.question)
            return self.fill(template, record.answer, frames, where=f"record {record.video_id}")
        if isinstance(record, VideoCaption):
            return self.text(record.caption, frames, where=f"record {record.video_id}")
        if isinstance(record, ImageCaption):
            return self.text(record.caption, frames, where=f"record {record.id}")
        raise ProcessorError(
            f"record: VideoBERT takes VideoQA, VideoCaption or ImageCaption records, not {type(record).__name__}"
        )
