"""Questions about a synthetic video, and their answers computed from the ground truth.

A question is built from a structured ``Query``; ``parse_question`` recovers the query from the
text (every template is an unambiguous pattern), and ``answer_query`` computes the answer on any
annotation, e.g. on ``reverse_annotation(ann)`` to check that temporal answers flip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from videovlm.data.synthetic.scene import ObjectTrack, VideoAnnotation
from videovlm.data.synthetic.vocabulary import COLOR_NAMES, NUMBER_WORDS, SHAPES, with_articles


@dataclass(frozen=True)
class Query:
    """What a question asks. ``variant`` picks the sub-kind: order ``first``/``last``, change
    ``after``/``before``; ``shape``/``color`` name the object asked about, ``other`` the second
    object of an order question."""

    type: str
    variant: str = ""
    shape: str = ""
    color: str = ""
    other: str = ""


@dataclass(frozen=True)
class QAItem:
    type: str
    question: str
    answer: str
    query: Query


# (type, variant) -> paraphrases. Placeholders: {shape} {color} {a} {b}.
QUESTION_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("color", ""): ("what colour is the {shape}?", "what is the colour of the {shape}?", "which colour does the {shape} have?"),
    ("shape", ""): ("what shape is the {color} object?", "what is the shape of the {color} object?", "which shape is {color}?"),
    ("count", ""): ("how many objects are in the video?", "how many shapes can you see?", "how many objects does the video show?"),
    ("exists", ""): ("is there a {color} {shape} in the video?", "does a {color} {shape} appear?", "can you see a {color} {shape}?"),
    ("direction", ""): ("which way does the {shape} move?", "in which direction does the {shape} go?", "where does the {shape} move to?"),
    ("order", "first"): ("which object is seen first, the {a} or the {b}?", "which shows up first, the {a} or the {b}?"),
    ("order", "last"): ("which object is seen last, the {a} or the {b}?", "which is visible until later, the {a} or the {b}?"),
    ("change", "after"): ("what colour does the {shape} turn into?", "what colour does the {shape} change to?"),
    ("change", "before"): ("what colour was the {shape} before it changed?", "what colour is the {shape} at first?"),
}


class UnanswerableQuestion(ValueError):
    """The query has no single answer on this annotation (e.g. asks about a missing object)."""


def answer_query(ann: VideoAnnotation, query: Query) -> str:
    """The answer to ``query`` on ``ann`` (any annotation, including a reversed one)."""
    kind = query.type
    if kind == "count":
        return NUMBER_WORDS[len(ann.objects) - 1]
    if kind == "exists":
        return "yes" if any(o.shape == query.shape and query.color in o.colors for o in ann.objects) else "no"
    if kind == "shape":
        matches = [o for o in ann.objects if o.colors == (query.color,)]
        if len(matches) != 1:
            raise UnanswerableQuestion(f"{ann.video_id}: no single object that is always {query.color}")
        return matches[0].shape
    obj = _object(ann, query.shape)
    if kind == "color":
        if obj.color_after is not None:
            raise UnanswerableQuestion(f"{ann.video_id}: the {obj.shape} changes colour")
        return obj.color
    if kind == "direction":
        return obj.motion
    if kind == "change":
        if obj.color_after is None:
            raise UnanswerableQuestion(f"{ann.video_id}: the {obj.shape} does not change colour")
        return obj.color_after if query.variant == "after" else obj.color
    if kind == "order":
        other = _object(ann, query.other)
        key = (lambda o: o.first_visible) if query.variant == "first" else (lambda o: -o.last_visible)
        if key(obj) == key(other):
            raise UnanswerableQuestion(f"{ann.video_id}: the {obj.shape} and the {other.shape} tie")
        return obj.shape if key(obj) < key(other) else other.shape
    raise ValueError(f"unknown question type {kind!r}")


def _object(ann: VideoAnnotation, shape: str) -> ObjectTrack:
    try:
        return ann.object(shape)
    except KeyError as e:
        raise UnanswerableQuestion(str(e.args[0])) from None


def order_pairs(ann: VideoAnnotation) -> list[tuple[ObjectTrack, ObjectTrack]]:
    """Pairs whose visibility intervals are strictly ordered at both ends.

    Only these give an order question whose answer flips under reversal: with ``a`` seen
    first and gone first, the reversed video shows ``b`` first and ``b`` gone first.
    """
    pairs = []
    for i, a in enumerate(ann.objects):
        for b in ann.objects[i + 1 :]:
            starts, ends = a.first_visible - b.first_visible, a.last_visible - b.last_visible
            if starts * ends > 0:
                pairs.append((a, b))
    return pairs


def make_question(rng: np.random.Generator, ann: VideoAnnotation, query: Query) -> QAItem:
    templates = QUESTION_TEMPLATES[(query.type, query.variant)]
    text = with_articles(templates[int(rng.integers(len(templates)))].format(shape=query.shape, color=query.color, a=query.shape, b=query.other))
    return QAItem(type=query.type, question=text, answer=answer_query(ann, query), query=query)


def sample_questions(rng: np.random.Generator, ann: VideoAnnotation) -> list[QAItem]:
    """The QA items of one video; answers are balanced within each type over a split."""
    queries: list[Query] = []
    steady = [o for o in ann.objects if o.color_after is None]
    if steady:
        queries.append(Query("color", shape=steady[int(rng.integers(len(steady)))].shape))
        queries.append(Query("shape", color=steady[int(rng.integers(len(steady)))].color))
    queries.append(Query("count"))
    # POPE-style probes: one present object, one absent; half of the absent ones reuse a shape
    # that is in the video with a colour it never has (the hard negatives).
    present = sorted({(c, o.shape) for o in ann.objects for c in o.colors})
    color, shape = present[int(rng.integers(len(present)))]
    queries.append(Query("exists", color=color, shape=shape))
    queries.append(_absent_probe(rng, ann, set(present)))
    # Temporal questions come in both variants where they exist, so that a video teaches both
    # directions of time (turned into / was before; seen first / seen last).
    for obj in ann.objects:
        if obj.motion != "still":
            queries.append(Query("direction", shape=obj.shape))
        if obj.color_after is not None:
            queries += [Query("change", variant=variant, shape=obj.shape) for variant in ("after", "before")]
    for a, b in order_pairs(ann):
        for variant in ("first", "last"):
            if rng.random() < 0.5:  # which object is named first in the question
                a, b = b, a
            queries.append(Query("order", variant=variant, shape=a.shape, other=b.shape))
    return [make_question(rng, ann, q) for q in queries]


def _absent_probe(rng: np.random.Generator, ann: VideoAnnotation, present: set[tuple[str, str]]) -> Query:
    shapes_in_video = sorted({o.shape for o in ann.objects})
    if rng.random() < 0.5:
        candidates = [(c, s) for s in shapes_in_video for c in COLOR_NAMES if (c, s) not in present]
    else:
        candidates = [(c, s) for s in SHAPES if s not in shapes_in_video for c in COLOR_NAMES]
    color, shape = candidates[int(rng.integers(len(candidates)))]
    return Query("exists", color=color, shape=shape)


@lru_cache(maxsize=None)
def _patterns() -> list[tuple[re.Pattern, str, str]]:
    patterns = []
    for (kind, variant), templates in QUESTION_TEMPLATES.items():
        for template in templates:
            regex = re.escape(template)
            for name in ("shape", "color", "a", "b"):
                regex = regex.replace(re.escape("{" + name + "}"), f"(?P<{name}>[a-z]+)")
            patterns.append((re.compile(f"^{regex}$"), kind, variant))
    return patterns


def parse_question(text: str) -> Query:
    """The query behind a question of this data set (raises ValueError for any other text)."""
    normalised = re.sub(r"\ban\b", "a", text.strip().lower())  # undo with_articles
    for pattern, kind, variant in _patterns():
        match = pattern.match(normalised)
        if match:
            groups = match.groupdict()
            if kind == "order":
                return Query(kind, variant, shape=groups["a"], other=groups["b"])
            return Query(kind, variant, shape=groups.get("shape") or "", color=groups.get("color") or "")
    raise ValueError(f"not a question of the synthetic data set: {text!r}")
