"""CHAIR object-hallucination rates of captions (Rohrbach et al., 2018).

A caption *mentions* an object when one of the object's phrases appears in it; a mention is
*hallucinated* when the object is not in the video's ground-truth object list.

- CHAIR-i = hallucinated objects / mentioned objects (distinct objects per caption, summed)
- CHAIR-s = captions with at least one hallucinated object / captions

The functions take plain lists so they work for any data set with object annotations; the
adapter `synthetic_ground_truth` turns a synthetic-data annotation into such a list. For the
synthetic data two granularities are useful: shapes only ("circle"), and colour + shape
("red circle", where a wrong colour on a real shape counts as a hallucination).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from videovlm.data.synthetic.vocabulary import COLOR_NAMES, SHAPES
from videovlm.eval.normalize import caption_tokens


@dataclass(frozen=True)
class ObjectVocabulary:
    """phrases: token tuple -> canonical object name, e.g. ("red", "circles") -> "red circle"."""

    phrases: dict[tuple[str, ...], str]

    def mentions(self, caption: str) -> set[str]:
        """Canonical objects mentioned in `caption`, matching the longest phrase first."""
        tokens = caption_tokens(caption)
        longest = max((len(p) for p in self.phrases), default=0)
        found: set[str] = set()
        position = 0
        while position < len(tokens):
            for size in range(min(longest, len(tokens) - position), 0, -1):
                canonical = self.phrases.get(tuple(tokens[position : position + size]))
                if canonical is not None:
                    found.add(canonical)
                    position += size
                    break
            else:
                position += 1
        return found


def synthetic_object_vocabulary(*, with_colors: bool) -> ObjectVocabulary:
    """Shapes (singular and plural); with `with_colors`, also "<colour> <shape>" phrases."""
    phrases: dict[tuple[str, ...], str] = {}
    for shape in SHAPES:
        for form in (shape, shape + "s"):
            phrases[(form,)] = shape
            if with_colors:
                for color in COLOR_NAMES:
                    phrases[(color, form)] = f"{color} {shape}"
    return ObjectVocabulary(phrases=phrases)


def synthetic_ground_truth(annotation: Mapping, *, with_colors: bool) -> set[str]:
    """Ground-truth objects of one synthetic annotation (``annotations.jsonl`` line).

    Reads ``objects[i]["shape"]``, ``objects[i]["color"]`` and, when the object changes colour,
    ``objects[i]["color_after"]``: both colours are real, so both are accepted.
    """
    video_id = annotation.get("video_id", "?")
    objects = annotation.get("objects")
    if not isinstance(objects, (list, tuple)):
        raise ValueError(f"annotation {video_id!r}: field 'objects' must be a list")
    truth: set[str] = set()
    for index, obj in enumerate(objects):
        for field in ("shape", "color"):
            if field not in obj:
                raise ValueError(f"annotation {video_id!r}: objects[{index}] has no field {field!r}")
        truth.add(obj["shape"])
        if with_colors:
            for color in (obj["color"], obj.get("color_after")):
                if color:
                    truth.add(f"{color} {obj['shape']}")
    return truth


@dataclass(frozen=True)
class ChairScore:
    """chair_i, chair_s as fractions; the counts they come from."""

    chair_i: float
    chair_s: float
    mentioned: int
    hallucinated: int
    captions: int
    captions_hallucinating: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def chair(
    *, captions: Sequence[str], ground_truth: Sequence[Iterable[str]], vocabulary: ObjectVocabulary
) -> ChairScore:
    """CHAIR-i and CHAIR-s of `captions` against per-caption ground-truth object names."""
    if len(captions) != len(ground_truth):
        raise ValueError(f"{len(captions)} captions but {len(ground_truth)} ground-truth object lists")
    if not captions:
        raise ValueError("no captions to score")
    mentioned = hallucinated = hallucinating = 0
    for caption, truth in zip(captions, ground_truth):
        objects = vocabulary.mentions(caption)
        wrong = objects - set(truth)
        mentioned += len(objects)
        hallucinated += len(wrong)
        hallucinating += bool(wrong)
    return ChairScore(
        chair_i=hallucinated / mentioned if mentioned else 0.0,
        chair_s=hallucinating / len(captions),
        mentioned=mentioned,
        hallucinated=hallucinated,
        captions=len(captions),
        captions_hallucinating=hallucinating,
    )
