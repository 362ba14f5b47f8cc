"""The VideoBERT recipe's library side: a model builder that fits the hierarchical visual
vocabulary on clip features of the frozen tower.

Tokenisation: each sampled clip's feature (the frozen tower's pooled output, averaged over
the clip's frames) is a point; ``VisualVocabulary.fit`` builds the tree and its k^levels leaves
become the model's codebook (``VideoBertModel.visual_words``). The model then turns every
frame of a video into the id of its nearest leaf, so fitting uses the same unit as the model
sees: the tiny recipe samples clips of one frame (its videos are 2 s long; the paper's 1.5 s
clips would leave one or two words per video).

The zero-shot evaluations (alignment, template filling, forecasting, the vocabulary's
purity) are in ``videovlm.recipes.videobert_eval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from videovlm.models.videobert import VideoBertModel
from videovlm.recipes.builders import tiny_videobert_model
from videovlm.recipes.visual_vocabulary import VisualVocabulary, VocabularySettings


def clip_features(model: VideoBertModel, videos: Sequence[Path], *, sampler: str, batch_size: int = 16) -> torch.Tensor:
    """(P, D) features of every sampled clip of ``videos`` (frozen tower, clip = mean of its frames)."""
    from videovlm.video import open_video
    from videovlm.video.samplers import parse_sampler

    sample_frames = parse_sampler(sampler)
    features = []
    model.eval()
    for start in range(0, len(videos), batch_size):
        frames, groups = [], []
        for path in videos[start : start + batch_size]:
            with open_video(path) as reader:
                sample = sample_frames(reader.metadata, None)
                frames.append(reader.get_frames(list(sample.indices)).frames)  # (T, H, W, 3)
            groups.append(_clip_slices(sample))
        with torch.no_grad():
            per_frame, _ = model.frame_vectors(model.processor.frames_to_pixel_values(torch.stack(frames)))  # (B, T, D)
        for row, slices in zip(per_frame, groups):
            features.extend(row[s].mean(0) for s in slices)
    return torch.stack(features)


def _clip_slices(sample) -> list[slice]:
    if sample.clips is None:
        return [slice(i, i + 1) for i in range(len(sample.indices))]
    slices, start = [], 0
    for clip in sample.clips:
        slices.append(slice(start, start + len(clip)))
        start += len(clip)
    return slices


def fit_visual_vocabulary(model: VideoBertModel, videos: Sequence[Path], *, sampler: str, settings: VocabularySettings) -> VisualVocabulary:
    """Fit the tree on the clips of ``videos`` and store its leaves as the model's codebook."""
    if model.config.num_visual_words != settings.size:
        raise ValueError(
            f"num_visual_words: the model has {model.config.num_visual_words} visual words but levels x k gives "
            f"{settings.k}^{settings.levels} = {settings.size}"
        )
    vocabulary = VisualVocabulary.fit(clip_features(model, videos, sampler=sampler), settings)
    model.visual_words.copy_(vocabulary.leaves.to(model.visual_words.dtype))
    return vocabulary


def tiny_videobert_with_vocabulary(
    *,
    tokenizer: Path,
    captions: Path,
    vision: Path | None = None,
    bert: Path | None = None,
    levels: int = 2,
    k: int = 8,
    iterations: int = 20,
    seed: int = 0,
    sampler: str = "uniform:8",
    max_videos: int | None = None,
    max_frames: int = 16,
    mlm_probability: float = 0.15,
) -> VideoBertModel:
    """Tiny VideoBERT whose k^levels visual words are fitted on the videos of ``captions``
    (a WebVid CSV; the first ``max_videos`` videos, all when None). ``mlm_probability``: the
    share of caption pieces and visual words masked per training row."""
    settings = VocabularySettings(levels=levels, k=k, iterations=iterations, seed=seed)
    model = tiny_videobert_model(
        tokenizer=tokenizer, vision=vision, bert=bert, num_visual_words=settings.size, max_frames=max_frames, mlm_probability=mlm_probability
    )
    return _fitted(model, captions=captions, sampler=sampler, settings=settings, max_videos=max_videos)


def _fitted(model: VideoBertModel, *, captions: Path, sampler: str, settings: VocabularySettings, max_videos: int | None) -> VideoBertModel:
    from videovlm.data.formats import read_webvid_csv

    videos = [record.video for record in read_webvid_csv(captions)][:max_videos]
    fit_visual_vocabulary(model, videos, sampler=sampler, settings=settings)
    return model


def videobert_base_with_vocabulary(
    *,
    captions: Path,
    bert: str = "bert-base-uncased",
    vision: str = "openai/clip-vit-base-patch32",
    levels: int = 4,
    k: int = 12,
    iterations: int = 20,
    seed: int = 0,
    sampler: str = "clips:1,num=32",
    max_videos: int | None = None,
) -> VideoBertModel:
    """VideoBERT with public checkpoints and a k^levels visual vocabulary (the paper: 12^4)
    fitted on the videos of ``captions``; downloads the checkpoints when built."""
    from videovlm.recipes.builders import videobert_base_model

    settings = VocabularySettings(levels=levels, k=k, iterations=iterations, seed=seed)
    model = videobert_base_model(bert=bert, vision=vision, num_visual_words=settings.size)
    return _fitted(model, captions=captions, sampler=sampler, settings=settings, max_videos=max_videos)
