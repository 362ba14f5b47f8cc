"""Hierarchical k-means visual vocabulary: structure, determinism, assignment, save/load, errors."""

from __future__ import annotations

import pytest
import torch

from videovlm.recipes.visual_vocabulary import VisualVocabulary, VocabularyError, VocabularySettings, kmeans


def blobs(centres: int = 9, per: int = 20, dim: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight blobs in groups of 3: groups far apart (100), blobs within a group 10 apart, the
    structure a 3 x 3 tree can recover exactly."""
    g = torch.Generator().manual_seed(seed)
    groups = torch.randn((centres + 2) // 3, dim, generator=g) * 100
    means = groups.repeat_interleave(3, 0)[:centres] + torch.randn(centres, dim, generator=g) * 10
    points = means.repeat_interleave(per, 0) + 0.1 * torch.randn(centres * per, dim, generator=g)
    return points, torch.arange(centres).repeat_interleave(per)


def test_kmeans_finds_separated_blobs():
    points, truth = blobs(centres=4)
    centres = kmeans(points, 4, iterations=20, generator=torch.Generator().manual_seed(0))
    assign = torch.cdist(points, centres).argmin(1)
    # Each true blob maps to exactly one cluster and clusters are not shared.
    mapping = {int(t): set(assign[truth == t].tolist()) for t in range(4)}
    assert all(len(v) == 1 for v in mapping.values())
    assert len(set().union(*mapping.values())) == 4


def test_tree_shapes_leaves_and_assignment():
    points, truth = blobs(centres=9)
    settings = VocabularySettings(levels=2, k=3, iterations=10, seed=0)
    vocab = VisualVocabulary.fit(points, settings)
    assert [tuple(c.shape) for c in vocab.centers] == [(1, 3, 4), (3, 3, 4)]
    assert vocab.leaves.shape == (9, 4) and settings.size == 9
    words = vocab.assign(points)
    assert words.min() >= 0 and words.max() < 9
    # 9 well separated blobs, 3 x 3 leaves: every blob gets its own word.
    per_blob = [set(words[truth == t].tolist()) for t in range(9)]
    assert all(len(s) == 1 for s in per_blob) and len(set().union(*per_blob)) == 9
    # Walking the tree lands on the nearest leaf for points this close to their centre.
    assert torch.equal(words, torch.cdist(points, vocab.leaves).argmin(1))
    # Batched input keeps its leading shape.
    assert vocab.assign(points.view(9, 20, 4)).shape == (9, 20)


def test_fit_is_seeded_and_roundtrips(tmp_path):
    points, _ = blobs()
    settings = VocabularySettings(levels=2, k=3, iterations=5, seed=3)
    a, b = VisualVocabulary.fit(points, settings), VisualVocabulary.fit(points, settings)
    assert all(torch.equal(x, y) for x, y in zip(a.centers, b.centers))
    loaded = VisualVocabulary.load(a.save(tmp_path / "vocab.safetensors"))
    assert loaded.settings == settings
    assert torch.equal(loaded.assign(points), a.assign(points))


def test_nodes_with_few_points_still_fill_the_tree():
    points = torch.tensor([[0.0, 0.0], [0.0, 0.1], [10.0, 10.0]])
    vocab = VisualVocabulary.fit(points, VocabularySettings(levels=3, k=2, iterations=3))
    assert vocab.leaves.shape == (8, 2) and torch.isfinite(vocab.leaves).all()


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(VocabularyError, match="k: must be an integer >= 2"):
        VocabularySettings(k=1)
    with pytest.raises(VocabularyError, match="levels"):
        VocabularySettings(levels=True)
    with pytest.raises(VocabularyError, match=r"expected \(P, D\)"):
        VisualVocabulary.fit(torch.zeros(5), VocabularySettings())
    with pytest.raises(VocabularyError, match="cannot be split into k=8"):
        VisualVocabulary.fit(torch.zeros(3, 2), VocabularySettings(k=8))
    with pytest.raises(VocabularyError, match="not found"):
        VisualVocabulary.load(tmp_path / "missing.safetensors")
