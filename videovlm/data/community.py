"""Readers for data sets users have, beyond the formats of ``videovlm.data.formats``:

- **VideoInstruct-100K** (Video-ChatGPT): a JSON list of ``{"video_id", "q", "a"}``; the video
  is ``<media_root>/<video_id>.{mp4,mkv,webm}``. Each item is a one-turn conversation.
- **ActivityNet-QA**: questions and answers in two files, ``<split>_q.json``
  (``video_name, question, question_id``) and ``<split>_a.json`` (``answer, type,
  question_id``), joined by ``question_id``; the video is ``v_<video_name>`` or
  ``<video_name>`` with one of the extensions above. Types are the data set's numbers, named.
- **Mixtures** as LLaVA-Video-178K / LLaVA-NeXT ship them: a YAML (or JSON) with ``datasets:``,
  each entry a ``json_path`` (an instructions file), an optional ``sampling_strategy``
  (``all``, ``first:N%`` / ``end:N%`` / ``random:N%``, or ``first:N`` items) and an optional
  ``video_folder`` (where that file's relative media paths live).

Every bad item is a ``DataFormatError`` naming file, item and field.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import yaml

from videovlm.data.formats import (
    Conversation,
    DataFormatError,
    MissingMediaError,
    Turn,
    VideoQA,
    _items,
    _root,
    _text,
    read_instructions_json,
)
from videovlm.paths import file_problem

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm")
# ActivityNet-QA's type numbers (dataset/README.md of MILVLG/activitynet-qa).
ACTIVITYNET_QA_TYPES = ("motion", "spatial", "temporal", "yes_no", "color", "object", "location", "number", "other")


def _find_video(path: Path, where: str, field: str, root: Path, stems: tuple[str, ...], check_files: bool) -> Path:
    """The first existing ``root/<stem><ext>``; without one, the first candidate (or, with
    ``check_files``, a MissingMediaError naming it)."""
    candidates = [root / f"{stem}{ext}" for stem in stems for ext in VIDEO_EXTENSIONS]
    for candidate in candidates:
        if file_problem(candidate) is None:
            return candidate
    if check_files:
        raise MissingMediaError(path, where, field, candidates[0])
    return candidates[0]


def read_videoinstruct_json(path: str | Path, *, media_root: str | Path | None = None, check_files: bool = True) -> list[Conversation]:
    """VideoInstruct-100K: one ``<video>`` question and its answer per item."""
    path = Path(path)
    root = _root(path, media_root)
    records = []
    for number, (where, item) in enumerate(_items(path)):
        video_id = _text(path, where, item, "video_id")
        question, answer = _text(path, where, item, "q"), _text(path, where, item, "a")
        video = _find_video(path, where, "video_id", root, (video_id,), check_files)
        turns = (Turn("human", f"<video>\n{question}"), Turn("gpt", answer))
        records.append(Conversation(id=f"{video_id}_{number}", media=video, media_kind="video", turns=turns))
    return records


def _answers_path(questions: Path) -> Path:
    if not questions.name.endswith("_q.json"):
        raise DataFormatError(questions, None, None, "expected an ActivityNet-QA questions file named <split>_q.json (or give answers=)")
    return questions.with_name(questions.name[: -len("_q.json")] + "_a.json")


def read_activitynet_qa(
    path: str | Path, *, answers: str | Path | None = None, media_root: str | Path | None = None, check_files: bool = True
) -> list[VideoQA]:
    """ActivityNet-QA's split files (``path`` is ``<split>_q.json``; ``answers`` defaults to
    the ``_a.json`` beside it), joined by ``question_id``."""
    path = Path(path)
    answers_path = Path(answers) if answers is not None else _answers_path(path)
    root = _root(path, media_root)
    by_id: dict[str, tuple[str, str]] = {}
    for where, item in _items(answers_path):
        qid = _text(answers_path, where, item, "question_id")
        kind = item.get("type")
        if isinstance(kind, bool) or not isinstance(kind, int) or not 0 <= kind < len(ACTIVITYNET_QA_TYPES):
            raise DataFormatError(answers_path, where, "type", f"expected an integer 0-{len(ACTIVITYNET_QA_TYPES) - 1}, got {kind!r}")
        by_id[qid] = (_text(answers_path, where, item, "answer"), ACTIVITYNET_QA_TYPES[kind])
    records = []
    for where, item in _items(path):
        qid = _text(path, where, item, "question_id")
        if qid not in by_id:
            raise DataFormatError(path, where, "question_id", f"{qid!r} has no answer in {answers_path}")
        name = _text(path, where, item, "video_name")
        stems = (name, f"v_{name}") if name.startswith("v_") else (f"v_{name}", name)
        video = _find_video(path, where, "video_name", root, stems, check_files)
        answer, kind = by_id[qid]
        records.append(VideoQA(video_id=name, video=video, question=_text(path, where, item, "question"), answer=answer, type=kind))
    return records


def _sampled(records: list, strategy: str, *, path: Path, where: str, seed: int) -> list:
    if strategy == "all":
        return records
    match = re.fullmatch(r"(first|end|random):(\d+(?:\.\d+)?)(%?)", strategy)
    if not match:
        raise DataFormatError(path, where, "sampling_strategy", f"expected all, first:N%, end:N%, random:N% or first:N, got {strategy!r}")
    how, amount, percent = match.group(1), float(match.group(2)), match.group(3) == "%"
    count = min(len(records), round(len(records) * amount / 100) if percent else int(amount))
    if how == "first":
        return records[:count]
    if how == "end":
        return records[len(records) - count :]
    return random.Random(seed).sample(records, count)


def read_mixture(path: str | Path, *, media_root: str | Path | None = None, check_files: bool = True, seed: int = 0) -> list[Conversation]:
    """The conversations of every file a mixture YAML/JSON lists, each sampled by its strategy
    (``random:`` drawn with ``seed``), in the listed order."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DataFormatError(path, None, None, f"not a readable YAML/JSON mixture ({type(e).__name__}: {e})") from None
    entries = data.get("datasets") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DataFormatError(path, None, "datasets", "expected a non-empty list of {json_path, sampling_strategy}")
    records: list[Conversation] = []
    for number, entry in enumerate(entries, start=1):
        where = f"datasets[{number - 1}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("json_path"), str):
            raise DataFormatError(path, where, "json_path", "expected an entry with a string json_path")
        file = Path(entry["json_path"])
        file = file if file.is_absolute() else path.parent / file
        folder = entry.get("video_folder")
        folder = media_root if folder is None else (Path(folder) if Path(folder).is_absolute() else path.parent / folder)
        part = read_instructions_json(file, media_root=folder, check_files=check_files)
        records += _sampled(part, str(entry.get("sampling_strategy", "all")), path=path, where=where, seed=seed + number)
    return records
