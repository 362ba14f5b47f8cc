"""Determinism, layout and answer balance of the synthetic data set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.data.conftest import SMALL
from videovlm.data.synthetic import ANSWERS_BY_TYPE, QUESTION_TYPES, SPLITS, TEMPORAL_QUESTION_TYPES, corpus_texts, generate
from videovlm.data.synthetic.generate import SPLIT_FILES
from videovlm.data.synthetic.questions import sample_questions
from videovlm.data.synthetic.scene import sample_scene
from videovlm.video import open_video


def _decode(path: Path) -> np.ndarray:
    with open_video(path) as reader:
        return reader.get_frames(list(range(reader.metadata.num_frames))).frames.numpy()


def test_layout_and_counts(synth_dir):
    for split in SPLITS:
        split_dir = synth_dir / split
        for name in SPLIT_FILES:
            assert (split_dir / name).is_file(), name
        assert len(list((split_dir / "videos").glob("*.mp4"))) == SMALL[split]
        assert len(list((split_dir / "images").glob("*.jpg"))) == SMALL[split]
        with open_video(next((split_dir / "videos").glob("*.mp4"))) as reader:
            meta = reader.metadata
        assert (meta.num_frames, meta.width, meta.height, meta.fps) == (16, 112, 112, 8.0)
    stats = json.loads((synth_dir / "stats.json").read_text())
    assert stats["splits"]["train"]["videos"] == SMALL["train"]
    for kind, t in stats["splits"]["train"]["question_types"].items():
        if t["count"]:
            assert t["chance_ceiling"] == round(max(t["answers"].values()) / t["count"], 4)
            # Every temporal item flips under reversal (worth 1/2 order-blind), no static one does.
            assert t["order_blind_ceiling"] == (0.5 if kind in TEMPORAL_QUESTION_TYPES else 1.0), kind


def test_same_seed_same_output_for_any_worker_count(synth_dir, tmp_path):
    """Two worker processes give byte-identical text files and identical decoded frames."""
    again = tmp_path / "again"
    generate(again, **SMALL, seed=0, workers=2)
    for split in SPLITS:
        for name in SPLIT_FILES:
            assert (again / split / name).read_bytes() == (synth_dir / split / name).read_bytes(), (split, name)
        for video in sorted((synth_dir / split / "videos").glob("*.mp4"))[:2]:
            np.testing.assert_array_equal(_decode(video), _decode(again / split / "videos" / video.name))
    assert (again / "stats.json").read_bytes() == (synth_dir / "stats.json").read_bytes()


def test_other_seed_and_splits_differ(synth_dir, tmp_path):
    other = tmp_path / "other"
    generate(other, train=3, val=0, test=0, seed=1, workers=1)
    first = (synth_dir / "train" / "annotations.jsonl").read_text().splitlines()[:3]
    assert [json.loads(a)["objects"] for a in first] != [json.loads(a)["objects"] for a in (other / "train" / "annotations.jsonl").read_text().splitlines()]
    # Splits use disjoint random streams: no scene repeats across splits.
    scenes = [json.dumps(json.loads(line)["objects"]) for split in SPLITS for line in (synth_dir / split / "annotations.jsonl").read_text().splitlines()]
    assert len(set(scenes)) == len(scenes)


def test_refuses_non_empty_output_and_bad_arguments(synth_dir, tmp_path):
    with pytest.raises(FileExistsError, match="not empty"):
        generate(synth_dir, train=1, val=0, test=0)
    with pytest.raises(ValueError, match="--size"):
        generate(tmp_path / "x", size=47)
    with pytest.raises(ValueError, match="--frames"):
        generate(tmp_path / "x", frames=4)


def test_answers_are_balanced_within_each_type():
    """Over many scenes no answer of a type is much above 1/k (k = number of answers of the type)."""
    answers: dict[str, Counter] = {kind: Counter() for kind in QUESTION_TYPES}
    for index in range(1500):
        rng = np.random.default_rng([7, 0, index])
        ann = sample_scene(rng, video_id=f"v{index}", size=112, num_frames=16, fps=8.0)
        for item in sample_questions(rng, ann):
            answers[item.type][item.answer] += 1
    for kind, counter in answers.items():
        total = sum(counter.values())
        assert set(counter) == set(ANSWERS_BY_TYPE[kind]), kind
        assert total >= 200, (kind, total)
        assert max(counter.values()) / total < 1 / len(ANSWERS_BY_TYPE[kind]) + 0.05, (kind, counter)


def test_events_avoid_the_first_and_last_frames_and_objects_keep_apart():
    for index in range(300):
        rng = np.random.default_rng([3, 0, index])
        ann = sample_scene(rng, video_id=f"v{index}", size=112, num_frames=16, fps=8.0)
        assert len({o.shape for o in ann.objects}) == len(ann.objects)
        colours = [c for o in ann.objects for c in o.colors]
        assert len(set(colours)) == len(colours)
        for obj in ann.objects:
            assert 18 <= obj.size <= 26
            for frame in (obj.appear_frame, obj.disappear_frame, obj.change_frame):
                assert frame is None or 3 <= frame <= 13
            track = [p for p in obj.positions if p is not None]
            travel = abs(track[-1][0] - track[0][0]) + abs(track[-1][1] - track[0][1])
            assert travel >= 40 if obj.motion != "still" else travel == 0


def test_corpus_texts(synth_dir):
    texts = list(corpus_texts(synth_dir / "train"))
    assert any(t.startswith(("first", "in this video", "a ")) for t in texts)
    assert "yes" in texts and "no" in texts
    assert not any("<video>" in t for t in texts)
    qa = json.loads((synth_dir / "train" / "qa.json").read_text())
    assert len(texts) == SMALL["train"] * 2 + 2 * len(qa) + sum(len(c["conversations"]) for c in json.loads((synth_dir / "train" / "instructions.json").read_text()))


def test_scene_distribution_is_symmetric_under_reversal():
    """Mirror-image events are equally frequent (what makes the order-blind ceilings exact)."""
    counts: Counter = Counter()
    for index in range(1500):
        ann = sample_scene(np.random.default_rng([9, 0, index]), video_id=f"v{index}", size=112, num_frames=16, fps=8.0)
        for obj in ann.objects:
            counts[obj.motion] += 1
            counts["appear"] += obj.appear_frame is not None
            counts["disappear"] += obj.disappear_frame is not None
            counts[f"change@{obj.change_frame}"] += 1
    for a, b in [("left", "right"), ("up", "down"), ("appear", "disappear")] + [(f"change@{c}", f"change@{16 - c}") for c in range(4, 8)]:
        n = counts[a] + counts[b]
        assert n > 50, (a, b, n)
        assert abs(counts[a] - counts[b]) < 4 * n**0.5, (a, b, counts[a], counts[b])  # 4 sigma of a - b
