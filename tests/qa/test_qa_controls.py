"""Video-blind controls through the shared QA path, on real video files and trained micro models.

The micro Video-LLaMA of ``conftest.trained_llama`` answers the colour of the video it sees
(red -> "red", blue -> "blue"), so with its own video it is right on both questions and
under the shuffled control (each question asked about the other video) wrong on both: a
drop of 100 points, which would be 0 if the control silently used the real frames. The same
model with its projector zeroed sees no video at all: its drop is exactly 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.qa.conftest import QUESTION
from videovlm.cli import main
from videovlm.qa import BatchOptions, QARequest, VideoQA, controlled_prediction_rows
from videovlm.qa.batch import read_task_data

# question types of the two videos' questions: one static and one temporal type, so that the
# report's per-type rows and its pooled static / temporal rows all exist
TYPES = {"red": "color", "blue": "direction"}


def qa_data(path: Path, clips: dict[str, Path], colours=("red", "blue")) -> Path:
    items = [{"video_id": c, "video": str(clips[c]), "question": QUESTION, "answer": c, "type": TYPES[c]} for c in colours]
    path.write_text(json.dumps(items))
    return path


@pytest.fixture(scope="module")
def video_blind_llama(trained_llama, tmp_path_factory) -> Path:
    """The trained micro Video-LLaMA with its projector zeroed: every visual token the LLM
    gets is 0 whatever the frames, so it answers from the question alone."""
    from videovlm.models import load_pretrained

    model = load_pretrained(trained_llama)
    with torch.no_grad():
        for parameter in model.projector.parameters():
            parameter.zero_()
    return model.save_pretrained(tmp_path_factory.mktemp("blind") / "final")


def run_eval(model: Path, data: Path, output: Path, *extra: str) -> dict:
    code = main(["eval", "--task", "qa", "--model", str(model), "--data", str(data), "--output", str(output), *extra])
    assert code == 0
    return json.loads(output.read_text())


def test_shuffled_control_report_on_a_model_that_reads_the_video(trained_llama, clips, tmp_path, capsys):
    data = qa_data(tmp_path / "qa.json", clips)
    output = tmp_path / "out" / "report.json"
    report = run_eval(trained_llama, data, output, "--control", "shuffled")
    control = report["control"]
    assert control["name"] == "shuffled" and control["seed"] == 0
    assert set(control["per_type"]) == {"color", "direction"} and set(control["pooled"]) == {"static", "temporal", "overall"}
    for row in [*control["per_type"].values(), *control["pooled"].values()]:
        assert row["drop"] == row["real"] - row["control"]
        assert (row["real"], row["control"], row["drop"]) == (1.0, 0.0, 1.0)
    assert report["metrics"]["accuracy"] == control["pooled"]["overall"]["real"]
    assert report["command"][-4:] == ["--control", "shuffled", "--control-seed", "0"]
    # the control's answers, beside the real ones: each question answered with the other colour
    saved = tmp_path / "out" / "report.control-shuffled.predictions.jsonl"
    assert control["predictions"] == str(saved)
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [(line["video_id"], line["control_video_id"], line["prediction"]) for line in lines] == [("red", "blue", "blue"), ("blue", "red", "red")]
    assert [json.loads(line)["prediction"] for line in output.with_suffix(".predictions.jsonl").read_text().splitlines()] == ["red", "blue"]
    markdown = output.with_suffix(".md").read_text()
    assert "### video-blind control: shuffled (seed 0)" in markdown
    assert "| color | 100.00 | 0.00 | 100.00 | 1 |" in markdown and "| **overall** | 100.00 | 0.00 | 100.00 | 2 |" in markdown
    assert markdown in capsys.readouterr().out
    assert output.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_blank_control_shows_every_video_the_same_black_frames(trained_llama, clips, tmp_path):
    data = qa_data(tmp_path / "qa.json", clips)
    report = run_eval(trained_llama, data, tmp_path / "report.json", "--control", "blank")
    assert report["control"]["seed"] is None and "--control-seed" not in report["command"]
    lines = [json.loads(line) for line in (tmp_path / "report.control-blank.predictions.jsonl").read_text().splitlines()]
    # one question text, identical black frames: one answer for both videos, so at most one is right
    assert lines[0]["prediction"] == lines[1]["prediction"]
    assert [line["control_video_id"] for line in lines] == ["red", "blue"]
    overall = report["control"]["pooled"]["overall"]
    assert overall["real"] == 1.0 and overall["control"] <= 0.5 and overall["drop"] >= 0.5
    # black pixels through the normal processor: the answer equals that for raw uint8 zero frames
    vqa = VideoQA.from_pretrained(trained_llama)
    real_shape = vqa.frames(clips["red"]).frames.shape
    assert lines[0]["prediction"] == vqa.qa(torch.zeros(real_shape, dtype=torch.uint8), QUESTION)


@pytest.mark.parametrize("control", ["shuffled", "blank"])
def test_a_model_that_ignores_the_video_drops_exactly_zero(video_blind_llama, clips, tmp_path, control):
    data = qa_data(tmp_path / "qa.json", clips)
    report = run_eval(video_blind_llama, data, tmp_path / "report.json", "--control", control)
    rows = [*report["control"]["per_type"].values(), *report["control"]["pooled"].values()]
    assert all(row["drop"] == 0.0 and row["real"] == row["control"] for row in rows)
    real = (tmp_path / "report.predictions.jsonl").read_text().splitlines()
    blind = (tmp_path / f"report.control-{control}.predictions.jsonl").read_text().splitlines()
    assert [json.loads(a)["prediction"] for a in real] == [json.loads(b)["prediction"] for b in blind]


def test_each_video_is_decoded_once_for_both_passes(trained_llama, clips, tmp_path, monkeypatch):
    """A spy on the real decoder (it still decodes): 3 videos, 2 questions each, real + control."""
    import videovlm.video

    opened: list[str] = []
    real_open = videovlm.video.open_video

    def counting_open(path, **kwargs):
        opened.append(str(path))
        return real_open(path, **kwargs)

    monkeypatch.setattr(videovlm.video, "open_video", counting_open)
    clips = {**clips, "red2": tmp_path / "red2.mp4"}
    clips["red2"].write_bytes(clips["red"].read_bytes())
    items = [{"video_id": c, "video": str(clips[c]), "question": q, "answer": "red", "type": "color"}
             for c in ("red", "blue", "red2") for q in (QUESTION, QUESTION + " ")]
    (tmp_path / "qa.json").write_text(json.dumps(items))
    records = read_task_data(tmp_path / "qa.json", task="qa")
    vqa = VideoQA.from_pretrained(trained_llama)
    rows = controlled_prediction_rows(vqa, records, control="shuffled", seed=3, options=BatchOptions(batch_size=4))
    assert sorted(opened) == sorted(str(clips[c]) for c in ("red", "blue", "red2"))
    assert [r["video_id"] for r in rows.real] == [r["video_id"] for r in rows.control] == [i["video_id"] for i in items]
    assert all(r["control_video_id"] != r["video_id"] for r in rows.control)
    # the real pass is what a run without a control answers
    plain = vqa.qa_batch([QARequest(r.video, r.question) for r in records], options=BatchOptions(batch_size=4))
    assert [r.answer for r in plain] == [r["prediction"] for r in rows.real]


@pytest.mark.parametrize("family", ["videoofa", "videobert"])
def test_controls_answer_with_the_frames_they_name_in_every_family(family, saved_family, clips, tmp_path):
    """Untrained micro VideoOFA / VideoBERT: a shuffled control answer is the real answer of
    the video whose frames it borrowed (same question text), a blank one the answer for raw
    black frames; a question-only model or a real-frames bug could not tell which is which."""
    from videovlm.qa.batch import with_default_candidates

    data = qa_data(tmp_path / "qa.json", clips)
    records = read_task_data(data, task="qa")
    vqa = VideoQA.from_pretrained(saved_family(family), sampler="uniform:2")
    options = with_default_candidates(vqa, records, BatchOptions(batch_size=3), task="qa")
    shuffled = controlled_prediction_rows(vqa, records, control="shuffled", options=options)
    real = {r["video_id"]: r["prediction"] for r in shuffled.real}
    assert [r["prediction"] for r in shuffled.control] == [real[r["control_video_id"]] for r in shuffled.control]
    blank = controlled_prediction_rows(vqa, records, control="blank", options=options)
    zeros = torch.zeros_like(vqa.frames(clips["red"]).frames)
    expected = vqa.qa_batch([QARequest(zeros, QUESTION)], options=options)[0].answer
    assert [r["prediction"] for r in blank.control] == [expected, expected]
    assert [r["prediction"] for r in blank.real] == [r["prediction"] for r in shuffled.real]


def test_control_bad_inputs_are_usage_errors(trained_llama, clips, tmp_path, capsys):
    one_video = qa_data(tmp_path / "one.json", clips, colours=("red",))
    output = tmp_path / "report.json"
    args = ["eval", "--task", "qa", "--model", str(trained_llama), "--output", str(output)]
    assert main([*args, "--data", str(one_video), "--control", "shuffled"]) == 2
    err = capsys.readouterr().err
    assert f"{one_video}: a shuffled control needs >= 2 distinct videos" in err and "got 1 ('red')" in err
    assert not output.exists() and not output.with_suffix(".predictions.jsonl").exists()
    # blank needs no second video
    assert run_eval(trained_llama, one_video, output, "--control", "blank")["control"]["pooled"]["overall"]["total"] == 1
    two = qa_data(tmp_path / "two.json", clips)
    assert main([*args, "--data", str(two), "--control", "blank", "--control-seed", "1"]) == 2
    assert "--control blank has no randomness" in capsys.readouterr().err
    # the control's predictions file may not be an input either
    clash = tmp_path / "r.control-shuffled.predictions.jsonl"
    clash.write_text(two.read_text())
    assert main(["eval", "--task", "qa", "--model", str(trained_llama), "--data", str(clash), "--output", str(tmp_path / "r.json"), "--control", "shuffled"]) == 2
    assert "the control's predictions" in capsys.readouterr().err
