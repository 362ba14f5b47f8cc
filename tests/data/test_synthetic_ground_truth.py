"""The QA answers and the ground truth agree with what the decoded pixels show.

Objects are found in the decoded frames by colour alone (each colour belongs to one object of a
video), so these checks do not go through the caption or question generator's logic.
"""

from __future__ import annotations

import json

import numpy as np

from videovlm.data.formats import read_annotations_jsonl
from videovlm.data.synthetic.questions import parse_question
from videovlm.data.synthetic.vocabulary import COLORS, NUMBER_WORDS
from videovlm.video import open_video

COLOUR_TOLERANCE = 60.0  # RGB distance: x264 at crf 18 keeps interior pixels far closer than this


def _observe(frames: np.ndarray, colour: str, size: int) -> list[tuple[float, float] | None]:
    """Centroid (x, y) of the pixels of one palette colour in each frame, None where too few."""
    distance = np.linalg.norm(frames.astype(np.float32) - np.asarray(COLORS[colour], np.float32), axis=-1)  # (T, H, W)
    found = []
    for mask in distance < COLOUR_TOLERANCE:
        ys, xs = np.nonzero(mask)
        found.append((float(xs.mean()), float(ys.mean())) if len(xs) >= 0.2 * size * size else None)
    return found


def _pixel_facts(frames: np.ndarray, obj) -> dict:
    """What the frames show about one object: visible frames, colour per frame, displacement."""
    seen = {c: _observe(frames, c, obj.size) for c in obj.colors}
    visible = [t for t in range(len(frames)) if any(seen[c][t] for c in obj.colors)]
    colour_at = {t: next(c for c in obj.colors if seen[c][t]) for t in visible}
    first, last = seen[colour_at[visible[0]]][visible[0]], seen[colour_at[visible[-1]]][visible[-1]]
    dx, dy = last[0] - first[0], last[1] - first[1]
    if max(abs(dx), abs(dy)) < 3:
        motion = "still"
    elif abs(dx) > abs(dy):
        motion = "right" if dx > 0 else "left"
    else:
        motion = "down" if dy > 0 else "up"
    return {"visible": visible, "colour_at": colour_at, "motion": motion, "seen": seen}


def test_pixels_match_ground_truth_and_answers(synth_dir):
    checked = {"direction": 0, "order": 0, "change": 0, "color": 0, "count": 0}
    for split in ("train", "test"):
        split_dir = synth_dir / split
        qa_by_video: dict[str, list[dict]] = {}
        for item in json.loads((split_dir / "qa.json").read_text()):
            qa_by_video.setdefault(item["video_id"], []).append(item)
        for ann in read_annotations_jsonl(split_dir / "annotations.jsonl", media_root=split_dir):
            with open_video(split_dir / ann.video) as reader:
                frames = reader.get_frames(list(range(reader.metadata.num_frames))).frames.numpy()  # (T, H, W, 3)
            facts = {}
            for obj in ann.objects:
                f = facts[obj.shape] = _pixel_facts(frames, obj)
                assert f["visible"] == [t for t, p in enumerate(obj.positions) if p is not None], (ann.video_id, obj.shape)
                assert f["motion"] == obj.motion, (ann.video_id, obj.shape)
                for t in f["visible"]:
                    assert f["colour_at"][t] == obj.color_at(t), (ann.video_id, obj.shape, t)
                    centre = f["seen"][f["colour_at"][t]][t]
                    # Shape centroids sit within size/6 of the box centre (the triangle's is lowest).
                    assert abs(centre[0] - obj.positions[t][0]) < 2 + obj.size / 6 and abs(centre[1] - obj.positions[t][1]) < 2 + obj.size / 6
            for item in qa_by_video[ann.video_id]:
                query = parse_question(item["question"])
                if item["type"] == "direction":
                    expected = facts[query.shape]["motion"]
                elif item["type"] == "change":
                    f = facts[query.shape]
                    expected = f["colour_at"][f["visible"][-1] if query.variant == "after" else f["visible"][0]]
                elif item["type"] == "order":
                    a, b = facts[query.shape], facts[query.other]
                    if query.variant == "first":
                        expected = query.shape if a["visible"][0] < b["visible"][0] else query.other
                    else:
                        expected = query.shape if a["visible"][-1] > b["visible"][-1] else query.other
                elif item["type"] == "color":
                    expected = facts[query.shape]["colour_at"][facts[query.shape]["visible"][0]]
                elif item["type"] == "count":
                    expected = NUMBER_WORDS[len(facts) - 1]
                else:
                    continue
                assert item["answer"] == expected, (ann.video_id, item)
                checked[item["type"]] += 1
    assert all(n > 0 for n in checked.values()), checked
