"""CLIPScore-style video-text score from a contrastive image-text core, averaged over frames.

CLIPScore (Hessel et al., 2021) of an image and a text is ``w * max(cos(E_image, E_text), 0)``
with ``w = 2.5``. A video has no single image embedding, so each real frame is scored against
the text and the scores are averaged over the frames the frame mask marks as real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

CLIPSCORE_WEIGHT = 2.5


@runtime_checkable
class ContrastiveCore(Protocol):
    """A vision tower and a text encoder that embed into one space."""

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalised pixels -> (B, D) embeddings."""

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """B texts -> (B, D) embeddings."""


class HFClipCore:
    """`ContrastiveCore` over a Hugging Face `CLIPModel` (or any model with the CLIP feature API)."""

    def __init__(self, model, tokenizer, *, max_length: int = 77) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _as_embeddings(self.model.get_image_features(pixel_values=pixel_values))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return _as_embeddings(
            self.model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        )


def _as_embeddings(output) -> torch.Tensor:
    # transformers 5 may return a model output holding the pooled, projected embeddings
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def video_clip_score(
    core: ContrastiveCore,
    *,
    pixel_values: torch.Tensor,
    texts: Sequence[str],
    frame_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B,) CLIPScore of each video with its text: 2.5 * max(cos, 0) averaged over real frames.

    pixel_values: (B, T, C, H, W) preprocessed frames; frame_mask: (B, T) bool, True = real.
    """
    if pixel_values.ndim != 5:
        raise ValueError(f"pixel_values must be (B, T, C, H, W), got shape {tuple(pixel_values.shape)}")
    batch, frames = pixel_values.shape[:2]
    if len(texts) != batch:
        raise ValueError(f"{len(texts)} texts for {batch} videos")
    if frame_mask is None:
        frame_mask = torch.ones(batch, frames, dtype=torch.bool)
    if frame_mask.shape != (batch, frames):
        raise ValueError(f"frame_mask must be (B, T) = {(batch, frames)}, got {tuple(frame_mask.shape)}")
    if not bool(frame_mask.any(dim=1).all()):
        raise ValueError("every video needs at least one real frame in frame_mask")
    images = core.encode_image(rearrange(pixel_values, "b t c h w -> (b t) c h w"))  # (B*T, D)
    frame_embeddings = rearrange(F.normalize(images, dim=-1), "(b t) d -> b t d", b=batch)  # (B, T, D)
    text_embeddings = repeat(F.normalize(core.encode_text(list(texts)), dim=-1), "b d -> b t d", t=frames)
    per_frame = CLIPSCORE_WEIGHT * (frame_embeddings * text_embeddings).sum(-1).clamp(min=0)  # (B, T)
    mask = frame_mask.to(per_frame.dtype)
    return (per_frame * mask).sum(dim=1) / mask.sum(dim=1)


def load_hf_clip_core(model_dir: str | Path):
    """(`HFClipCore`, image processor) from a folder holding a CLIP-style model saved with
    `save_pretrained`, its tokenizer and its image processor (or a hub id)."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(model_dir).eval()
    if not hasattr(model, "get_image_features") or not hasattr(model, "get_text_features"):
        raise ValueError(f"{model_dir}: {type(model).__name__} is not a contrastive image-text model (no get_image_features)")
    return HFClipCore(model, AutoTokenizer.from_pretrained(model_dir)), AutoImageProcessor.from_pretrained(model_dir)


def caption_clip_scores(
    core: ContrastiveCore,
    *,
    image_processor,
    videos: Mapping[str, Path],
    captions: Mapping[str, str],
    sampler: str = "uniform:8",
) -> dict[str, float]:
    """id -> CLIPScore of `captions[id]` with the frames `sampler` picks from `videos[id]`.

    Frames are decoded with `videovlm.video.open_video` (eval-time sampling: no jitter) and
    preprocessed by the core's own image processor (resize, crop, normalise).
    """
    from videovlm.video import open_video, parse_sampler

    pick_frames = parse_sampler(sampler)
    scores: dict[str, float] = {}
    for key in sorted(captions):
        if key not in videos:
            raise ValueError(f"no video file for id {key!r}")
        with open_video(videos[key]) as reader:
            sample = pick_frames(reader.metadata)
            frames = reader.get_frames(sample.indices).frames  # (T, H, W, 3) uint8
        pixels = image_processor(images=list(frames.numpy()), return_tensors="pt")["pixel_values"]  # (T, C, H, W)
        score = video_clip_score(
            core,
            pixel_values=pixels[None],
            texts=[captions[key]],
            frame_mask=torch.tensor([sample.valid], dtype=torch.bool),
        )
        scores[key] = float(score[0])
    return scores
