"""Readers for the data set formats the community uses, returning small typed records.

The same readers load the synthetic data set and real files:

- WebVid captions CSV (``videoid,contentUrl,duration,page_dir,name``; the synthetic files add a
  ``video`` column with the relative path) -> ``VideoCaption``
- MSRVTT-QA / MSVD-QA JSON (a list of ``{"video_id", "question", "answer"}``, optional ``video``
  and ``type``) -> ``VideoQA``
- LLaVA / VideoChat instruction JSON (``{"id", "video"|"image", "conversations": [{"from",
  "value"}]}``, or VideoChat's ``{"video", "QA": [{"q", "a"}]}``) -> ``Conversation``
- LLaVA-CC595K / LCS-558K image captions (``{"id", "image", "caption"|"blip_caption"}``) ->
  ``ImageCaption``
- the synthetic ground truth ``annotations.jsonl`` -> ``VideoAnnotation``

Each reader is ``read_x(path, *, media_root=None, check_files=True) -> list[Record]``. Relative
media paths resolve against ``media_root`` (default: the folder of the file). Every problem
raises ``DataFormatError`` naming the file, the line or item, and the field.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from videovlm.data.synthetic.scene import VideoAnnotation
from videovlm.paths import NOT_FOUND, file_problem


class DataFormatError(ValueError):
    """A data file does not follow its format. ``where`` is ``line N`` or ``item N`` (1-based)."""

    def __init__(self, path: str | Path, where: str | None, field: str | None, reason: str):
        self.path, self.where, self.field, self.reason = str(path), where, field, reason
        location = ":".join(x for x in (self.path, where) if x)
        super().__init__(f"{location}: {'field ' + repr(field) + ': ' if field else ''}{reason}")


class MissingMediaError(DataFormatError):
    """A record names a video or image file that does not exist, or is not a file (a folder,
    a symlink loop...: ``problem`` says which); ``media`` is the resolved path."""

    def __init__(self, path: str | Path, where: str, field: str, media: Path, problem: str = NOT_FOUND):
        self.media = media
        super().__init__(path, where, field, f"{NOT_FOUND}: {media}" if problem == NOT_FOUND else f"{media}: {problem}")


@dataclass(frozen=True)
class VideoCaption:
    video_id: str
    video: Path
    caption: str
    duration: float | None  # seconds; None where the file gives none


@dataclass(frozen=True)
class VideoQA:
    video_id: str
    video: Path
    question: str
    answer: str
    type: str  # the file's "type"; files without one (MSRVTT-QA) get the question word ("what", "who", ...)


@dataclass(frozen=True)
class Turn:
    role: Literal["human", "gpt"]
    text: str  # as in the file, placeholders such as "<video>" included


@dataclass(frozen=True)
class Conversation:
    id: str
    media: Path
    media_kind: Literal["video", "image"]
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class ImageCaption:
    id: str
    image: Path
    caption: str


def _resolve(path: Path, where: str, field: str, value: str, media_root: Path, check_files: bool) -> Path:
    media = Path(value)
    media = media if media.is_absolute() else media_root / media
    problem = file_problem(media) if check_files else None
    if problem is not None:
        raise MissingMediaError(path, where, field, media, problem)
    return media


def _root(path: Path, media_root: str | Path | None) -> Path:
    return Path(media_root) if media_root is not None else path.parent


def _text(path: Path, where: str, record: dict, field: str, *, required: bool = True) -> str | None:
    if field not in record or record[field] is None:
        if required:
            raise DataFormatError(path, where, field, f"missing (keys present: {sorted(record)})")
        return None
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataFormatError(path, where, field, f"expected a string, got {type(value).__name__}")
    value = str(value)
    if required and not value.strip():
        raise DataFormatError(path, where, field, "empty")
    return value


def _require_file(path: Path) -> None:
    problem = file_problem(path)  # a folder or a symlink loop is named as such
    if problem is not None:
        raise DataFormatError(path, None, None, problem)


def _text_lines(path: Path) -> Iterator[str]:
    """A text file's lines, decoded one by one so that bad bytes are reported with their line
    number (a leading byte-order mark, as spreadsheet exports write, is dropped)."""
    _require_file(path)
    with path.open("rb") as binary_file:
        for number, raw in enumerate(binary_file, start=1):
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(path, f"line {number}", None, f"not UTF-8 text (byte {e.start} of the line)") from None


def _require_object(path: Path, where: str, record: Any) -> dict:
    if not isinstance(record, dict):
        raise DataFormatError(path, where, None, f"expected an object, got {type(record).__name__}")
    return record


def _load_json_list(path: Path) -> list[Any]:
    _require_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataFormatError(path, None, None, f"not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"line {e.lineno}", None, f"malformed JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(data, list):
        raise DataFormatError(path, None, None, f"expected a JSON list of records, got {type(data).__name__}")
    return data


def _items(path: Path):
    for number, record in enumerate(_load_json_list(path), start=1):
        where = f"item {number}"
        yield where, _require_object(path, where, record)


_ISO_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?T?(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?$")


def parse_duration(text: str) -> float:
    """Seconds from ``"11.5"`` or WebVid's ISO-8601 ``"PT00H00M11S"``."""
    text = text.strip()
    match = _ISO_DURATION.match(text)
    if match and text not in ("P", "PT"):
        parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
        return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    return float(text)


def read_webvid_csv(path: str | Path, *, media_root: str | Path | None = None, check_files: bool = True) -> list[VideoCaption]:
    """WebVid-style caption CSV. The video is the ``video`` column if present, else ``<page_dir>/<videoid>.mp4``."""
    path = Path(path)
    root = _root(path, media_root)
    records = []
    reader = csv.DictReader(_text_lines(path))
    try:
        columns = set(reader.fieldnames or ())
    except csv.Error as e:
        raise DataFormatError(path, "line 1", None, f"unreadable CSV header: {e}") from None
    missing = [c for c in ("videoid", "name") if c not in columns]
    if "video" not in columns and "page_dir" not in columns:
        missing.append("video or page_dir")
    if missing:
        raise DataFormatError(path, "line 1", ", ".join(missing), f"missing column(s); header has {sorted(columns)}")
    try:
        for row in reader:
            records.append(webvid_record(path, f"line {reader.line_num}", row, num_columns=len(columns), media_root=root, check_files=check_files))
    except csv.Error as e:
        raise DataFormatError(path, f"line {reader.line_num}", None, f"unreadable CSV: {e}") from None
    return records


def webvid_record(path: Path, where: str, row: dict, *, num_columns: int, media_root: Path, check_files: bool) -> VideoCaption:
    """One row of a WebVid ``captions.csv`` (``where`` names it in errors), also a row a shard carries."""
    if None in row:
        raise DataFormatError(path, where, None, f"more values than the {num_columns} header columns")
    video_id = _text(path, where, row, "videoid")
    caption = _text(path, where, row, "name")
    if row.get("video"):
        video = _resolve(path, where, "video", row["video"], media_root, check_files)
    else:
        page_dir = _text(path, where, row, "page_dir")
        video = _resolve(path, where, "page_dir", f"{page_dir}/{video_id}.mp4", media_root, check_files)
    duration = None
    if row.get("duration"):
        try:
            duration = parse_duration(row["duration"])
        except ValueError:
            raise DataFormatError(path, where, "duration", f"not seconds or ISO-8601: {row['duration']!r}") from None
    return VideoCaption(video_id=video_id, video=video, caption=caption, duration=duration)


def _video_id(path: Path, where: str, record: dict) -> str:
    """MSRVTT-QA gives integer ids (7010 -> ``video7010``); MSVD-QA and ours give strings."""
    value = record.get("video_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"video{value}"
    return _text(path, where, record, "video_id")


def read_qa_json(path: str | Path, *, media_root: str | Path | None = None, check_files: bool = True) -> list[VideoQA]:
    """MSRVTT-QA / MSVD-QA style list. Without a ``video`` field the video is ``<media_root>/<video_id>.mp4``."""
    path = Path(path)
    root = _root(path, media_root)
    return [qa_record(path, where, item, media_root=root, check_files=check_files) for where, item in _items(path)]


def qa_record(path: Path, where: str, item: dict, *, media_root: Path, check_files: bool) -> VideoQA:
    """One item of a ``qa.json`` (``where`` names it in errors), also a row a shard carries."""
    video_id = _video_id(path, where, item)
    question = _text(path, where, item, "question")
    answer = _text(path, where, item, "answer")
    video_field = _text(path, where, item, "video", required=False)
    video = _resolve(path, where, "video" if video_field else "video_id", video_field or f"{video_id}.mp4", media_root, check_files)
    kind = _text(path, where, item, "type", required=False) or question.split()[0].lower()
    return VideoQA(video_id=video_id, video=video, question=question, answer=answer, type=kind)


_ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}


def read_instructions_json(path: str | Path, *, media_root: str | Path | None = None, check_files: bool = True) -> list[Conversation]:
    """LLaVA / Video-ChatGPT ``conversations`` lists or VideoChat ``QA`` lists, with a ``video`` or ``image``."""
    path = Path(path)
    root = _root(path, media_root)
    return [instruction_record(path, where, item, media_root=root, check_files=check_files) for where, item in _items(path)]


def instruction_record(path: Path, where: str, item: dict, *, media_root: Path, check_files: bool) -> Conversation:
    """One item of an ``instructions.json`` (``where`` names it in errors), also a row a shard carries."""
    kinds = [k for k in ("video", "image") if item.get(k)]
    if len(kinds) != 1:
        raise DataFormatError(path, where, "video/image", f"expected exactly one of 'video' or 'image', found {kinds or 'neither'}")
    kind = kinds[0]
    media = _resolve(path, where, kind, _text(path, where, item, kind), media_root, check_files)
    if "conversations" in item:
        turns = _llava_turns(path, where, item["conversations"])
    elif "QA" in item:
        turns = _videochat_turns(path, where, item["QA"], kind)
    else:
        raise DataFormatError(path, where, "conversations", f"missing (neither 'conversations' nor 'QA'; keys present: {sorted(item)})")
    conv_id = _text(path, where, item, "id", required=False) or Path(item[kind]).stem
    return Conversation(id=conv_id, media=media, media_kind=kind, turns=turns)


def _llava_turns(path: Path, where: str, conversations: Any) -> tuple[Turn, ...]:
    if not isinstance(conversations, list) or not conversations:
        raise DataFormatError(path, where, "conversations", "expected a non-empty list of turns")
    turns = []
    for number, turn in enumerate(conversations, start=1):
        field = f"conversations[{number - 1}]"
        if not isinstance(turn, dict):
            raise DataFormatError(path, where, field, f"expected an object, got {type(turn).__name__}")
        role = _ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise DataFormatError(path, where, f"{field}.from", f"expected 'human' or 'gpt', got {turn.get('from')!r}")
        if role != ("human", "gpt")[(number - 1) % 2]:
            raise DataFormatError(path, where, f"{field}.from", "turns must alternate human, gpt, human, ...")
        text = turn.get("value")
        if not isinstance(text, str):
            raise DataFormatError(path, where, f"{field}.value", f"expected a string, got {type(text).__name__}")
        turns.append(Turn(role=role, text=text))
    return tuple(turns)


def _videochat_turns(path: Path, where: str, qa: Any, kind: str) -> tuple[Turn, ...]:
    if not isinstance(qa, list) or not qa:
        raise DataFormatError(path, where, "QA", "expected a non-empty list of {'q', 'a'} objects")
    turns = []
    for number, pair in enumerate(qa):
        if not isinstance(pair, dict) or not isinstance(pair.get("q"), str) or not isinstance(pair.get("a"), str):
            raise DataFormatError(path, where, f"QA[{number}]", "expected an object with string 'q' and 'a'")
        question = " ".join(x for x in (pair.get("i") or "", pair["q"]) if x)
        # VideoChat leaves the media placeholder to the template; put it on the first turn like LLaVA.
        turns.append(Turn("human", f"<{kind}>\n{question}" if number == 0 else question))
        turns.append(Turn("gpt", pair["a"]))
    return tuple(turns)


def read_image_captions_json(path: str | Path, *, media_root: str | Path | None = None, check_files: bool = True) -> list[ImageCaption]:
    """LLaVA-CC595K / LCS-558K style ``{"id", "image", "caption"}`` list (``blip_caption`` accepted)."""
    path = Path(path)
    root = _root(path, media_root)
    records = []
    for where, item in _items(path):
        image = _resolve(path, where, "image", _text(path, where, item, "image"), root, check_files)
        field = "caption" if "caption" in item or "blip_caption" not in item else "blip_caption"
        caption = _text(path, where, item, field)
        image_id = _text(path, where, item, "id", required=False) or Path(item["image"]).stem
        records.append(ImageCaption(id=image_id, image=image, caption=caption))
    return records


def read_annotations_jsonl(path: str | Path, *, media_root: str | Path | None = None, check_files: bool = True) -> list[VideoAnnotation]:
    """The synthetic ground truth, one JSON object per line (``VideoAnnotation.video`` stays relative)."""
    path = Path(path)
    root = _root(path, media_root)
    records = []
    for number, line in enumerate(_text_lines(path), start=1):
        where = f"line {number}"
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, where, None, f"malformed JSON: {e.msg} (column {e.colno})") from None
        records.append(_annotation(path, where, _require_object(path, where, record)))
        _resolve(path, where, "video", records[-1].video, root, check_files)
    return records


_ANNOTATION_FIELDS = ("video_id", "video", "num_frames", "fps", "width", "height", "objects")
_OBJECT_FIELDS = ("shape", "color", "color_after", "motion", "size", "appear_frame", "disappear_frame", "change_frame", "positions")


def _annotation(path: Path, where: str, record: dict) -> VideoAnnotation:
    for field in _ANNOTATION_FIELDS:
        if field not in record:
            raise DataFormatError(path, where, field, f"missing (keys present: {sorted(record)})")
    if not isinstance(record["objects"], list):
        raise DataFormatError(path, where, "objects", "expected a list")
    for number, obj in enumerate(record["objects"]):
        if not isinstance(obj, dict):
            raise DataFormatError(path, where, f"objects[{number}]", "expected an object")
        for field in _OBJECT_FIELDS:
            if field not in obj:
                raise DataFormatError(path, where, f"objects[{number}].{field}", "missing")
        positions = obj["positions"]
        if not isinstance(positions, list) or len(positions) != record["num_frames"]:
            raise DataFormatError(path, where, f"objects[{number}].positions", f"expected a list of num_frames={record['num_frames']} entries")
        for t, p in enumerate(positions):
            if p is not None and not (isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)):
                raise DataFormatError(path, where, f"objects[{number}].positions[{t}]", f"expected null or [x, y], got {p!r}")
    try:
        return VideoAnnotation.from_json({k: record[k] for k in _ANNOTATION_FIELDS})
    except (TypeError, ValueError) as e:
        raise DataFormatError(path, where, None, f"bad annotation: {e}") from None
