"""The predictions file `videovlm eval --predictions` reads (written by `videovlm qa`).

One JSON object per line. Fields:

- ``video_id`` (str, required): the video the line is about.
- ``prediction`` (str): the model's answer or caption; or ``error`` (str): why there is no
  prediction (decode failure, generation error...). A line with an error counts as wrong.
- ``answer`` (str): the reference answer (required for the ``qa`` and ``pope`` tasks).
- ``question`` (str, optional) and ``type`` (str, optional, default ``"all"``): the question
  and its type for per-type accuracy.
- ``references`` (list of str, optional): reference captions for the ``caption`` task when
  no ``--data`` captions file is given.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from videovlm.paths import NOT_FOUND, file_problem


class PredictionFormatError(ValueError):
    """A predictions file line is not valid JSON or misses / mistypes a field."""


@dataclass(frozen=True)
class PredictionRecord:
    """One line of a predictions file (see the module doc for the fields)."""

    video_id: str
    prediction: str | None
    error: str | None
    answer: str | None = None
    question: str | None = None
    type: str = "all"
    references: tuple[str, ...] = ()


def _field(item: dict, name: str, *, where: str, required: bool) -> str | None:
    value = item.get(name)
    if value is None:
        if required:
            raise PredictionFormatError(f"{where}: missing field {name!r}")
        return None
    if not isinstance(value, str):
        raise PredictionFormatError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def parse_prediction(item: object, *, where: str, require_answer: bool) -> PredictionRecord:
    """Validate one decoded prediction (a dict with the module doc's fields); `where` names it in errors."""
    if not isinstance(item, dict):
        raise PredictionFormatError(f"{where}: expected a JSON object, got {type(item).__name__}")
    prediction = _field(item, "prediction", where=where, required=False)
    error = _field(item, "error", where=where, required=False)
    if prediction is None and error is None:
        raise PredictionFormatError(f"{where}: needs a 'prediction' or an 'error' field")
    references = item.get("references", [])
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise PredictionFormatError(f"{where}: field 'references' must be a list of strings")
    return PredictionRecord(
        video_id=_field(item, "video_id", where=where, required=True),
        prediction=prediction if error is None else None,
        error=error,
        answer=_field(item, "answer", where=where, required=require_answer),
        question=_field(item, "question", where=where, required=False),
        type=_field(item, "type", where=where, required=False) or "all",
        references=tuple(references),
    )


def to_json_line(record: PredictionRecord) -> str:
    """The predictions-file line of a record (fields left out when empty)."""
    item = asdict(record)
    item["references"] = list(record.references)
    return json.dumps({k: v for k, v in item.items() if v is not None and v != []}, ensure_ascii=False)


def read_predictions_jsonl(path: str | Path, *, require_answer: bool) -> list[PredictionRecord]:
    """Read a predictions JSONL file; `require_answer` for the qa / pope tasks."""
    path = Path(path)
    problem = file_problem(path)
    if problem == NOT_FOUND:
        raise FileNotFoundError(f"predictions file not found: {path}")
    if problem is not None:
        raise PredictionFormatError(f"predictions file {path}: {problem}")
    records: list[PredictionRecord] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise PredictionFormatError(f"{where}: not valid JSON ({e.msg})") from e
            records.append(parse_prediction(item, where=where, require_answer=require_answer))
    if not records:
        raise PredictionFormatError(f"{path}: no prediction lines")
    return records


def duplicate_ids(records: list[PredictionRecord], *, per_video: bool) -> dict[tuple, int]:
    """Prediction ids that occur more than once -> how often.

    The id is the ``video_id`` when there is one prediction per video (captions), else the
    ``video_id`` and ``question``; a record without a question is a duplicate only when it
    repeats an earlier record exactly (nothing else tells two such questions apart).
    """
    def identity(record: PredictionRecord) -> tuple:
        # (video_id,) or (video_id, question), or (video_id, None, the whole record).
        if per_video:
            return (record.video_id,)
        if record.question is not None:
            return record.video_id, record.question
        return record.video_id, None, tuple(asdict(record).values())

    counts = Counter(identity(r) for r in records)
    return {key: count for key, count in counts.items() if count > 1}
