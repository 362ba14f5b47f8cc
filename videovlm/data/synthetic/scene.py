"""Ground truth of one synthetic video: objects, their motions and events, per-frame centres.

Sampling is symmetric under time reversal (an appear-late frame is drawn from the mirror image
of the disappear-early range, a colour change frame from a range symmetric about the middle,
left/right and up/down equally likely), and half of the scenes are finally played backwards, so
a video and its reversal are exactly equally likely. That is what makes the order-blind ceilings
in the dataset card exact: from an unordered bag of frames a model cannot tell a video from its
reversal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from videovlm.data.synthetic.vocabulary import COLOR_NAMES, MOTIONS, REVERSED_MOTION, SHAPES

Point = tuple[float, float]


@dataclass(frozen=True)
class ObjectTrack:
    """One object of a video.

    Frames are 0-based. ``appear_frame`` is the first visible frame of an object that appears
    late (None: visible from frame 0); ``disappear_frame`` is the first frame where an object
    that disappears early is gone (None: visible to the end); ``change_frame`` is the first
    frame drawn in ``color_after`` (None: no colour change). ``positions[t]`` is the centre
    ``(x, y)`` in pixels (x to the right, y down) or None while the object is absent.
    ``size`` is the side of the object's bounding box in pixels.
    """

    shape: str
    color: str
    color_after: str | None
    motion: str
    size: int
    appear_frame: int | None
    disappear_frame: int | None
    change_frame: int | None
    positions: tuple[Point | None, ...]

    def visible(self, frame: int) -> bool:
        return self.positions[frame] is not None

    def color_at(self, frame: int) -> str:
        if self.change_frame is not None and frame >= self.change_frame:
            return self.color_after  # type: ignore[return-value]
        return self.color

    @property
    def first_visible(self) -> int:
        return self.appear_frame or 0

    @property
    def last_visible(self) -> int:
        return (self.disappear_frame if self.disappear_frame is not None else len(self.positions)) - 1

    @property
    def colors(self) -> tuple[str, ...]:
        return (self.color,) if self.color_after is None else (self.color, self.color_after)


@dataclass(frozen=True)
class VideoAnnotation:
    """Ground truth of one video (one line of ``annotations.jsonl``)."""

    video_id: str
    video: str  # path of the mp4 relative to the split folder
    num_frames: int
    fps: float
    width: int
    height: int
    objects: tuple[ObjectTrack, ...]

    def to_json(self) -> dict:
        record = asdict(self)
        for obj in record["objects"]:
            obj["positions"] = [None if p is None else [p[0], p[1]] for p in obj["positions"]]
        return record

    @classmethod
    def from_json(cls, record: dict) -> VideoAnnotation:
        objects = tuple(
            ObjectTrack(**{**obj, "positions": tuple(None if p is None else (float(p[0]), float(p[1])) for p in obj["positions"])})
            for obj in record["objects"]
        )
        return cls(**{**record, "objects": objects})

    def object(self, shape: str) -> ObjectTrack:
        """The object with this shape (shapes are unique within a video)."""
        for obj in self.objects:
            if obj.shape == shape:
                return obj
        raise KeyError(f"{self.video_id}: no {shape} in this video")


def reverse_annotation(ann: VideoAnnotation) -> VideoAnnotation:
    """The ground truth of the same frames played in reverse order."""
    n = ann.num_frames
    objects = []
    for obj in ann.objects:
        changed = obj.change_frame is not None
        objects.append(
            replace(
                obj,
                color=obj.color_after if changed else obj.color,
                color_after=obj.color if changed else None,
                change_frame=n - obj.change_frame if changed else None,
                # Last visible frame d-1 becomes frame n-1-(d-1) = n-d, and vice versa.
                appear_frame=None if obj.disappear_frame is None else n - obj.disappear_frame,
                disappear_frame=None if obj.appear_frame is None else n - obj.appear_frame,
                motion=REVERSED_MOTION[obj.motion],
                positions=tuple(reversed(obj.positions)),
            )
        )
    return replace(ann, objects=tuple(objects))


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of the scene sampler (defaults tuned for 112 px, 16 frames).

    Sizes and travel are fractions of the frame side so that other ``--size`` values keep the
    same look.
    """

    min_size_frac: float = 18 / 112  # object bounding box side, min (18 px at 112)
    max_size_frac: float = 26 / 112  # and max (26 px at 112)
    min_travel_frac: float = 44 / 112  # distance travelled by a moving object while visible
    max_travel_frac: float = 56 / 112
    event_probs: tuple[float, float, float, float] = (0.35, 0.2, 0.2, 0.25)  # none, appear, disappear, change
    order_pair_prob: float = 0.5  # with 2+ objects: force one disappear-early + one appear-late object
    gap_px: int = 3  # minimum free space between two visible objects' bounding circles
    max_tries: int = 200
    min_objects: int = 1  # objects per scene, drawn uniformly from [min_objects, max_objects]
    max_objects: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= len(SHAPES):
            raise ValueError(
                f"SceneConfig: need 1 <= min_objects <= max_objects <= {len(SHAPES)} (shapes are distinct), "
                f"got min_objects={self.min_objects}, max_objects={self.max_objects}"
            )


def event_ranges(num_frames: int) -> tuple[range, range]:
    """Frames an object may appear at, and frames a colour may change at.

    Kept away from the first and last frames so that an 8-frame uniform sample sees the event;
    both ranges are mirror images of themselves / of the disappear range under ``t -> T - t``.
    """
    margin = max(1, (3 * num_frames) // 16)
    appear = range(margin, max(margin + 1, num_frames // 2))
    change = range(margin + 1, num_frames - margin)
    return appear, change


def sample_scene(rng: np.random.Generator, *, video_id: str, size: int, num_frames: int, fps: float, config: SceneConfig = SceneConfig()) -> VideoAnnotation:
    """Draw one video's ground truth: 1-3 objects (``config``) with distinct shapes and distinct colours."""
    appear_range, change_range = event_ranges(num_frames)
    for _ in range(config.max_tries):
        count = int(rng.integers(config.min_objects, config.max_objects + 1))
        shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))[:count]]
        events = [str(e) for e in rng.choice(["none", "appear", "disappear", "change"], size=count, p=config.event_probs)]
        if count >= 2 and rng.random() < config.order_pair_prob:
            events[0], events[1] = "disappear", "appear"
        palette = [COLOR_NAMES[i] for i in rng.permutation(len(COLOR_NAMES))]
        objects: list[ObjectTrack] = []
        for shape, event in zip(shapes, events):
            obj = _place_object(rng, shape=shape, event=event, palette=palette, others=objects, size=size, num_frames=num_frames, appear_range=appear_range, change_range=change_range, config=config)
            if obj is None:
                break
            objects.append(obj)
        else:
            ann = VideoAnnotation(video_id=video_id, video=f"videos/{video_id}.mp4", num_frames=num_frames, fps=float(fps), width=size, height=size, objects=tuple(objects))
            # Playing half of the scenes backwards makes P(video) = P(reversed video) exactly,
            # whatever asymmetry the sequential placement above has (e.g. the forced pair).
            return reverse_annotation(ann) if rng.random() < 0.5 else ann
    raise RuntimeError(f"{video_id}: could not place non-overlapping objects in {config.max_tries} tries (size {size} px too small?)")


def _place_object(rng, *, shape, event, palette, others, size, num_frames, appear_range, change_range, config) -> ObjectTrack | None:
    color = palette.pop()
    color_after = palette.pop() if event == "change" else None
    appear = int(rng.choice(appear_range)) if event == "appear" else None
    disappear = num_frames - int(rng.choice(appear_range)) if event == "disappear" else None
    change = int(rng.choice(change_range)) if event == "change" else None
    first, last = appear or 0, (disappear if disappear is not None else num_frames) - 1
    motion = str(rng.choice(MOTIONS))
    obj_size = int(rng.integers(round(config.min_size_frac * size), round(config.max_size_frac * size) + 1))
    half = obj_size / 2
    travel = float(rng.uniform(config.min_travel_frac, config.max_travel_frac) * size) if motion != "still" else 0.0
    dx, dy = {"left": (-travel, 0.0), "right": (travel, 0.0), "up": (0.0, -travel), "down": (0.0, travel), "still": (0.0, 0.0)}[motion]
    for _ in range(config.max_tries):
        # Start anywhere that keeps the whole path inside the frame.
        x0 = float(rng.uniform(half + max(0.0, -dx), size - half - max(0.0, dx)))
        y0 = float(rng.uniform(half + max(0.0, -dy), size - half - max(0.0, dy)))
        span = max(1, last - first)
        positions = tuple(
            (round(x0 + dx * (t - first) / span, 2), round(y0 + dy * (t - first) / span, 2)) if first <= t <= last else None
            for t in range(num_frames)
        )
        if all(_apart(positions, obj_size, other, config.gap_px) for other in others):
            return ObjectTrack(shape=shape, color=color, color_after=color_after, motion=motion, size=obj_size, appear_frame=appear, disappear_frame=disappear, change_frame=change, positions=positions)
    return None


def _apart(positions, obj_size: int, other: ObjectTrack, gap_px: int) -> bool:
    """True when the two objects' bounding circles never touch in a frame where both are visible."""
    min_dist = (obj_size + other.size) / math.sqrt(2) + gap_px
    for p, q in zip(positions, other.positions):
        if p is not None and q is not None and math.hypot(p[0] - q[0], p[1] - q[1]) < min_dist:
            return False
    return True
