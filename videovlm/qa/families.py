"""How each model family answers a question about sampled frames.

- Video-LLaMA: the recipe's conversation template (``VideoLlamaProcessor.encode_turns``)
  ending with the assistant marker; the LLM generates the answer (multi-turn: earlier turns
  are part of the prompt, the ``<video>`` placeholder sits in the first human turn).
- VideoOFA: the QA instruction of its template; the decoder generates the answer.
- VideoBERT: the fill-in template ``{question} answer: [MASK]``; the answer is the candidate
  with the highest score (``score_candidates``) or, without candidates, the text word the MLM
  head ranks first at ``[MASK]`` (template filling).

Every answerer turns (question, frames, history) into a ``Prompt`` (model inputs of one
item plus its text) and answers a collated batch of prompts at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from videovlm.qa.frames import QAInputError, SampledFrames
from videovlm.qa.generation import GenerationSettings, GenerationSettingsError


@dataclass(frozen=True)
class ChatTurn:
    """One finished exchange of a multi-turn chat."""

    question: str
    answer: str


@dataclass
class Prompt:
    """One question ready for the model: ``item`` (1-D ``input_ids``/``attention_mask``,
    ``pixel_values (T, C, H, W)``), the frames' validity ``(T,)`` and the question text."""

    item: dict[str, torch.Tensor]
    valid: torch.Tensor
    text: str


class Answerer(ABC):
    """Family-independent part: collation (with the sampler's padded frames masked out)."""

    padding_side = "right"
    supports_chat = False
    supports_captions = False

    def __init__(self, model):
        self.model = model
        self.processor = model.processor

    def collate(self, prompts: Sequence[Prompt], device: torch.device) -> dict[str, torch.Tensor]:
        batch = self.processor.collate([p.item for p in prompts], padding_side=self.padding_side)
        for row, prompt in enumerate(prompts):
            # (B, T) frame mask: the collate marks real frames; the sampler's padding is not real.
            batch["frame_mask"][row, : prompt.valid.shape[0]] &= prompt.valid
        return {key: value.to(device) for key, value in batch.items()}

    def _pixels(self, frames: SampledFrames) -> torch.Tensor:
        try:
            return self.processor.frames_to_pixel_values(frames.frames)[0]  # (T, C, H, W)
        except ValueError as e:
            raise QAInputError(f"{frames.source}: {e}") from e

    def check_settings(self, settings: GenerationSettings, *, streaming: bool) -> None:
        if streaming and settings.num_beams > 1:
            raise GenerationSettingsError("streaming shows one sequence as it grows; it cannot be combined with beam search (num_beams > 1)")

    @abstractmethod
    def prompt(self, question: str, frames: SampledFrames, history: Sequence[ChatTurn] = ()) -> Prompt:
        """The model inputs of one question (``history``: earlier turns of a chat)."""

    def caption_prompt(self, frames: SampledFrames) -> Prompt:
        raise QAInputError(f"{type(self.model).__name__} does not generate captions")

    @abstractmethod
    def answer(self, prompts: Sequence[Prompt], batch: dict, settings: GenerationSettings, *, streamer=None, candidates=None) -> list[str]:
        """Answers of a collated batch of ``prompts``, in order."""


def _text_item(input_ids: list[int], pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.tensor(input_ids, dtype=torch.long),
        "attention_mask": torch.ones(len(input_ids), dtype=torch.long),
        "pixel_values": pixels,
    }


class LlamaAnswerer(Answerer):
    """Video-LLaMA: chat template + causal generation (left padding for batches)."""

    padding_side = "left"
    supports_chat = True
    supports_captions = True

    def prompt(self, question: str, frames: SampledFrames, history: Sequence[ChatTurn] = ()) -> Prompt:
        from videovlm.models.processing import Turn
        from videovlm.models.tokenizer import IMAGE_TOKEN, VIDEO_TOKEN

        turns = []
        for past in history:
            turns += [Turn("human", past.question), Turn("gpt", past.answer)]
        turns.append(Turn("human", question))
        if not any(token in turns[0].text for token in (VIDEO_TOKEN, IMAGE_TOKEN)):
            # The visual tokens go once, at the start of the first human turn (Video-LLaMA).
            turns[0] = Turn("human", f"{VIDEO_TOKEN} {turns[0].text}")
        ids, _ = self.processor.encode_turns(turns, where="prompt", generation=True)
        limit = self.processor.max_length
        if len(ids) > limit:
            raise QAInputError(f"question: the prompt has {len(ids)} tokens (with the chat history), more than max_length={limit}")
        item = self.processor.with_instruction(_text_item(ids, self._pixels(frames)), turns, where="prompt")
        return Prompt(item, frames.valid, question)

    def caption_prompt(self, frames: SampledFrames) -> Prompt:
        return self.prompt(self.processor.template.video_prompt, frames)

    def answer(self, prompts, batch, settings, *, streamer=None, candidates=None) -> list[str]:
        if candidates:
            raise QAInputError("candidates: only VideoBERT answers by scoring candidates; Video-LLaMA generates its answer")
        with settings.rng():
            new_ids = self.model.generate(**batch, streamer=streamer, **settings.generate_kwargs())  # (B, L_new)
        marker = self.processor.template.human_marker
        # A checkpoint whose tokenizer does not treat the marker as special may run on into the
        # next turn; the answer ends where the next human turn would start.
        return [text.split(marker)[0].strip() for text in self.processor.decode(new_ids)]


class OFAAnswerer(Answerer):
    """VideoOFA: QA instruction -> seq2seq generation."""

    supports_captions = True

    def prompt(self, question: str, frames: SampledFrames, history: Sequence[ChatTurn] = ()) -> Prompt:
        if history:
            raise QAInputError("chat: VideoOFA answers single questions; multi-turn chat needs a Video-LLaMA model")
        instruction = self.processor.template.qa.format(question=question)
        return self._encode(instruction, frames, question)

    def caption_prompt(self, frames: SampledFrames) -> Prompt:
        return self._encode(self.processor.template.video_caption, frames, self.processor.template.video_caption)

    def _encode(self, instruction: str, frames: SampledFrames, text: str) -> Prompt:
        try:
            item = self.processor.prompt(instruction)
        except ValueError as e:
            raise QAInputError(f"question: {e}") from e
        item["pixel_values"] = self._pixels(frames)
        return Prompt(item, frames.valid, text)

    def answer(self, prompts, batch, settings, *, streamer=None, candidates=None) -> list[str]:
        if candidates:
            raise QAInputError("candidates: only VideoBERT answers by scoring candidates; VideoOFA generates its answer")
        with settings.rng():
            out = self.model.generate(**batch, streamer=streamer, **settings.generate_kwargs())  # (B, L_out)
        return self.processor.decode(out)


class BertAnswerer(Answerer):
    """VideoBERT: template filling, or scoring of candidate answers."""

    def prompt(self, question: str, frames: SampledFrames, history: Sequence[ChatTurn] = ()) -> Prompt:
        if history:
            raise QAInputError("chat: VideoBERT answers single questions; multi-turn chat needs a Video-LLaMA model")
        template = self.processor.template.qa.format(question=question)
        try:
            item = self.processor.fill(template, None, where="question")
        except ValueError as e:
            raise QAInputError(f"question: {e}") from e
        item.pop("labels", None)
        item["pixel_values"] = self._pixels(frames)
        return Prompt(item, frames.valid, template)

    def check_settings(self, settings: GenerationSettings, *, streaming: bool) -> None:
        if settings.do_sample or settings.num_beams > 1:
            raise GenerationSettingsError("VideoBERT answers by template filling / candidate scoring: sampling and beam search do not apply")

    def answer(self, prompts, batch, settings, *, streamer=None, candidates=None) -> list[str]:
        if candidates:
            scores = self.model.score_candidates(
                pixel_values=batch["pixel_values"],
                templates=[p.text for p in prompts],
                candidates=list(candidates),
                frame_mask=batch["frame_mask"],
            )  # (B, C)
            answers = [candidates[i] for i in scores.argmax(1).tolist()]
        else:
            answers = self._fill(batch)
        if streamer is not None:
            for text in answers:
                streamer.on_finalized_text(text, stream_end=True)
        return answers

    @torch.no_grad()
    def _fill(self, batch: dict[str, torch.Tensor]) -> list[str]:
        tokenizer = self.model.tokenizer
        logits = self.model(**batch).logits  # (B, L + T + 1, V)
        text_len = batch["input_ids"].shape[1]
        is_mask = batch["input_ids"] == tokenizer.mask_token_id  # (B, L), one [MASK] per row
        mask_logits = logits[:, :text_len][is_mask].float()  # (B, V)
        # Only words can fill the blank: no visual words (ids >= offset), no special tokens.
        allowed = torch.zeros(mask_logits.shape[-1], dtype=torch.bool, device=mask_logits.device)
        allowed[: self.model.visual_word_offset] = True
        allowed[torch.tensor(tokenizer.all_special_ids, device=allowed.device)] = False
        best = mask_logits.masked_fill(~allowed, float("-inf")).argmax(-1)  # (B,)
        return [tokenizer.decode([i]).strip() for i in best.tolist()]


def answerer_for(model) -> Answerer:
    """The answerer of a loaded family model (by ``model_type``)."""
    answerers = {"videollama": LlamaAnswerer, "videoofa": OFAAnswerer, "videobert": BertAnswerer}
    kind = getattr(model, "MODEL_TYPE", None)
    if kind not in answerers:
        raise QAInputError(f"model: {type(model).__name__} is not a videovlm family model ({', '.join(answerers)})")
    return answerers[kind](model)
