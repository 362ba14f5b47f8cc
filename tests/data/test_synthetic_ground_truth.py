"""The QA answers and the ground truth agree with what the decoded pixels show.

Objects are found in the decoded frames from pixels alone: each palette colour is segmented by
distance, its shape is classified from the segment's fill ratio and the row where it is widest,
and each colour belongs to one object of a video. No question, caption or ground-truth logic of
the generator is used to compute the expected answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from videovlm.data.formats import read_annotations_jsonl
from videovlm.data.synthetic.questions import parse_question
from videovlm.data.synthetic.vocabulary import COLORS, NUMBER_WORDS
from videovlm.video import open_video

COLOUR_TOLERANCE = 60.0  # RGB distance: x264 at crf 18 keeps interior pixels far closer than this
MIN_PIXELS = 60  # a colour segment smaller than this is compression noise, not an object (objects are >= 18 px)


def _classify(box: np.ndarray) -> str:
    """Shape of a segment cropped to its bounding box: squares fill it, circles ~pi/4 of it,
    triangles and stars about half, the triangle widest at the bottom, the star at its arms."""
    fill = box.mean()
    widest_row = np.argmax(box.sum(axis=1)) / (box.shape[0] - 1)
    if fill > 0.9:
        return "square"
    if fill > 0.68:
        return "circle"
    return "triangle" if widest_row > 0.65 else "star"


@dataclass
class SeenObject:
    """What the pixels show of one shape: its colour and centre in each frame where it is visible."""

    colour_at: dict[int, str] = field(default_factory=dict)
    centre_at: dict[int, tuple[float, float]] = field(default_factory=dict)

    @property
    def frames(self) -> list[int]:
        return sorted(self.colour_at)

    @property
    def motion(self) -> str:
        (x0, y0), (x1, y1) = self.centre_at[self.frames[0]], self.centre_at[self.frames[-1]]
        dx, dy = x1 - x0, y1 - y0
        if max(abs(dx), abs(dy)) < 3:
            return "still"
        if abs(dx) > abs(dy):
            return "right" if dx > 0 else "left"
        return "down" if dy > 0 else "up"


def _see(frames: np.ndarray) -> dict[str, SeenObject]:
    """shape -> what the decoded frames ``(T, H, W, 3)`` show of it."""
    seen: dict[str, SeenObject] = {}
    for colour, rgb in COLORS.items():
        masks = np.linalg.norm(frames.astype(np.float32) - np.asarray(rgb, np.float32), axis=-1) < COLOUR_TOLERANCE  # (T, H, W)
        present = [t for t in range(len(frames)) if masks[t].sum() >= MIN_PIXELS]
        if not present:
            continue
        votes = []
        for t in present:
            ys, xs = np.nonzero(masks[t])
            votes.append(_classify(masks[t, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]))
        shape = max(set(votes), key=votes.count)
        obj = seen.setdefault(shape, SeenObject())
        for t in present:
            ys, xs = np.nonzero(masks[t])
            obj.colour_at[t] = colour
            obj.centre_at[t] = (float(xs.mean()), float(ys.mean()))
    return seen


def _expected_answer(seen: dict[str, SeenObject], item: dict) -> str:
    query = parse_question(item["question"])
    kind = item["type"]
    if kind == "count":
        return NUMBER_WORDS[len(seen) - 1]
    if kind == "exists":
        return "yes" if query.shape in seen and query.color in seen[query.shape].colour_at.values() else "no"
    if kind == "shape":
        return next(shape for shape, obj in seen.items() if query.color in obj.colour_at.values())
    obj = seen[query.shape]
    if kind == "color":
        return obj.colour_at[obj.frames[0]]
    if kind == "direction":
        return obj.motion
    if kind == "change":
        return obj.colour_at[obj.frames[-1] if query.variant == "after" else obj.frames[0]]
    other = seen[query.other]
    if query.variant == "first":
        return query.shape if obj.frames[0] < other.frames[0] else query.other
    return query.shape if obj.frames[-1] > other.frames[-1] else query.other


def test_pixels_match_ground_truth_and_answers(synth_dir):
    checked = {kind: 0 for kind in ("color", "shape", "count", "exists", "direction", "order", "change")}
    for split in ("train", "test"):
        split_dir = synth_dir / split
        qa_by_video: dict[str, list[dict]] = {}
        for item in json.loads((split_dir / "qa.json").read_text()):
            qa_by_video.setdefault(item["video_id"], []).append(item)
        for ann in read_annotations_jsonl(split_dir / "annotations.jsonl", media_root=split_dir):
            with open_video(split_dir / ann.video) as reader:
                frames = reader.get_frames(list(range(reader.metadata.num_frames))).frames.numpy()  # (T, H, W, 3)
            seen = _see(frames)
            assert sorted(seen) == sorted(o.shape for o in ann.objects), ann.video_id
            for obj in ann.objects:
                got = seen[obj.shape]
                assert got.frames == [t for t, p in enumerate(obj.positions) if p is not None], (ann.video_id, obj.shape)
                assert got.motion == obj.motion, (ann.video_id, obj.shape)
                for t in got.frames:
                    assert got.colour_at[t] == obj.color_at(t), (ann.video_id, obj.shape, t)
                    # Shape centroids sit within size/6 of the box centre (the triangle's is lowest).
                    (x, y), (gx, gy) = got.centre_at[t], obj.positions[t]
                    assert abs(x - gx) < 2 + obj.size / 6 and abs(y - gy) < 2 + obj.size / 6, (ann.video_id, obj.shape, t)
            for item in qa_by_video[ann.video_id]:
                assert item["answer"] == _expected_answer(seen, item), (ann.video_id, item)
                checked[item["type"]] += 1
    assert all(n > 0 for n in checked.values()), checked
