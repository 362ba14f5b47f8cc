"""Text-video retrieval scores of a saved model (``videovlm eval --task retrieval --model``).

Every caption of a captions CSV is scored against every distinct video, with what each family
has for matching a text to a video:

- VideoBERT: the alignment head's probability that the text describes the video.
- VideoOFA: the video-text matching task, ``log p(yes) - log p(no)`` for the first answer token.
- Video-LLaMA: the mean log-likelihood of the caption given the video and the captioning
  prompt (generative retrieval).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from videovlm.qa.api import VideoQA
from videovlm.qa.frames import QAInputError, SampledFrames


def retrieval_scores(
    *, model_dir: str | Path, data: str | Path, device: str = "cpu", sampler: str | None = None, batch_size: int = 16
) -> tuple[torch.Tensor, list[int]]:
    """(scores ``(N_text, N_video)``, ``text_to_video``: the true video column of each text).

    Texts are the captions of ``data`` in file order; videos are its distinct videos in order
    of first appearance. A video that cannot be decoded raises ``VideoDecodeError`` (a
    retrieval matrix with a hole would rank wrongly)."""
    from videovlm.data.formats import read_webvid_csv

    records = read_webvid_csv(data, check_files=True)
    vqa = VideoQA.from_pretrained(model_dir, device=device, sampler=sampler)
    columns: dict[str, int] = {}
    videos: list[Path] = []
    for record in records:
        if record.video_id not in columns:
            columns[record.video_id] = len(videos)
            videos.append(record.video)
    texts = [r.caption for r in records]
    scores = torch.empty(len(texts), len(videos))
    for column, video in enumerate(videos):
        frames = vqa.frames(video)
        scores[:, column] = score_texts(vqa, frames, texts, batch_size=batch_size)
    return scores, [columns[r.video_id] for r in records]


def score_texts(vqa: VideoQA, frames: SampledFrames, texts: Sequence[str], *, batch_size: int = 16) -> torch.Tensor:
    """Scores ``(N,)`` of ``texts`` against one video's frames (higher = better match)."""
    scorers = {"videobert": _bert_alignment, "videoofa": _ofa_matching, "videollama": _llama_likelihood}
    scorer = scorers[vqa.family]
    pixels = vqa.answerer.processor.frames_to_pixel_values(frames.frames).to(vqa.device)  # (1, T, C, H, W)
    frame_mask = frames.valid.unsqueeze(0).to(vqa.device)  # (1, T)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            rows = len(chunk)
            batch = scorer(vqa, chunk, pixels.expand(rows, -1, -1, -1, -1), frame_mask.expand(rows, -1))
            out.append(batch.float().cpu())
    return torch.cat(out)


def _collate_text(vqa: VideoQA, items: list[dict]) -> dict[str, torch.Tensor]:
    batch = vqa.answerer.processor.collate(items)
    return {key: value.to(vqa.device) for key, value in batch.items()}


def _bert_alignment(vqa: VideoQA, texts, pixel_values, frame_mask) -> torch.Tensor:
    processor = vqa.answerer.processor
    batch = _collate_text(vqa, [processor.text(t, where=f"caption {t!r}") for t in texts])
    return vqa.model.alignment_score(
        pixel_values=pixel_values, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], frame_mask=frame_mask
    )  # (B,)


def _first_token(tokenizer, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise QAInputError(f"template: answer word {word!r} has no tokens")
    return ids[0]


def _ofa_matching(vqa: VideoQA, texts, pixel_values, frame_mask) -> torch.Tensor:
    model, processor = vqa.model, vqa.answerer.processor
    items = [processor.matching(t, matches=True) for t in texts]
    batch = _collate_text(vqa, items)
    start = model.seq2seq.config.decoder_start_token_id
    decoder_input_ids = torch.full((len(texts), 1), start, dtype=torch.long, device=vqa.device)
    logits = model(
        pixel_values=pixel_values,
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        frame_mask=frame_mask,
        decoder_input_ids=decoder_input_ids,
    ).logits[:, 0].float().log_softmax(-1)  # (B, V): the first answer token
    yes = _first_token(model.tokenizer, processor.template.yes)
    no = _first_token(model.tokenizer, processor.template.no)
    return logits[:, yes] - logits[:, no]


def _llama_likelihood(vqa: VideoQA, texts, pixel_values, frame_mask) -> torch.Tensor:
    from videovlm.data.formats import VideoCaption
    from videovlm.models import IGNORE_INDEX, splice_visual_tokens

    model, processor = vqa.model, vqa.answerer.processor
    items = [processor(VideoCaption(video_id=f"text{i}", video=Path(""), caption=t, duration=None)) for i, t in enumerate(texts)]
    batch = _collate_text(vqa, items)
    logits = model(pixel_values=pixel_values, frame_mask=frame_mask, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # The labels as the LLM saw them: the <video> placeholder became M visual positions.
    rows, length = batch["input_ids"].shape
    visual = logits.shape[1] - length + 1
    _, _, labels = splice_visual_tokens(
        text_embeds=torch.zeros(rows, length, 1, device=vqa.device),
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        labels=batch["labels"],
        visual_tokens=torch.zeros(rows, visual, 1, device=vqa.device),
        visual_mask=torch.ones(rows, visual, dtype=torch.bool, device=vqa.device),
        placeholder_ids=model.placeholder_ids,
    )
    targets = labels[:, 1:]  # (B, L' - 1): token t is predicted at position t - 1
    log_probs = logits[:, :-1].float().log_softmax(-1)
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    valid = targets != IGNORE_INDEX
    return (picked * valid).sum(1) / valid.sum(1).clamp(min=1)
