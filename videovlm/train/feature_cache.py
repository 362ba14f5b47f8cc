"""Frozen-feature cache: run the frozen front of a model once per frame, train from disk.

In Video-LLaMA's first stages the vision tower (and the image Q-Former) are frozen, as is
VideoBERT's tower, so their output for a given frame never changes: computing it every step
is wasted work. This module stores it once per distinct frame and feeds it back to training.

Layout of a cache folder::

    index.json                      # namespaces -> videos -> frame index -> (shard, row)
    <namespace>/shard-00000.safetensors   # tensor "features" (R, N, D), one row per frame

A **namespace** is everything that makes a feature valid: the sha256 of the frozen weights
(parameters and buffers of the cached parts, in name order), which parts were run
(``vision`` or ``vision`` + ``image_qformer``) and the preprocessing (pixel settings, decode
size, the tower's layer/token selection). A **video** is keyed by its resolved path, size and
mtime, so an edited file is a different video. A frame entry is used only if all three keys
match: changing one frozen weight changes the namespace and every lookup misses, which is
then recomputed or reported (``on_miss``), never silently served.

Train-time jitter picks different frames each epoch; the cache stores frames, not samples, so
each distinct frame is computed once (precomputing a jittering sampler caches every frame in
its window).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from videovlm.models.partitioned import gathered
from videovlm.video.types import VideoDecodeError, VideoMetadata

INDEX_FILE = "index.json"
CACHE_VERSION = 1
SHARD_ROWS = 2048  # frames per shard file
FEATURES_KEY = "features"  # the tensor name inside a shard


class FeatureCacheError(RuntimeError):
    """The cache cannot serve a request: a missing or stale entry with ``on_miss="error"``,
    a corrupt index, or a model whose cached parts are not frozen."""


# --------------------------------------------------------------------------------------
# Keys


def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # bfloat16 has no numpy dtype: hash its raw 16-bit words.
        raw = tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()


def cached_parts(model: nn.Module, trainable: Sequence[str] | None) -> tuple[str, ...]:
    """The frozen front to cache: ``vision``, plus ``image_qformer`` when the model has one and
    it is frozen too. Raises if the vision tower is trained (its features would change)."""
    if trainable is None or "vision" in trainable:
        raise FeatureCacheError(
            f"features: cached needs a frozen vision tower, but this stage trains {'every part' if trainable is None else 'vision'}"
        )
    parts = ["vision"]
    if getattr(model, "image_qformer", None) is not None and "image_qformer" not in trainable:
        parts.append("image_qformer")
    return tuple(parts)


@dataclass(frozen=True)
class Namespace:
    """What makes a cached feature valid (see the module doc). ``key`` names its folder."""

    frozen_sha256: str
    parts: tuple[str, ...]
    preprocess: str  # canonical JSON of the pixel settings, decode size and token selection

    @property
    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def describe(self) -> str:
        return f"frozen weights sha256 {self.frozen_sha256[:12]}..., parts {'+'.join(self.parts)}"


def model_namespace(model: nn.Module, parts: Sequence[str], *, decode_size: Sequence[int] | int | None = None) -> Namespace:
    """The namespace of ``model``'s current frozen weights and preprocessing."""
    modules = {}
    for part in parts:
        module = getattr(model, part, None)
        if not isinstance(module, nn.Module):
            raise FeatureCacheError(f"features: the model has no part {part!r} to cache")
        modules[part] = module
    with gathered([p for module in modules.values() for p in module.parameters()]):  # ZeRO-3: the whole weights
        state = {f"{part}.{name}": value for part, module in modules.items() for name, value in module.state_dict().items()}
        digest = tensor_digest(state)
    vision = model.vision
    preprocess = {
        "pixel": asdict(vision.pixel),
        "select": vision.select,
        "feature_layer": vision.feature_layer,
        "decode_size": decode_size if decode_size is None or isinstance(decode_size, int) else list(decode_size),
    }
    return Namespace(frozen_sha256=digest, parts=tuple(parts), preprocess=json.dumps(preprocess, sort_keys=True))


def video_identity(path: str | Path) -> dict[str, Any]:
    """Resolved path, size and mtime (ns) of a video file; an edited file gets a new identity."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError as e:
        raise VideoDecodeError(str(path), f"cannot stat for the feature cache ({e.strerror})") from e
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def video_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def metadata_to_json(meta: VideoMetadata) -> dict[str, Any]:
    return asdict(meta)


def metadata_from_json(data: dict[str, Any]) -> VideoMetadata:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return VideoMetadata(**fields)


# --------------------------------------------------------------------------------------
# Frozen front


class FrozenFront(nn.Module):
    """The cached parts of a family model (its vision tower, plus Video-LLaMA's image Q-Former): pixels (B, T, C, H, W) -> frame tokens (B, T, N, D).
    Holds the model's own modules (no copy), so its output is exactly what training would compute."""

    def __init__(self, model: nn.Module, parts: Sequence[str]):
        super().__init__()
        self.vision = model.vision
        self.image_qformer = model.image_qformer if "image_qformer" in parts else None

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.vision(pixel_values)  # (B, T, N, D_vis)
        if self.image_qformer is not None:
            tokens = self.image_qformer(tokens)  # (B, T, Q, D_q)
        return tokens.float()


# --------------------------------------------------------------------------------------
# Storage


class FeatureCache:
    """A cache folder (see the module doc). Reads lazily (memory-mapped safetensors);
    ``add`` buffers new frames and ``flush`` writes a shard and the index atomically.
    One writer at a time: the ``cache-features`` command, not DataLoader workers."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.index = self._read_index()
        self._pending: dict[str, list[tuple[str, int, torch.Tensor]]] = {}
        self._open: dict[Path, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers (spawn) get a copy without open shard handles; they reopen lazily.
        return {**self.__dict__, "_open": {}}

    def _read_index(self) -> dict[str, Any]:
        path = self.directory / INDEX_FILE
        if not path.is_file():
            return {"version": CACHE_VERSION, "namespaces": {}}
        try:
            index = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise FeatureCacheError(f"{path}: line {e.lineno}: corrupt cache index ({e.msg}); delete the folder to rebuild it") from e
        if not isinstance(index, dict) or index.get("version") != CACHE_VERSION or not isinstance(index.get("namespaces"), dict):
            raise FeatureCacheError(f"{path}: not a version-{CACHE_VERSION} feature cache index; delete the folder to rebuild it")
        return index

    def _space(self, namespace: Namespace, *, create: bool = False) -> dict[str, Any] | None:
        spaces = self.index["namespaces"]
        if namespace.key not in spaces and create:
            spaces[namespace.key] = {"namespace": asdict(namespace), "shards": [], "videos": {}}
        return spaces.get(namespace.key)

    # -- reading --------------------------------------------------------------------------
    def video_entry(self, namespace: Namespace, identity: dict[str, Any]) -> dict[str, Any] | None:
        space = self._space(namespace)
        return None if space is None else space["videos"].get(video_key(identity))

    def lookup(self, namespace: Namespace, identity: dict[str, Any], frames: Iterable[int]) -> tuple[torch.Tensor | None, list[int]]:
        """Features ``(T, N, D)`` of ``frames`` in order, or (None, the frames that are missing)."""
        frames = list(frames)
        entry = self.video_entry(namespace, identity)
        stored = entry["frames"] if entry is not None else {}
        missing = sorted({f for f in frames if str(f) not in stored})
        if missing:
            return None, missing
        space = self._space(namespace)
        rows = [self._row(space["shards"][stored[str(f)][0]], stored[str(f)][1]) for f in frames]
        return torch.stack(rows), []

    def _row(self, shard: str, row: int) -> torch.Tensor:
        path = self.directory / shard
        handle = self._open.get(path)
        if handle is None:
            if not path.is_file():
                raise FeatureCacheError(f"{path}: shard listed in {self.directory / INDEX_FILE} is missing; delete the folder to rebuild it")
            handle = self._open[path] = safe_open(str(path), framework="pt")
        return handle.get_slice(FEATURES_KEY)[row]

    def explain_miss(self, namespace: Namespace, identity: dict[str, Any], missing: Sequence[int]) -> str:
        """Why a lookup missed: other frozen weights, an edited video, or frames never cached."""
        where = f"{identity['path']} frames {list(missing)[:8]}{'...' if len(missing) > 8 else ''}"
        if self._space(namespace) is None:
            others = [s["namespace"] for s in self.index["namespaces"].values()]
            if others:
                held = "; ".join(f"frozen weights sha256 {o['frozen_sha256'][:12]}..., parts {'+'.join(o['parts'])}" for o in others)
                return f"{where}: stale cache: it holds features for [{held}], the model has {namespace.describe()}"
            return f"{where}: the cache at {self.directory} is empty"
        space = self._space(namespace)
        same_path = [v for v in space["videos"].values() if v["identity"]["path"] == identity["path"]]
        if same_path and self.video_entry(namespace, identity) is None:
            return f"{where}: stale entry: the file changed since it was cached (size/mtime differ)"
        return f"{where}: not cached (run `videovlm cache-features` for this split and sampler)"

    # -- writing --------------------------------------------------------------------------
    def add(self, namespace: Namespace, identity: dict[str, Any], metadata: VideoMetadata, frames: Sequence[int], features: torch.Tensor, *, sampler: str) -> None:
        """Queue features ``(T, N, D)`` of ``frames`` of one video; ``flush`` writes them."""
        space = self._space(namespace, create=True)
        key = video_key(identity)
        entry = space["videos"].setdefault(key, {"identity": identity, "metadata": metadata_to_json(metadata), "frames": {}, "samplers": []})
        if sampler not in entry["samplers"]:
            entry["samplers"].append(sampler)
        pending = self._pending.setdefault(namespace.key, [])
        queued = {(k, f) for k, f, _ in pending}
        for frame, feature in zip(frames, features):
            if str(frame) not in entry["frames"] and (key, frame) not in queued:
                pending.append((key, int(frame), feature.detach().float().cpu().contiguous()))
                queued.add((key, frame))
        if len(pending) >= SHARD_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write queued frames as new shards, then the index (atomically, via a temp file)."""
        for space_key, pending in self._pending.items():
            if not pending:
                continue
            space = self.index["namespaces"][space_key]
            for start in range(0, len(pending), SHARD_ROWS):
                chunk = pending[start : start + SHARD_ROWS]
                shard = f"{space_key}/shard-{len(space['shards']):05d}.safetensors"
                (self.directory / space_key).mkdir(parents=True, exist_ok=True)
                save_file({FEATURES_KEY: torch.stack([f for _, _, f in chunk])}, str(self.directory / shard), metadata={"namespace": space_key})
                number = len(space["shards"])
                space["shards"].append(shard)
                for row, (key, frame, _) in enumerate(chunk):
                    space["videos"][key]["frames"][str(frame)] = [number, row]
        self._pending = {}
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / (INDEX_FILE + ".tmp")
        tmp.write_text(json.dumps(self.index, indent=1, sort_keys=True))
        os.replace(tmp, self.directory / INDEX_FILE)

    def stats(self) -> dict[str, int]:
        spaces = self.index["namespaces"].values()
        return {
            "namespaces": len(self.index["namespaces"]),
            "videos": sum(len(s["videos"]) for s in spaces),
            "frames": sum(len(v["frames"]) for s in spaces for v in s["videos"].values()),
        }



# --------------------------------------------------------------------------------------
# Precomputing (``videovlm cache-features``)


@dataclass
class PrecomputeReport:
    """What a precompute pass did: videos seen, frames computed now, frames already cached,
    and the videos that could not be read (path, reason)."""

    videos: int = 0
    computed: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] | None = None


def frames_to_cache(sampler, metadata: VideoMetadata) -> list[int]:
    """The distinct frames training can ask for: the eval-time sample for a sampler without
    jitter, every frame of the video for one with jitter (any of them may be drawn)."""
    if getattr(sampler, "jitter", False):
        return list(range(metadata.num_frames))
    return sorted(set(sampler(metadata).indices))


def compute_frame_features(front: FrozenFront, processor, frames: torch.Tensor, *, chunk: int = 32) -> torch.Tensor:
    """uint8 frames ``(T, H, W, 3)`` -> features ``(T, N, D)``, ``chunk`` frames per forward."""
    from videovlm.models import frames_to_pixel_values

    out = []
    for start in range(0, frames.shape[0], chunk):
        pixels = frames_to_pixel_values(frames[start : start + chunk], processor.pixel)  # (1, t, C, H, W)
        out.append(front(pixels)[0])  # (t, N, D)
    return torch.cat(out)


def precompute(
    *,
    cache: FeatureCache,
    namespace: Namespace,
    front: FrozenFront,
    processor,
    videos: Iterable[str | Path],
    sampler,
    sampler_spec: str,
    decode_size: Sequence[int] | int | None = None,
    progress: bool = False,
) -> PrecomputeReport:
    """Cache the frames ``sampler`` can draw from each video (already cached frames are kept)."""
    from tqdm import tqdm

    from videovlm.video import open_video

    report = PrecomputeReport(failed=[])
    for path in tqdm(list(dict.fromkeys(str(v) for v in videos)), desc="cache-features", unit="video", disable=not progress):
        report.videos += 1
        try:
            identity = video_identity(path)
            with open_video(path, resize=decode_size) as reader:  # a short side or (height, width)
                wanted = frames_to_cache(sampler, reader.metadata)
                entry = cache.video_entry(namespace, identity)
                todo = [f for f in wanted if entry is None or str(f) not in entry["frames"]]
                report.reused += len(wanted) - len(todo)
                if todo:
                    features = compute_frame_features(front, processor, reader.get_frames(todo).frames)
                else:
                    features = torch.empty(0)
                metadata = reader.metadata
        except (VideoDecodeError, OSError, ValueError) as e:
            report.failed.append((path, f"{type(e).__name__}: {e}"))
            continue
        cache.add(namespace, identity, metadata, todo, features, sampler=sampler_spec)
        report.computed += len(todo)
    cache.flush()
    return report
