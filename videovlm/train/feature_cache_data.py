"""Training from the frozen-feature cache (``features: cached``): a dataset wrapper that
serves cached frame features as the model input that takes them (``frame_features`` /
``query_features``), and the one-call hook ``apply_feature_cache`` the training engine calls. The cache itself:
``feature_cache``."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from videovlm.models import VideoBertModel, VideoLlamaModel, VideoOFAModel
from videovlm.models.partitioned import has_partitioned
from videovlm.train.config import cache_dir_of
from videovlm.train.datasets.shards import ShardDataset
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
    per-item jitter, but items carry ``frame_features (T, N, D)`` (or ``query_features``, when
    the image Q-Former is cached too: ``input_name``) from the cache instead of ``pixel_values`` (no decoding when every frame is cached). The text side comes from the
    family processor (``processor(record)``).

    A frame missing from the namespace (new video, edited file, other frozen weights) is
    recomputed from the decoded frames with ``front`` (``on_miss="compute"``; kept in memory
    for the run) or stops training with the reason (``on_miss="error"``).
    """

    def __init__(
        self,
        base,
        *,
        cache: FeatureCache,
        namespace: Namespace,
        processor,
        front: FrozenFront | None,
        on_miss: OnMiss = "compute",
        input_name: str = "frame_features",
    ):
        for attribute in ("records", "media_path", "sampler", "seed", "train"):
            if not hasattr(base, attribute):
                raise FeatureCacheError(f"features: cached wraps media datasets (videovlm.train.data.MediaTextDataset); {type(base).__name__} has no {attribute!r}")
        if on_miss not in ("compute", "error"):
            raise FeatureCacheError(f"on_miss: expected 'compute' or 'error', got {on_miss!r}")
        if on_miss == "compute" and front is None:
            raise FeatureCacheError("on_miss='compute' needs the frozen front to recompute missing frames")
        if input_name not in ("frame_features", "query_features"):
            raise FeatureCacheError(f"input_name: expected 'frame_features' or 'query_features', got {input_name!r}")
        self.base, self.cache, self.namespace, self.input_name = base, cache, namespace, input_name
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
        valid = torch.tensor(sample.valid, dtype=torch.bool)  # (T,)
        # A dataset whose items depend on the frames (frame order, matching) builds them itself.
        cached_item = getattr(self.base, "cached_item", None)
        if cached_item is not None:
            return cached_item((epoch, index), record, features, valid, input_name=self.input_name)
        item = self.processor(record)
        item[self.input_name] = features  # (T, N, D)
        item["frame_mask"] = valid
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
        item[self.input_name] = self.image_features[key]  # (1, N, D)
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
            with open_video(path, resize=self.decode_size) as reader:
                features = compute_frame_features(self.front, self.processor, reader.get_frames(todo).frames)
            for i, feature in zip(todo, features):
                self.recomputed[(key, i)] = feature
        return torch.stack([self.recomputed[(key, i)] for i in indices])


# The families that take cached features as an input (``frame_features`` / ``query_features``).
CACHED_FAMILIES: tuple[type, ...] = (VideoLlamaModel, VideoBertModel, VideoOFAModel)


def cached_input_name(parts: Sequence[str]) -> str:
    """The model input the cache feeds: the image Q-Former's output (``query_features``) when
    it is cached too, else the vision tower's (``frame_features``)."""
    return "query_features" if "image_qformer" in parts else "frame_features"


def use_cached_features(*, model: nn.Module, datasets: Sequence, cache_dir: str | Path, trainable: Sequence[str] | None, on_miss: OnMiss = "compute") -> list:
    """The training engine's hook for ``features: cached``: each dataset, wrapped to serve the
    frozen front's output from ``cache_dir`` under the model input that takes it
    (``frame_features`` or ``query_features``). The model itself is unchanged.

    Call it after the stage's trainable parts are set and before the model is wrapped by
    DeepSpeed (the frozen weights are hashed here, while every rank holds them whole)."""
    if not isinstance(model, CACHED_FAMILIES):
        names = ", ".join(family.__name__ for family in CACHED_FAMILIES)
        raise FeatureCacheError(f"features: cached supports {names} (a frozen vision front); got {type(model).__name__}")
    parts = cached_parts(model, trainable)
    if "image_qformer" in parts and not isinstance(model, VideoLlamaModel):
        raise FeatureCacheError(f"features: cached: {type(model).__name__} has no image Q-Former to cache")
    front = copy.deepcopy(FrozenFront(model, parts)).eval() if on_miss == "compute" else None
    cache = FeatureCache(cache_dir)
    namespaces: dict[Any, Namespace] = {}  # per decode size (the frozen weights are hashed once each)
    wrapped = []
    for ds in datasets:
        size = getattr(ds, "decode_size", None)
        if size not in namespaces:
            namespaces[size] = model_namespace(model, parts, decode_size=size)
        wrapped.append(
            CachedFeatureDataset(
                ds, cache=cache, namespace=namespaces[size], processor=model.processor, front=front, on_miss=on_miss, input_name=cached_input_name(parts)
            )
        )
    return wrapped


def check_partitioned_front(model, *, stage, config) -> None:
    """ZeRO-3 partitions the frozen front (the tower, a transformers image Q-Former) across the
    ranks: it cannot compute a missing frame in a data worker, and in bf16 it is no longer the
    fp32 front whose weights name the cache (``videovlm cache-features`` builds without ZeRO)."""
    parts = [getattr(model, part) for part in cached_parts(model, stage.trainable)]
    if not any(has_partitioned(part) for part in parts):
        return
    if config.deepspeed.precision != "fp32":
        raise FeatureCacheError(
            f"stage {stage.name!r}: features: cached at ZeRO-3 needs deepspeed.precision=fp32: zero.Init builds the frozen "
            f"tower in {config.deepspeed.precision}, so its weights no longer match the cache's; use features: online or zero_stage 2"
        )
    if config.feature_cache.on_miss != "error":
        raise FeatureCacheError(
            f"stage {stage.name!r}: features: cached computes a missing frame's features with the vision tower in the data "
            "workers, and ZeRO-3 partitions the tower across the ranks; fill the cache first (videovlm cache-features) and "
            "set feature_cache.on_miss=error, or train this stage at zero_stage 2"
        )


def apply_feature_cache(*, config, stage, model, train_sets: list, val_sets: list) -> tuple[list, list]:
    """``use_cached_features`` driven by the recipe's ``features`` / ``feature_cache`` keys
    (``videovlm.train.config.FeatureCacheConfig``): returns (train_sets, val_sets), unchanged
    for ``features: online``. The engine calls this once per stage, before DeepSpeed."""
    if config.features != "cached":
        return train_sets, val_sets
    if any(isinstance(ds, ShardDataset) for ds in train_sets):
        raise FeatureCacheError(
            f"stage {stage.name!r}: features: cached keys frames by their video file; shard datasets carry the frames "
            "themselves, so train them with features: online"
        )
    check_partitioned_front(model, stage=stage, config=config)
    wrapped = use_cached_features(
        model=model, datasets=[*train_sets, *val_sets], cache_dir=cache_dir_of(config), trainable=stage.trainable, on_miss=config.feature_cache.on_miss
    )
    return wrapped[: len(train_sets)], wrapped[len(train_sets) :]
