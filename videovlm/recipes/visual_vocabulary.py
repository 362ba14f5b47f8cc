"""VideoBERT's visual vocabulary: hierarchical k-means over clip features (pure torch, seeded).

VideoBERT clusters S3D clip features with hierarchical k-means, ``levels`` deep with ``k``
children per node (the paper: 4 levels x 12 = 20,736 visual words). Fitting is level by
level: the points of each node are split into ``k`` clusters by ordinary k-means, so a
vocabulary of k^levels words costs only ``levels`` passes over the data instead of one
k-means with k^levels centres.

A vocabulary is a tree of centroids: ``centers[l]`` has shape ``(k^l, k, D)``, the ``k``
children of each of the ``k^l`` nodes of level ``l``. ``assign`` walks the tree (nearest
child at every level) and returns the leaf index in ``[0, k^levels)``; ``leaves`` is the flat
``(k^levels, D)`` codebook a model stores. Saved as safetensors (one tensor per level) with
the settings in its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


class VocabularyError(ValueError):
    """A vocabulary cannot be fitted or loaded (too few points, bad file); the message says why."""


@dataclass(frozen=True)
class VocabularySettings:
    """Fields: levels (depth of the tree), k (children per node), iterations (k-means steps
    per node), seed (centre initialisation)."""

    levels: int = 2
    k: int = 8
    iterations: int = 20
    seed: int = 0

    def __post_init__(self):
        for name, low in (("levels", 1), ("k", 2), ("iterations", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise VocabularyError(f"{name}: must be an integer >= {low}, got {value!r}")

    @property
    def size(self) -> int:
        return self.k**self.levels


def kmeans(points: torch.Tensor, k: int, *, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """Centres (k, D) of ``points`` (P, D) by Lloyd's algorithm with k-means++ seeding.

    With fewer distinct points than ``k`` the spare centres repeat existing points (they win
    no assignments, so their leaves are simply never used)."""
    count = points.shape[0]
    if count == 0:
        raise VocabularyError("kmeans: no points")
    first = torch.randint(count, (1,), generator=generator)
    centres = [points[first]]  # k-means++: each new centre far from the chosen ones
    nearest = torch.cdist(points, centres[0]).squeeze(1).pow(2)  # (P,)
    for _ in range(1, k):
        if float(nearest.sum()) <= 0.0:
            centres.append(points[torch.randint(count, (1,), generator=generator)])
            continue
        chosen = torch.multinomial(nearest, 1, generator=generator)
        centres.append(points[chosen])
        nearest = torch.minimum(nearest, torch.cdist(points, points[chosen]).squeeze(1).pow(2))
    centroids = torch.cat(centres)  # (k, D)
    for _ in range(iterations):
        assign = torch.cdist(points, centroids).argmin(1)  # (P,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        sizes = torch.bincount(assign, minlength=k).unsqueeze(1)  # (k, 1)
        updated = torch.where(sizes > 0, sums / sizes.clamp(min=1), centroids)  # an empty cluster keeps its centre
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids


class VisualVocabulary:
    """A fitted hierarchical vocabulary (see the module docstring)."""

    def __init__(self, centers: list[torch.Tensor], settings: VocabularySettings):
        if len(centers) != settings.levels:
            raise VocabularyError(f"centers: {len(centers)} levels, settings say {settings.levels}")
        for level, c in enumerate(centers):
            if c.ndim != 3 or c.shape[:2] != (settings.k**level, settings.k):
                raise VocabularyError(f"centers[{level}]: expected shape ({settings.k**level}, {settings.k}, D), got {tuple(c.shape)}")
        self.centers = centers
        self.settings = settings

    @property
    def dim(self) -> int:
        return int(self.centers[0].shape[-1])

    @property
    def leaves(self) -> torch.Tensor:
        """The flat codebook (k^levels, D): leaf i is word i."""
        return self.centers[-1].reshape(-1, self.dim)

    @classmethod
    def fit(cls, features: torch.Tensor, settings: VocabularySettings) -> VisualVocabulary:
        """Fit on ``features`` (P, D), level by level."""
        if features.ndim != 2:
            raise VocabularyError(f"features: expected (P, D), got shape {tuple(features.shape)}")
        if features.shape[0] < settings.k:
            raise VocabularyError(f"features: {features.shape[0]} points cannot be split into k={settings.k} clusters")
        points = features.float()
        generator = torch.Generator().manual_seed(settings.seed)
        node_of_point = torch.zeros(points.shape[0], dtype=torch.long)  # node index at the current level
        centers: list[torch.Tensor] = []
        for level in range(settings.levels):
            nodes = settings.k**level
            level_centers = torch.empty(nodes, settings.k, points.shape[1])  # (k^l, k, D)
            for node in range(nodes):
                members = points[node_of_point == node]
                if members.shape[0] == 0:
                    # No data reached this node: copy the parent's children so the shape holds.
                    level_centers[node] = level_centers[node - 1] if node else 0.0
                    continue
                level_centers[node] = kmeans(members, settings.k, iterations=settings.iterations, generator=generator)
            child = _nearest_child(points, level_centers, node_of_point)  # (P,)
            node_of_point = node_of_point * settings.k + child
            centers.append(level_centers)
        return cls(centers, settings)

    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """Word ids (...,) of features (..., D) by walking the tree."""
        flat = features.reshape(-1, features.shape[-1]).float()  # (P, D)
        node = torch.zeros(flat.shape[0], dtype=torch.long)
        for level_centers in self.centers:
            node = node * self.settings.k + _nearest_child(flat, level_centers, node)
        return node.reshape(features.shape[:-1])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        s = self.settings
        metadata = {"levels": str(s.levels), "k": str(s.k), "iterations": str(s.iterations), "seed": str(s.seed)}
        save_file({f"level_{i}": c.contiguous() for i, c in enumerate(self.centers)}, str(path), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | Path) -> VisualVocabulary:
        path = Path(path)
        if not path.is_file():
            raise VocabularyError(f"{path}: vocabulary file not found")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            try:
                settings = VocabularySettings(**{name: int(meta[name]) for name in ("levels", "k", "iterations", "seed")})
            except KeyError as e:
                raise VocabularyError(f"{path}: metadata lacks {e.args[0]!r} (not a visual vocabulary file)") from None
            centers = [f.get_tensor(f"level_{i}") for i in range(settings.levels)]
        return cls(centers, settings)


def _nearest_child(points: torch.Tensor, level_centers: torch.Tensor, node: torch.Tensor) -> torch.Tensor:
    """For each point, the index (0..k-1) of the nearest child of its node."""
    children = level_centers[node]  # (P, k, D)
    return (children - points.unsqueeze(1)).pow(2).sum(-1).argmin(1)  # (P,)
