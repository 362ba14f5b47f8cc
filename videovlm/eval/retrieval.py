"""Text-to-video and video-to-text recall@K from a (N_text, N_video) matching-score matrix.

Ties are broken against the ground truth: a candidate scoring *equal* to the correct one is
ranked ahead of it. This is deterministic and never rewards a model for constant scores (a
constant matrix gives the worst ranks, not R@1 = 100%).

Several captions may describe one video (`text_to_video[t]` is the video of text `t`):
text-to-video ranks the one correct video per text; video-to-text ranks, per video, its
best-scored correct caption among all the texts that are not its captions (the MSRVTT 1k-A /
CLIP4Clip convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RetrievalScore:
    """Recall@K (fractions) and median rank (1 = first) in each direction."""

    text_to_video: dict[int, float]
    video_to_text: dict[int, float]
    text_to_video_median_rank: float
    video_to_text_median_rank: float

    def to_dict(self) -> dict:
        return {
            "text_to_video": {f"R@{k}": v for k, v in self.text_to_video.items()},
            "video_to_text": {f"R@{k}": v for k, v in self.video_to_text.items()},
            "text_to_video_median_rank": self.text_to_video_median_rank,
            "video_to_text_median_rank": self.video_to_text_median_rank,
        }


def retrieval_ranks(scores: torch.Tensor, text_to_video: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based ranks of the correct item: (N_text,) for text->video and (N_video,) for video->text."""
    if scores.ndim != 2:
        raise ValueError(f"scores must be a (N_text, N_video) matrix, got shape {tuple(scores.shape)}")
    num_texts, num_videos = scores.shape
    targets = torch.as_tensor(list(text_to_video), dtype=torch.long)
    if targets.shape != (num_texts,):
        raise ValueError(f"text_to_video has {targets.numel()} entries for {num_texts} texts")
    if num_texts and (targets.min() < 0 or targets.max() >= num_videos):
        raise ValueError(f"text_to_video entries must be in [0, {num_videos}), got {targets.min()}..{targets.max()}")
    scores = scores.detach().to(torch.float64)
    if bool(scores.isnan().any()):
        # a NaN compares False with everything and would rank its item first
        bad = torch.nonzero(scores.isnan())[0].tolist()
        raise ValueError(f"scores contain NaN (first at text {bad[0]}, video {bad[1]})")
    is_caption = torch.zeros(num_texts, num_videos, dtype=torch.bool)  # (N_text, N_video)
    is_caption[torch.arange(num_texts), targets] = True
    if not bool(is_caption.any(dim=0).all()):
        missing = torch.nonzero(~is_caption.any(dim=0)).flatten().tolist()[:5]
        raise ValueError(f"videos {missing} have no caption in text_to_video")
    correct = scores[torch.arange(num_texts), targets]  # (N_text,)
    # ties go against the ground truth: every other video scoring >= the correct one is ahead
    t2v = (scores >= correct[:, None]).sum(dim=1)  # the correct video itself makes rank 1
    best_caption = scores.masked_fill(~is_caption, float("-inf")).max(dim=0).values  # (N_video,)
    v2t = 1 + ((scores >= best_caption[None, :]) & ~is_caption).sum(dim=0)
    return t2v, v2t


def retrieval_recall(
    scores: torch.Tensor, text_to_video: Sequence[int], *, ks: Sequence[int] = (1, 5, 10)
) -> RetrievalScore:
    """R@K in both directions for a (N_text, N_video) score matrix (higher = better match)."""
    t2v, v2t = retrieval_ranks(scores, text_to_video)

    def recall(ranks: torch.Tensor) -> dict[int, float]:
        return {k: float((ranks <= k).double().mean()) for k in ks}

    return RetrievalScore(
        text_to_video=recall(t2v),
        video_to_text=recall(v2t),
        text_to_video_median_rank=float(torch.quantile(t2v.double(), 0.5)),
        video_to_text_median_rank=float(torch.quantile(v2t.double(), 0.5)),
    )
