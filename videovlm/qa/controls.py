"""Video-blind controls: the same questions asked without their own video.

A model that reads the video loses accuracy when the video is taken away; one that answers
from the question's prior (the most common answer of each question type) does not. Two
controls, chosen by name (``videovlm eval --control NAME``):

- ``shuffled``: each question is asked about the frames of another evaluated video, by a
  seeded derangement of the videos (`shuffled_assignment`: no video keeps its own frames);
  the frames are real video, so the model gets in-distribution input that is about the
  wrong clip.
- ``blank``: each question is asked about black frames of its video's decoded shape
  (`videovlm.qa.frames.blank_frames_like`).

`control_plan` orders the real and the control questions so that every video is decoded
once: the questions about video v's frames (its own questions, then the control questions
that borrow v's frames) are contiguous, so ``VideoQA``'s frame cache serves them all.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from videovlm.qa.api import QARequest
from videovlm.qa.frames import QAInputError

# control name -> what it does, for reports and help texts
CONTROL_DESCRIPTIONS = {
    "shuffled": "each question asked about the frames of another evaluated video, by a seeded derangement: no video keeps its own",
    "blank": "each question asked about black frames (uint8 0) of its own video's decoded shape",
}
CONTROLS = tuple(CONTROL_DESCRIPTIONS)
DEFAULT_CONTROL_SEED = 0
PREDICTIONS_SUFFIX = ".predictions.jsonl"


class ControlError(QAInputError):
    """A control cannot be run on these questions (unknown name, too few videos)."""


def check_control(control: str) -> None:
    if control not in CONTROLS:
        raise ControlError(f"control: expected one of {', '.join(CONTROLS)}, got {control!r}")


def shuffled_assignment(video_ids: Iterable[str], seed: int = DEFAULT_CONTROL_SEED) -> dict[str, str]:
    """video id -> the video id whose frames its questions are asked about (a derangement).

    Repeated ids are one video. The result depends only on the set of ids and ``seed``
    (the ids are sorted first), so the same data and seed give the same pairs in any order;
    it is uniform over the derangements (shuffle until no video maps to itself: about e
    tries). ``ControlError`` for fewer than 2 distinct videos: there is nothing to swap.
    """
    videos = sorted(set(video_ids))
    if len(videos) < 2:
        shown = f" ({videos[0]!r})" if videos else ""
        raise ControlError(f"a shuffled control needs >= 2 distinct videos to swap between, got {len(videos)}{shown}")
    rng = random.Random(seed)
    sources = list(videos)
    while any(video == source for video, source in zip(videos, sources)):
        rng.shuffle(sources)
    return dict(zip(videos, sources))


@dataclass(frozen=True)
class PlannedQuestion:
    """One model call of a controlled run.

    Fields: request (what the model is asked), record (index of the question in the data),
    is_control (the control pass, else the real one), frames_video_id (whose frames the
    request shows: the question's own video for the real pass and the blank control).
    """

    request: QARequest
    record: int
    is_control: bool
    frames_video_id: str


def control_plan(records: Sequence, *, control: str, seed: int = DEFAULT_CONTROL_SEED) -> list[PlannedQuestion]:
    """The real and the control questions of QA ``records`` (``video_id``, ``video``,
    ``question``), grouped by the video whose frames they show (see the module doc)."""
    check_control(control)
    questions_of: dict[str, list[int]] = {}  # video id -> its records, in data order
    video_of: dict[str, str | Path] = {}
    for index, record in enumerate(records):
        questions_of.setdefault(record.video_id, []).append(index)
        video_of.setdefault(record.video_id, record.video)
    if control == "shuffled":
        borrowers = {source: video for video, source in shuffled_assignment(questions_of, seed).items()}
    else:
        borrowers = {video: video for video in questions_of}  # blank: a video's own shape, its own questions
    plan: list[PlannedQuestion] = []
    for video_id, own in questions_of.items():
        path = video_of[video_id]
        plan += [PlannedQuestion(QARequest(path, records[i].question), i, False, video_id) for i in own]
        plan += [
            PlannedQuestion(QARequest(path, records[i].question, blank_frames=control == "blank"), i, True, video_id)
            for i in questions_of[borrowers[video_id]]
        ]
    return plan


def control_predictions_path(predictions: str | Path, control: str) -> Path:
    """Where the control pass's predictions go, beside the real ones:
    ``report.predictions.jsonl`` -> ``report.control-shuffled.predictions.jsonl``,
    ``test_predictions.jsonl`` -> ``test_predictions.control-shuffled.jsonl``."""
    check_control(control)
    predictions = Path(predictions)
    name = predictions.name
    if name.endswith(PREDICTIONS_SUFFIX) and len(name) > len(PREDICTIONS_SUFFIX):
        return predictions.with_name(f"{name[: -len(PREDICTIONS_SUFFIX)]}.control-{control}{PREDICTIONS_SUFFIX}")
    return predictions.with_name(f"{predictions.stem}.control-{control}{predictions.suffix}")
