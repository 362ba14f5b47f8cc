"""Multiple-choice video QA (MVBench / Video-MME / NExT-QA style): reading, prompting, parsing.

A data file is a JSON list of items with ``video_id`` (or ``videoID``), ``video`` (optional,
as in ``qa.json``), ``question``, the options as ``candidates`` (MVBench: a list of answer
texts) or ``options`` (Video-MME: ``["A. text", ...]`` or plain texts), the ``answer`` as the
correct option's text or its letter, optional ``type`` / ``task_type``, and optional ``start``
/ ``end`` seconds (the part of the video the question is about: the sampler window).

The prompt lists the options as ``(A) text``; a generated answer is mapped back to an option
by ``parse_choice``: the option's letter on its own (``A``, ``(A)``, ``A.``, ``A)``), or the
option's full text. A letter that is not an option, a bare bracket, or text that matches two
options is no answer (wrong), never a lucky match.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from videovlm.data.formats import DataFormatError, _items, _resolve, _root, _text, _video_id

LETTERS = "ABCDEFGHIJ"
_LETTER_PREFIX = re.compile(r"^\s*\(?([A-J])[\).:]?(?:\s+|$)")


@dataclass(frozen=True)
class MCQItem:
    """One multiple-choice question. ``answer``: index into ``options``."""

    video_id: str
    video: Path
    question: str
    options: tuple[str, ...]
    answer: int
    type: str = "all"
    start: float | None = None
    end: float | None = None

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]


def _options(path: Path, where: str, item: dict) -> tuple[str, ...]:
    field = "candidates" if "candidates" in item else "options"
    raw = item.get(field)
    if not isinstance(raw, list) or not 2 <= len(raw) <= len(LETTERS) or not all(isinstance(o, str) and o.strip() for o in raw):
        raise DataFormatError(path, where, field, f"expected a list of 2 to {len(LETTERS)} non-empty option texts, got {raw!r}")
    # Video-MME writes "A. text": drop the letters when every option carries its own, in order.
    prefixed = [re.match(rf"^\s*\(?{LETTERS[i]}[\).:]\s*(.*)$", o) for i, o in enumerate(raw)]
    options = tuple(m.group(1).strip() for m in prefixed) if all(prefixed) else tuple(o.strip() for o in raw)
    if len(set(o.lower() for o in options)) != len(options):
        raise DataFormatError(path, where, field, f"two options are the same text: {list(options)}")
    return options


def _answer(path: Path, where: str, item: dict, options: tuple[str, ...]) -> int:
    answer = _text(path, where, item, "answer").strip()
    lowered = [o.lower() for o in options]
    if answer.lower() in lowered:
        return lowered.index(answer.lower())
    letter = re.fullmatch(r"\(?([A-J])[\).]?", answer)
    if letter and LETTERS.index(letter.group(1)) < len(options):
        return LETTERS.index(letter.group(1))
    raise DataFormatError(path, where, "answer", f"{answer!r} is neither an option's text nor the letter of one ({LETTERS[: len(options)]})")


def _seconds(path: Path, where: str, item: dict, field: str) -> float | None:
    value = item.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise DataFormatError(path, where, field, f"expected seconds >= 0, got {value!r}")
    return float(value)


def read_mcq_json(path: str | Path, *, media_root: str | Path | None = None, check_files: bool = True) -> list[MCQItem]:
    """The items of a multiple-choice file (see the module doc); a ``DataFormatError`` names
    the item and field of the first bad one."""
    path = Path(path)
    root = _root(path, media_root)
    items = []
    for where, item in _items(path):
        if "videoID" in item and "video_id" not in item:
            item = {**item, "video_id": item["videoID"]}
        video_id = _video_id(path, where, item)
        question = _text(path, where, item, "question")
        options = _options(path, where, item)
        answer = _answer(path, where, item, options)
        video_field = _text(path, where, item, "video", required=False)
        video = _resolve(path, where, "video" if video_field else "video_id", video_field or f"{video_id}.mp4", root, check_files)
        kind = _text(path, where, item, "type", required=False) or _text(path, where, item, "task_type", required=False) or "all"
        start, end = _seconds(path, where, item, "start"), _seconds(path, where, item, "end")
        if start is not None and end is not None and end <= start:
            raise DataFormatError(path, where, "end", f"{end} is not after start {start}")
        items.append(MCQItem(video_id, video, question, options, answer, kind, start, end))
    return items


def mcq_prompt(item: MCQItem) -> str:
    """The question followed by the options, one per line as ``(A) text``."""
    lines = [item.question, *(f"({LETTERS[i]}) {option}" for i, option in enumerate(item.options))]
    return "\n".join(lines) + "\nanswer with the option's letter."


def parse_choice(generation: str, options: Sequence[str]) -> int | None:
    """The option a generated answer names (see the module doc), else None."""
    text = generation.strip()
    match = _LETTER_PREFIX.match(text)
    if match:
        index = LETTERS.index(match.group(1))
        return index if index < len(options) else None
    lowered = text.lower().rstrip(".")
    exact = [i for i, o in enumerate(options) if o.lower() == lowered]
    if len(exact) == 1:
        return exact[0]
    contained = [i for i, o in enumerate(options) if re.search(rf"\b{re.escape(o.lower())}\b", lowered)]
    return contained[0] if len(contained) == 1 else None


def synthetic_mcq(qa_json: str | Path, *, num_options: int = 4, seed: int = 0) -> list[dict]:
    """An MCQ split from a synthetic ``qa.json``: each question with ``num_options`` options,
    the answer and distractors drawn from the answers its type has in the file (seeded)."""
    from videovlm.data.formats import read_qa_json

    records = read_qa_json(qa_json, check_files=False)
    by_type: dict[str, set[str]] = defaultdict(set)
    for r in records:
        by_type[r.type].add(r.answer)
    rng = random.Random(seed)
    items = []
    for r in records:
        others = sorted(by_type[r.type] - {r.answer})
        if not others:
            continue  # a type with one answer has no distractors
        options = [r.answer, *rng.sample(others, min(num_options - 1, len(others)))]
        rng.shuffle(options)
        video = str(r.video.relative_to(Path(qa_json).parent)) if r.video.is_relative_to(Path(qa_json).parent) else str(r.video)
        items.append({"video_id": r.video_id, "video": video, "question": r.question, "candidates": options, "answer": r.answer, "type": r.type})
    return items


def write_synthetic_mcq(split_dir: str | Path, *, num_options: int = 4, seed: int = 0) -> Path:
    """``split_dir/mcq.json`` from ``split_dir/qa.json`` (``synthetic_mcq``)."""
    split_dir = Path(split_dir)
    out = split_dir / "mcq.json"
    out.write_text(json.dumps(synthetic_mcq(split_dir / "qa.json", num_options=num_options, seed=seed), indent=1) + "\n")
    return out
