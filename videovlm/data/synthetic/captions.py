"""Captions, instruction conversations and single-frame image captions from the ground truth.

Captions narrate events in time order ("a red circle moves to the left, then a blue square
appears"), with several sentence templates and verb paraphrases so that models see some
variety; everything is lower case from a small closed vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videovlm.data.synthetic.questions import QAItem
from videovlm.data.synthetic.scene import ObjectTrack, VideoAnnotation
from videovlm.data.synthetic.vocabulary import with_articles

MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("moves to the left", "moves left", "goes left"),
    "right": ("moves to the right", "moves right", "goes right"),
    "up": ("moves up", "goes up", "rises"),
    "down": ("moves down", "goes down", "falls"),
    "still": ("stays still", "does not move", "stays in place"),
}
APPEAR_VERBS = ("appears", "shows up")
DISAPPEAR_VERBS = ("disappears", "vanishes")
CHANGE_PHRASES = ("turns {color}", "changes to {color}", "becomes {color}")

# How the opening clause and the later events are joined into one caption.
CAPTION_TEMPLATES: tuple[tuple[str, str, str], ...] = (
    # (opening, joiner between events, closing); events are prefixed by the joiner.
    ("{start}", ", then ", "."),
    ("first {start}", ". after that ", "."),
    ("in this video {start}", ", and later ", "."),
)
DESCRIBE_PROMPTS = ("describe the video.", "what happens in this video?", "give a short description of the clip.")
IMAGE_CAPTION_TEMPLATES = ("{objects}.", "a picture of {objects}.", "{objects} on a light background.")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def make_caption(rng: np.random.Generator, ann: VideoAnnotation) -> str:
    """One caption narrating the video in time order."""
    start = [f"a {o.color} {o.shape} {_pick(rng, MOTION_PHRASES[o.motion])}" for o in ann.objects if o.visible(0)]
    events: list[tuple[int, int, str]] = []  # (frame, object index, phrase): sorted = time order
    for i, o in enumerate(ann.objects):
        if o.appear_frame is not None:
            events.append((o.appear_frame, i, f"a {o.color} {o.shape} {_pick(rng, APPEAR_VERBS)} and {_pick(rng, MOTION_PHRASES[o.motion])}"))
        if o.change_frame is not None:
            events.append((o.change_frame, i, f"the {o.shape} {_pick(rng, CHANGE_PHRASES).format(color=o.color_after)}"))
        if o.disappear_frame is not None:
            events.append((o.disappear_frame, i, f"the {o.shape} {_pick(rng, DISAPPEAR_VERBS)}"))
    opening, joiner, closing = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    text = opening.format(start=_join(start) if start else "the scene is empty")
    for _, _, phrase in sorted(events):
        text += joiner + phrase
    return with_articles(text + closing)


@dataclass(frozen=True)
class Turn:
    human: str
    gpt: str


def make_conversation(rng: np.random.Generator, caption: str, qa_items: list[QAItem]) -> list[Turn]:
    """1-3 turns mixing a description request and the video's questions (no repeats)."""
    num_turns = int(rng.integers(1, 4))
    remaining = list(range(len(qa_items)))
    described = False
    turns = []
    for _ in range(num_turns):
        if (not described and rng.random() < 0.4) or not remaining:
            if described:
                break
            described = True
            turns.append(Turn(_pick(rng, DESCRIBE_PROMPTS), caption))
        else:
            item = qa_items[remaining.pop(int(rng.integers(len(remaining))))]
            turns.append(Turn(item.question, item.answer))
    return turns


def visible_objects(ann: VideoAnnotation, frame: int) -> list[ObjectTrack]:
    return [o for o in ann.objects if o.visible(frame)]


def pick_image_frame(rng: np.random.Generator, ann: VideoAnnotation) -> int:
    """A frame showing at least one object (every video has one: objects are visible >= half the frames)."""
    frames = [t for t in range(ann.num_frames) if visible_objects(ann, t)]
    return frames[int(rng.integers(len(frames)))]


def make_image_caption(rng: np.random.Generator, ann: VideoAnnotation, frame: int) -> str:
    """Caption of one frame: the objects it shows, with their colour at that frame."""
    objects = _join([f"a {o.color_at(frame)} {o.shape}" for o in visible_objects(ann, frame)])
    return with_articles(_pick(rng, IMAGE_CAPTION_TEMPLATES).format(objects=objects))
