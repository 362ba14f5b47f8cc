"""The closed vocabulary of the synthetic data set: shapes, colours, motions, question types, answers.

Kept tiny and regular on purpose: tiny models trained on CPU in minutes must be able to learn
the language, so that what the recipes measure is the visual (and temporal) encoder.
"""

from __future__ import annotations

import re

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

# Saturated colours far apart in RGB so that they survive h264's 4:2:0 chroma subsampling and
# a light, low-saturation background; the names are the answers.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "green": (20, 160, 40),
    "blue": (30, 60, 230),
    "yellow": (240, 215, 0),
    "purple": (140, 30, 180),
    "orange": (255, 130, 0),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still")
# What each motion becomes when the frames are played backwards.
REVERSED_MOTION: dict[str, str] = {"left": "right", "right": "left", "up": "down", "down": "up", "still": "still"}

NUMBER_WORDS: tuple[str, ...] = ("one", "two", "three")

STATIC_QUESTION_TYPES: tuple[str, ...] = ("color", "shape", "count", "exists")
# Answerable only from the order of the frames: the reversed video has another answer.
TEMPORAL_QUESTION_TYPES: tuple[str, ...] = ("direction", "order", "change")
QUESTION_TYPES: tuple[str, ...] = STATIC_QUESTION_TYPES + TEMPORAL_QUESTION_TYPES

# Every answer any QA item can have, per question type.
ANSWERS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "color": COLOR_NAMES,
    "shape": SHAPES,
    "count": NUMBER_WORDS,
    "exists": ("yes", "no"),
    "direction": ("left", "right", "up", "down"),
    "order": SHAPES,
    "change": COLOR_NAMES,
}
ANSWER_VOCABULARY: tuple[str, ...] = tuple(sorted({a for answers in ANSWERS_BY_TYPE.values() for a in answers}))


def with_articles(text: str) -> str:
    """English article before a vowel: "a orange star" -> "an orange star"."""
    return re.sub(r"\ba (?=[aeiou])", "an ", text)
