"""Multiple-choice video QA with a trained model: ``generate`` or ``likelihood`` scoring.

- ``generate``: the model answers the prompt of ``videovlm.data.mcq.mcq_prompt`` (question +
  ``(A) option`` lines) and ``parse_choice`` maps the answer to an option (or to none: wrong).
- ``likelihood``: the option whose text the model finds most probable as the answer to the
  question itself (the "cloze" form, the standard way to evaluate small models; lmms-eval's
  ``loglikelihood``): the sum of the answer tokens' log-probabilities, or their mean with
  ``length_normalize``. The options are not listed in this prompt: each is scored on its own. Video-LLaMA
  and VideoOFA score through their decoders (the training item of each option, its loss);
  VideoBERT through its candidate scoring (``score_candidates``, a mean per word piece).

Each item's frames come from the model's sampler restricted to the item's ``start``/``end``
window. A video that fails to decode gives an ``error`` row, and the run goes on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from videovlm.data.mcq import LETTERS, MCQItem, mcq_prompt, parse_choice, read_mcq_json
from videovlm.qa.api import VideoQA
from videovlm.qa.frames import SampledFrames, load_frames
from videovlm.video.types import VideoDecodeError

SCORINGS = ("generate", "likelihood")


def item_frames(vqa: VideoQA, item: MCQItem) -> SampledFrames:
    """The item's frames: the model's sampler inside the item's window, if it has one."""
    sampler = vqa.sampler
    if item.start is not None or item.end is not None:
        sampler = dataclasses.replace(sampler, start=item.start, end=item.end)
    return load_frames(item.video, sampler=sampler, backend=vqa.backend, decode_size=vqa.decode_size)


@torch.no_grad()
def option_log_likelihoods(vqa: VideoQA, item: MCQItem, frames: SampledFrames, *, length_normalize: bool = False) -> list[float]:
    """One score per option: the log-probability of its tokens as the answer (summed, or
    averaged with ``length_normalize``)."""
    from videovlm.data.formats import VideoQA as QARecord

    model = vqa.model
    if model.MODEL_TYPE == "videobert":
        template = model.processor.template.qa.format(question=item.question)
        pixels = model.processor.frames_to_pixel_values(frames.frames).to(vqa.device)
        scores = model.score_candidates(templates=[template], candidates=list(item.options), pixel_values=pixels, frame_mask=frames.valid[None].to(vqa.device))
        return scores[0].tolist()
    scores = []
    for option in item.options:
        record = QARecord(video_id=item.video_id, video=item.video, question=item.question, answer=option, type=item.type)
        encoded = model.processor(record, frames=frames.frames)
        encoded["frame_mask"] = frames.valid
        batch = {k: v[None].to(vqa.device) for k, v in encoded.items()}
        loss = model(**batch).loss.float()  # mean over the answer's tokens
        targets = int((batch["labels"] != -100).sum())
        scores.append(-loss.item() if length_normalize else -loss.item() * targets)
    return scores


def mcq_rows(vqa: VideoQA, items: Sequence[MCQItem], *, scoring: str = "likelihood", length_normalize: bool = False) -> Iterator[dict]:
    """One predictions-file row per item: ``prediction`` is the chosen option's letter
    (``none`` when a generation names no option), ``answer`` the right letter."""
    if scoring not in SCORINGS:
        raise ValueError(f"scoring: expected one of {', '.join(SCORINGS)}, got {scoring!r}")
    for item in items:
        row = {"video_id": item.video_id, "question": item.question, "answer": item.answer_letter, "type": item.type}
        try:
            frames = item_frames(vqa, item)
            if scoring == "generate":
                generation = vqa.answer_prompts([vqa.prompt(mcq_prompt(item), frames)])[0]
                choice = parse_choice(generation, item.options)
                row["generation"] = generation
            else:
                scores = option_log_likelihoods(vqa, item, frames, length_normalize=length_normalize)
                choice = max(range(len(scores)), key=scores.__getitem__)
                row["scores"] = [round(s, 5) for s in scores]
        except (VideoDecodeError, OSError, ValueError) as e:
            yield {**row, "error": f"{type(e).__name__}: {e}"}
            continue
        yield {**row, "prediction": LETTERS[choice] if choice is not None else "none"}


def predict_mcq_records(
    *,
    model_dir: str | Path,
    data: str | Path,
    scoring: str = "likelihood",
    length_normalize: bool = False,
    device: str = "cpu",
    sampler: str | None = None,
) -> list[dict]:
    """Predictions-file dicts of a saved model on an MCQ file (``videovlm eval --task mcq``)."""
    items = read_mcq_json(data, check_files=False)
    vqa = VideoQA.from_pretrained(model_dir, sampler=sampler, device=device)
    return list(mcq_rows(vqa, items, scoring=scoring, length_normalize=length_normalize))
