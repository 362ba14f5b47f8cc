"""Training from the frozen-feature cache (``features: cached``): a dataset wrapper that
serves cached frame features, the Video-LLaMA and VideoBERT variants that take them, and the
one-call hook ``use_cached_features`` the training engine calls. The cache itself:
``feature_cache``."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from videovlm.models import VideoBertModel, VideoLlamaModel
from videovlm.models.base import check_frame_features
from videovlm.train.config import FeatureCacheConfig, cache_dir_of
from videovlm.train.feature_cache import (
    FeatureCache,
    FeatureCacheError,
    FrozenFront,
    Namespace,
    cached_parts,
    compute_frame_features,
    metadata_from_json,
    model_namespace,
    video_identity,
    video_key,
)
from videovlm.video.types import VideoDecodeError, VideoMetadata

OnMiss = Literal["compute", "error"]


class CachedFeatureDataset(torch.utils.data.Dataset):
    """Wraps a ``videovlm.train.data.MediaTextDataset``: same records, sampler, seed and
    per-item jitter, but items carry ``frame_features (T, N, D)`` from the cache instead of
    ``pixel_values`` (no decoding when every frame is cached). The text side comes from the
    family processor (``processor(record)``).

    A frame missing from the namespace (new video, edited file, other frozen weights) is
    recomputed from the decoded frames with ``front`` (``on_miss="compute"``; kept in memory
    for the run) or stops training with the reason (``on_miss="error"``).
    """

    def __init__(self, base, *, cache: FeatureCache, namespace: Namespace, processor, front: FrozenFront | None, on_miss: OnMiss = "compute"):
        for attribute in ("records", "media_path", "sampler", "seed", "train"):
            if not hasattr(base, attribute):
                raise FeatureCacheError(f"features: cached wraps media datasets (videovlm.train.data.MediaTextDataset); {type(base).__name__} has no {attribute!r}")
        if on_miss not in ("compute", "error"):
            raise FeatureCacheError(f"on_miss: expected 'compute' or 'error', got {on_miss!r}")
        if on_miss == "compute" and front is None:
            raise FeatureCacheError("on_miss='compute' needs the frozen front to recompute missing frames")
        self.base, self.cache, self.namespace = base, cache, namespace
        self.processor, self.front, self.on_miss = processor, front, on_miss
        self.pad_values = dict(getattr(base, "pad_values", {}))
        self.decode_size = getattr(base, "decode_size", None)
        self.sampler_spec = getattr(base, "sampler_spec", None)
        self.recomputed: dict[tuple[str, int], torch.Tensor] = {}
        self.image_features: dict[str, torch.Tensor] = {}  # image path -> (1, N, D), this run only
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.base.records)

    def __getitem__(self, key):
        from videovlm.train.data import SkippedItem, item_generator

        epoch, index = key if isinstance(key, tuple) else (0, key)
        record = self.base.records[index]
        path, is_video = self.base.media_path(record)
        if not is_video:
            return self._image_item(index, record, path)
        try:
            identity = video_identity(path)
            entry = self.cache.video_entry(self.namespace, identity)
            metadata = metadata_from_json(entry["metadata"]) if entry is not None else self._metadata(path)
            generator = item_generator(self.base.seed, epoch, index) if self.base.train else None
            sample = self.base.sampler(metadata, generator)
            features, missing = self.cache.lookup(self.namespace, identity, sample.indices)
            if features is None:
                self.misses += 1
                if self.on_miss == "error":
                    raise FeatureCacheError(self.cache.explain_miss(self.namespace, identity, missing))
                features = self._recompute(path, identity, sample.indices)
            else:
                self.hits += 1
        except (VideoDecodeError, OSError, ValueError) as error:
            return SkippedItem(index=index, path=str(path), reason=f"{type(error).__name__}: {error}")
        item = self.processor(record)
        item["frame_features"] = features  # (T, N, D)
        item["frame_mask"] = torch.tensor(sample.valid, dtype=torch.bool)  # (T,)
        return item

    def _image_item(self, index: int, record: Any, path: Path):
        """An image record (Video-LLaMA's stage 1 mixes image captions in): one frame, computed
        by the frozen front once per run and kept in memory. Images are not stored in the
        cache (``videovlm cache-features`` stores videos), so ``on_miss="error"`` refuses them."""
        from videovlm.train.data import SkippedItem, read_image

        if self.front is None:
            raise FeatureCacheError(f"{path}: an image record; the cache stores video frames only, so on_miss='error' cannot serve images (use on_miss: compute)")
        key = str(path)
        if key not in self.image_features:
            try:
                self.image_features[key] = compute_frame_features(self.front, self.processor, read_image(path))  # (1, N, D)
            except (OSError, ValueError) as error:
                return SkippedItem(index=index, path=str(path), reason=f"{type(error).__name__}: {error}")
        item = self.processor(record)
        item["frame_features"] = self.image_features[key]  # (1, N, D)
        item["frame_mask"] = torch.ones(1, dtype=torch.bool)
        return item

    def _metadata(self, path: Path) -> VideoMetadata:
        from videovlm.video import open_video

        with open_video(path) as reader:
            return reader.metadata

    def _recompute(self, path: Path, identity: dict[str, Any], indices: Sequence[int]) -> torch.Tensor:
        from videovlm.video import open_video

        key = video_key(identity)
        todo = sorted({i for i in indices if (key, i) not in self.recomputed})
        if todo:
            with open_video(path, resize=tuple(self.decode_size) if self.decode_size is not None else None) as reader:
                features = compute_frame_features(self.front, self.processor, reader.get_frames(todo).frames)
            for i, feature in zip(todo, features):
                self.recomputed[(key, i)] = feature
        return torch.stack([self.recomputed[(key, i)] for i in indices])


def _one_video_input(pixel_values, frame_features, *, max_frames: int):
    """``frame_features`` (checked to be (B, T, N, D)) when given, else ``pixel_values``: the
    cached models take either, and tell them apart by their number of dimensions."""
    if (pixel_values is None) == (frame_features is None):
        raise ValueError("give exactly one of pixel_values (B, T, C, H, W) and frame_features (B, T, N, D)")
    if frame_features is None:
        return pixel_values
    check_frame_features(frame_features, None, max_frames=max_frames)
    return frame_features


class CachedFeatureVideoLlama(VideoLlamaModel):
    """Video-LLaMA that takes ``frame_features (B, T, N, D)`` (the cached output of its
    frozen front) in place of ``pixel_values (B, T, C, H, W)``. Saved and loaded exactly
    like ``VideoLlamaModel`` (same config, same weights)."""

    cached_parts: tuple[str, ...] = ("vision",)
    checkpoint_class = VideoLlamaModel  # what the next stage loads the saved weights with

    def forward(self, *, input_ids, pixel_values=None, frame_features=None, **kwargs):
        return super().forward(input_ids=input_ids, pixel_values=_one_video_input(pixel_values, frame_features, max_frames=self.config.max_frames), **kwargs)

    def encode_video(self, pixel_values, frame_mask=None, **instruction):
        if pixel_values.ndim != 4:  # pixels: the full path
            return super().encode_video(pixel_values, frame_mask, **instruction)
        tokens = pixel_values  # (B, T, N, D) cached frame features
        frame_mask = check_frame_features(tokens, frame_mask, max_frames=self.config.max_frames)
        return self.encode_frame_tokens(tokens, frame_mask, image_qformer="image_qformer" not in self.cached_parts, **instruction)


class CachedFeatureVideoBert(VideoBertModel):
    """VideoBERT that takes ``frame_features (B, T, N, D)`` (its frozen tower's cached output)
    in place of ``pixel_values``; each frame is still quantised to its nearest visual word, so
    training sees the same tokens. Saved and loaded exactly like ``VideoBertModel``."""

    cached_parts: tuple[str, ...] = ("vision",)
    checkpoint_class = VideoBertModel

    def forward(self, *, input_ids, pixel_values=None, frame_features=None, **kwargs):
        return super().forward(input_ids=input_ids, pixel_values=_one_video_input(pixel_values, frame_features, max_frames=self.config.max_frames), **kwargs)

    def checked_frame_mask(self, pixel_values, frame_mask):
        if pixel_values.ndim != 4:  # pixels: the full path
            return super().checked_frame_mask(pixel_values, frame_mask)
        return check_frame_features(pixel_values, frame_mask, max_frames=self.config.max_frames)

    def frame_features(self, pixel_values):
        if pixel_values.ndim != 4:
            return super().frame_features(pixel_values)
        self.checked_frame_mask(pixel_values, None)
        return pixel_values.float().mean(dim=2)  # (B, T, D), as the tower's tokens are averaged on the full path


# Which cached variant each family trains as (same modules, new methods).
CACHED_VARIANTS: dict[type, type] = {VideoLlamaModel: CachedFeatureVideoLlama, VideoBertModel: CachedFeatureVideoBert}


def use_cached_features(*, model: nn.Module, datasets: Sequence, cache_dir: str | Path, trainable: Sequence[str] | None, on_miss: OnMiss = "compute"):
    """The training engine's hook for ``features: cached``: returns (model, datasets) where the
    model reads ``frame_features`` and each dataset serves them from ``cache_dir``.

    Call it after the stage's trainable parts are set and before the model is wrapped by
    DeepSpeed (the frozen weights are hashed here, while every rank holds them whole)."""
    variant = next((cached for family, cached in CACHED_VARIANTS.items() if isinstance(model, family)), None)
    if variant is None:
        names = ", ".join(family.__name__ for family in CACHED_VARIANTS)
        raise FeatureCacheError(f"features: cached supports {names} (a frozen vision front); got {type(model).__name__}")
    parts = cached_parts(model, trainable)
    # Same modules, new methods: the model keeps its weights, config, freezing and processor.
    model.__class__ = variant
    model.cached_parts = parts
    front = copy.deepcopy(FrozenFront(model, parts)).eval() if on_miss == "compute" else None
    cache = FeatureCache(cache_dir)
    namespaces: dict[Any, Namespace] = {}  # per decode size (the frozen weights are hashed once each)
    wrapped = []
    for ds in datasets:
        size = getattr(ds, "decode_size", None)
        if size not in namespaces:
            namespaces[size] = model_namespace(model, parts, decode_size=size)
        wrapped.append(CachedFeatureDataset(ds, cache=cache, namespace=namespaces[size], processor=model.processor, front=front, on_miss=on_miss))
    return model, wrapped


def apply_feature_cache(*, config, stage, model, train_sets: list, val_sets: list):
    """``use_cached_features`` driven by the recipe's ``features`` / ``feature_cache`` keys
    (``videovlm.train.config.FeatureCacheConfig``): returns (model, train_sets, val_sets), unchanged
    for ``features: online``. The engine calls this once per stage, before DeepSpeed."""
    if getattr(config, "features", "online") != "cached":
        return model, train_sets, val_sets
    settings = getattr(config, "feature_cache", None) or FeatureCacheConfig()
    model, wrapped = use_cached_features(
        model=model, datasets=[*train_sets, *val_sets], cache_dir=cache_dir_of(config), trainable=stage.trainable, on_miss=settings.on_miss
    )
    return model, wrapped[: len(train_sets)], wrapped[len(train_sets) :]
