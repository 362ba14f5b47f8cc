"""Exact-match QA accuracy after normalisation, overall and per question type."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from videovlm.eval.normalize import normalize_answer


@dataclass(frozen=True)
class Accuracy:
    """Counts for one group of questions.

    correct: predictions equal to the answer after `normalize_answer`.
    total: questions in the group (errors included).
    errors: questions with no prediction (counted as wrong).
    """

    correct: int
    total: int
    errors: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "correct": self.correct, "total": self.total, "errors": self.errors}


@dataclass(frozen=True)
class QAAccuracy:
    """overall: every question; per_type: one entry per question type, sorted by type name."""

    overall: Accuracy
    per_type: dict[str, Accuracy]

    def to_dict(self) -> dict:
        return {"overall": self.overall.to_dict(), "per_type": {k: v.to_dict() for k, v in self.per_type.items()}}


def qa_accuracy(
    *, predictions: Sequence[str | None], answers: Sequence[str], types: Sequence[str] | None = None
) -> QAAccuracy:
    """Exact-match accuracy; a ``None`` prediction is an error and counts as wrong."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
    if types is not None and len(types) != len(answers):
        raise ValueError(f"{len(types)} question types but {len(answers)} answers")
    if not answers:
        raise ValueError("no questions to score")
    groups: dict[str, list[int]] = {}  # type -> [correct, total, errors]
    for index, (prediction, answer) in enumerate(zip(predictions, answers)):
        counts = groups.setdefault(types[index] if types is not None else "all", [0, 0, 0])
        counts[1] += 1
        if prediction is None:
            counts[2] += 1
        elif normalize_answer(prediction) == normalize_answer(answer):
            counts[0] += 1
    per_type = {name: Accuracy(*groups[name]) for name in sorted(groups)}
    overall = Accuracy(*(sum(acc[i] for acc in groups.values()) for i in range(3)))
    return QAAccuracy(overall=overall, per_type=per_type)


def pooled_accuracy(result: QAAccuracy, types: Sequence[str]) -> Accuracy | None:
    """One `Accuracy` over all questions of `types` (micro-average); None if none is present."""
    present = [result.per_type[name] for name in types if name in result.per_type]
    if not present:
        return None
    return Accuracy(*(sum(getattr(acc, field) for acc in present) for field in ("correct", "total", "errors")))
