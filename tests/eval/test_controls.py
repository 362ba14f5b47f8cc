"""The video-blind controls' building blocks: the seeded derangement, black frames, the
report's control rows, and the usage errors of ``videovlm eval --control`` that need no model
(the runs with a model are in tests/qa/test_qa_controls.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videovlm.cli import main
from videovlm.eval.controls import blank_frames_like, control_predictions_path, control_section, shuffled_assignment
from videovlm.eval.records import PredictionRecord
from videovlm.eval.report import build_report, markdown_table, write_report
from videovlm.eval.tasks import EvalInputError, evaluate_qa
from videovlm.qa import ControlError, QAInputError
from videovlm.qa.controls import control_plan

VIDEOS = [f"video{i:02d}" for i in range(12)]


@pytest.mark.parametrize("count", [2, 3, 5, 12])
def test_the_shuffled_assignment_is_a_derangement(count):
    videos = VIDEOS[:count]
    for seed in range(20):
        assignment = shuffled_assignment(videos, seed)
        assert sorted(assignment) == sorted(assignment.values()) == sorted(videos)  # a permutation
        assert all(video != source for video, source in assignment.items())  # nobody keeps its video


def test_the_shuffled_assignment_is_fixed_by_the_seed():
    assert shuffled_assignment(VIDEOS, 0) == shuffled_assignment(VIDEOS, 0)
    assert shuffled_assignment(VIDEOS, 0) == shuffled_assignment(list(reversed(VIDEOS)) + VIDEOS[:3], 0)  # order, repeats
    assert shuffled_assignment(VIDEOS, 0) != shuffled_assignment(VIDEOS, 1)
    assert len({tuple(shuffled_assignment(VIDEOS, seed).values()) for seed in range(10)}) > 5
    assert shuffled_assignment(["a", "b"], 7) == {"a": "b", "b": "a"}  # the one derangement of 2


def test_a_shuffled_control_needs_two_videos():
    for videos, shown in ((["only"], "got 1 ('only')"), (["only", "only"], "got 1 ('only')"), ([], "got 0")):
        with pytest.raises(ControlError, match=r"needs >= 2 distinct videos") as error:
            shuffled_assignment(videos, 0)
        assert shown in str(error.value)
    assert issubclass(ControlError, QAInputError) and issubclass(ControlError, ValueError)


def test_blank_frames_are_zeros_of_the_real_shape():
    frames = torch.randint(1, 256, (4, 24, 32, 3), dtype=torch.uint8)
    blank = blank_frames_like(frames)
    assert blank.shape == frames.shape and blank.dtype == torch.uint8 and not blank.any()
    assert blank_frames_like(np.ones((2, 8, 8, 3), dtype=np.uint8)).shape == (2, 8, 8, 3)
    with pytest.raises(QAInputError, match="expected uint8 RGB"):
        blank_frames_like(frames.float())


def test_control_plan_groups_questions_by_the_frames_they_show(tmp_path):
    from videovlm.data.formats import VideoQA as QARecord

    records = [QARecord(video_id=v, video=tmp_path / f"{v}.mp4", question=q, answer="x", type="color") for v in "abc" for q in ("q1", "q2")]
    plan = control_plan(records, control="shuffled", seed=0)
    assignment = shuffled_assignment("abc", 0)
    assert len(plan) == 12 and sorted(p.record for p in plan if p.is_control) == list(range(6))
    for planned in plan:
        record = records[planned.record]
        expected = assignment[record.video_id] if planned.is_control else record.video_id
        assert planned.frames_video_id == expected and planned.request.video == tmp_path / f"{expected}.mp4"
    # each video's frames are asked about in one run of requests: one decode with the frame cache
    runs = [p.frames_video_id for i, p in enumerate(plan) if i == 0 or plan[i - 1].frames_video_id != p.frames_video_id]
    assert sorted(runs) == ["a", "b", "c"]
    blank = control_plan(records, control="blank")
    assert all(p.request.blank_frames == p.is_control and p.frames_video_id == records[p.record].video_id for p in blank)
    with pytest.raises(ControlError, match="expected one of shuffled, blank"):
        control_plan(records, control="foo")


def test_control_predictions_sit_beside_the_real_ones():
    assert control_predictions_path(Path("out/report.predictions.jsonl"), "shuffled") == Path("out/report.control-shuffled.predictions.jsonl")
    assert control_predictions_path(Path("eval/test_predictions.jsonl"), "blank") == Path("eval/test_predictions.control-blank.jsonl")


def _records(predictions: list[str], types: list[str]) -> list[PredictionRecord]:
    return [
        PredictionRecord(video_id=f"v{i}", prediction=p, error=None, answer="yes", question="q", type=t)
        for i, (p, t) in enumerate(zip(predictions, types))
    ]


def test_control_rows_per_type_and_pooled(tmp_path):
    types = ["color", "color", "direction", "order", "mystery"]
    real = _records(["yes", "yes", "yes", "no", "yes"], types)
    control = _records(["yes", "no", "no", "no", "no"], types)
    section = control_section(name="shuffled", real=real, control=control, seed=3, predictions=tmp_path / "c.jsonl")
    assert section["seed"] == 3 and section["predictions"] == str(tmp_path / "c.jsonl")
    assert set(section["per_type"]) == set(types) and list(section["pooled"]) == ["static", "temporal", "overall"]
    assert section["per_type"]["color"] == {
        "real": 1.0, "control": 0.5, "drop": 0.5, "real_correct": 2, "control_correct": 1, "total": 2, "real_errors": 0, "control_errors": 0
    }
    assert (section["pooled"]["temporal"]["real"], section["pooled"]["temporal"]["control"]) == (0.5, 0.0)
    assert section["pooled"]["overall"]["drop"] == pytest.approx(4 / 5 - 1 / 5)
    for row in [*section["per_type"].values(), *section["pooled"].values()]:
        assert row["drop"] == row["real"] - row["control"]
    report = build_report(task="qa", command=["videovlm"], metrics={"accuracy": 0.8}, items=5, errors=0, control=section)
    table = markdown_table(report)
    assert "### video-blind control: shuffled (seed 3)" in table
    assert "| color | 100.00 | 50.00 | 50.00 | 2 |" in table and "| **temporal** | 50.00 | 0.00 | 50.00 | 2 |" in table
    per_type = evaluate_qa(real).per_type
    json_path, _, chart = write_report({**report, "per_type": per_type}, tmp_path / "r.json")
    assert json.loads(json_path.read_text())["control"]["pooled"]["overall"]["total"] == 5
    assert chart.read_bytes()[:4] == b"\x89PNG"
    # blank has no seed; mismatched passes are refused
    assert control_section(name="blank", real=real, control=control, seed=3)["seed"] is None
    with pytest.raises(EvalInputError, match="control prediction 1 is about"):
        control_section(name="blank", real=real, control=[control[0], *control[2:], control[1]])
    with pytest.raises(EvalInputError, match="4 predictions for 5 questions"):
        control_section(name="blank", real=real, control=control[:4])


def test_control_usage_errors_without_a_model(tmp_path, capsys):
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(json.dumps({"video_id": "a", "question": "q", "answer": "red", "prediction": "red"}) + "\n")
    base = ["eval", "--task", "qa", "--predictions", str(predictions), "--output", str(tmp_path / "r.json")]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--control", "foo"])
    assert exit_info.value.code == 2 and "argument --control: invalid choice: 'foo'" in capsys.readouterr().err
    assert main([*base, "--control", "shuffled"]) == 2
    assert "--control shuffled needs --model DIR" in capsys.readouterr().err
    assert main([*base, "--control-seed", "1"]) == 2
    assert "give --control shuffled with it" in capsys.readouterr().err
    pope = ["eval", "--task", "pope", "--predictions", str(predictions), "--control", "blank", "--output", str(tmp_path / "r.json")]
    assert main(pope) == 2 and "--control is for --task qa" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
