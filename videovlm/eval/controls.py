"""Video-blind controls in evaluation: accuracy with the real video, under a control, and the drop.

The measured proof that a model reads the video and not the question's prior: the same
questions are answered again without their video (``shuffled``: another video's frames;
``blank``: black frames; see `videovlm.qa.controls`), and the report puts both accuracies
and their difference side by side, per question type and pooled (static, temporal, overall).
A model that ignores the video has a drop of 0; one that reads it drops towards the prior.

    from videovlm.eval.controls import shuffled_assignment, blank_frames_like, control_section
    shuffled_assignment(["v1", "v2", "v3"], seed=0)   # {"v1": "v2", "v2": "v3", "v3": "v1"}: none to itself
    blank_frames_like(frames)                         # uint8 zeros of frames' shape

`control_section(real=, control=, ...)` takes the two passes' prediction records (same
questions, same order) and returns the report's ``control`` block (`videovlm.eval.report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from videovlm.eval.qa import Accuracy, QAAccuracy, pooled_accuracy, qa_accuracy
from videovlm.eval.records import PredictionRecord
from videovlm.eval.tasks import QUESTION_TYPE_GROUPS, EvalInputError
from videovlm.qa.controls import CONTROL_DESCRIPTIONS, CONTROLS, DEFAULT_CONTROL_SEED, control_predictions_path, shuffled_assignment
from videovlm.qa.frames import blank_frames_like

__all__ = [
    "CONTROLS",
    "CONTROL_DESCRIPTIONS",
    "DEFAULT_CONTROL_SEED",
    "blank_frames_like",
    "control_comparison",
    "control_predictions_path",
    "control_section",
    "shuffled_assignment",
]


def _question(record: PredictionRecord) -> tuple:
    return record.video_id, record.question, record.answer, record.type


def _accuracy(records: Sequence[PredictionRecord]) -> QAAccuracy:
    return qa_accuracy(predictions=[r.prediction for r in records], answers=[r.answer for r in records], types=[r.type for r in records])


def _row(real: Accuracy, control: Accuracy) -> dict:
    """One comparison row; drop = real - control (in accuracy, a fraction)."""
    return {
        "real": real.accuracy,
        "control": control.accuracy,
        "drop": real.accuracy - control.accuracy,
        "real_correct": real.correct,
        "control_correct": control.correct,
        "total": real.total,
        "real_errors": real.errors,
        "control_errors": control.errors,
    }


def control_comparison(real: Sequence[PredictionRecord], control: Sequence[PredictionRecord]) -> dict[str, dict[str, dict]]:
    """``{"per_type": {type: row}, "pooled": {"static"|"temporal"|"overall": row}}``, each row
    with ``real``, ``control`` and ``drop`` accuracies and their counts. The pooled groups are
    the ones the qa report has (`QUESTION_TYPE_GROUPS`, where present). ``EvalInputError``
    unless both passes hold the same questions in the same order."""
    if len(real) != len(control):
        raise EvalInputError(f"the control pass has {len(control)} predictions for {len(real)} questions")
    for index, (a, b) in enumerate(zip(real, control)):
        if _question(a) != _question(b):
            raise EvalInputError(f"control prediction {index} is about {_question(b)}, the real one about {_question(a)}")
    real_accuracy, control_accuracy = _accuracy(real), _accuracy(control)
    per_type = {name: _row(acc, control_accuracy.per_type[name]) for name, acc in real_accuracy.per_type.items()}
    pooled: dict[str, dict] = {}
    for group, types in QUESTION_TYPE_GROUPS.items():
        real_pooled = pooled_accuracy(real_accuracy, types)
        if real_pooled is not None:
            pooled[group] = _row(real_pooled, pooled_accuracy(control_accuracy, types))
    pooled["overall"] = _row(real_accuracy.overall, control_accuracy.overall)
    return {"per_type": per_type, "pooled": pooled}


def control_section(
    *,
    name: str,
    real: Sequence[PredictionRecord],
    control: Sequence[PredictionRecord],
    seed: int | None = None,
    predictions: str | Path | None = None,
) -> dict:
    """The report's ``control`` block: the control's ``name``, ``description``, ``seed``
    (shuffled only), the control pass's ``predictions`` file, and `control_comparison`."""
    if name not in CONTROL_DESCRIPTIONS:
        raise EvalInputError(f"control: expected one of {', '.join(CONTROLS)}, got {name!r}")
    return {
        "name": name,
        "description": CONTROL_DESCRIPTIONS[name],
        "seed": seed if name == "shuffled" else None,
        "predictions": None if predictions is None else str(predictions),
        **control_comparison(real, control),
    }
