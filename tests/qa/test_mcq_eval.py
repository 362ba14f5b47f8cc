"""Multiple-choice evaluation with a model: likelihood and generate scoring, the eval report."""

from __future__ import annotations

import json

import pytest

from tests.qa.conftest import QUESTION


def _mcq(tmp_path, clips):
    items = [
        {"video_id": "red", "video": str(clips["red"]), "question": QUESTION, "candidates": ["blue", "red"], "answer": "red", "type": "colour"},
        {"video_id": "blue", "video": str(clips["blue"]), "question": QUESTION, "candidates": ["blue", "red"], "answer": "A", "type": "colour"},
        {"video_id": "blue2", "video": str(clips["blue"]), "question": QUESTION, "options": ["A. red", "B. blue"], "answer": "B", "type": "other", "start": 0.0, "end": 1.0},
        {"video_id": "broken", "video": str(clips["corrupt"]), "question": QUESTION, "candidates": ["blue", "red"], "answer": "red", "type": "colour"},
    ]
    path = tmp_path / "mcq.json"
    path.write_text(json.dumps(items))
    return path


@pytest.mark.parametrize("scoring", ["likelihood", "generate"])
def test_mcq_scoring_picks_the_right_option(trained_llama, clips, tmp_path, scoring):
    from videovlm.qa.mcq import predict_mcq_records

    rows = predict_mcq_records(model_dir=trained_llama, data=_mcq(tmp_path, clips), scoring=scoring, sampler="uniform:2")
    assert [r.get("prediction") for r in rows] == ["B", "A", "B", None]
    assert [r["answer"] for r in rows] == ["B", "A", "B", "B"]
    assert "error" in rows[3]  # the corrupt video: an error row, the run goes on
    if scoring == "likelihood":
        assert all(len(r["scores"]) == 2 and r["scores"][["A", "B"].index(r["prediction"])] == max(r["scores"]) for r in rows[:3])


def test_length_normalised_scores_are_means(trained_llama, clips, tmp_path):
    from videovlm.qa import VideoQA
    from videovlm.qa.mcq import item_frames, option_log_likelihoods
    from videovlm.data.mcq import read_mcq_json

    vqa = VideoQA.from_pretrained(trained_llama, sampler="uniform:2")
    item = read_mcq_json(_mcq(tmp_path, clips))[0]
    frames = item_frames(vqa, item)
    summed, mean = option_log_likelihoods(vqa, item, frames), option_log_likelihoods(vqa, item, frames, length_normalize=True)
    ratios = [s / m for s, m in zip(summed, mean)]
    assert all(r >= 1.0 and abs(r - round(r)) < 1e-4 for r in ratios)  # sum = mean x the answer's token count


@pytest.mark.parametrize("family", ["videoofa", "videobert"])
def test_every_family_scores_options(family, saved_family, clips, tmp_path):
    from videovlm.qa.mcq import predict_mcq_records

    rows = predict_mcq_records(model_dir=saved_family(family), data=_mcq(tmp_path, clips), sampler="uniform:2")
    assert [r.get("prediction") in ("A", "B") for r in rows] == [True, True, True, False]
    assert all(len(r["scores"]) == 2 for r in rows[:3])


def test_eval_cli_reports_mcq_accuracy_per_type(trained_llama, clips, tmp_path, capsys):
    from videovlm.cli import main

    output = tmp_path / "report.json"
    code = main(["eval", "--task", "mcq", "--model", str(trained_llama), "--data", str(_mcq(tmp_path, clips)), "--output", str(output)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(output.read_text())
    assert report["metrics"]["accuracy"] == pytest.approx(3 / 4)  # the broken video counts as wrong
    assert report["per_type"]["other"]["accuracy"] == 1.0
    assert "--scoring likelihood" in " ".join(report["command"])
    saved = [json.loads(line) for line in output.with_suffix(".predictions.jsonl").read_text().splitlines()]
    assert [s.get("prediction") for s in saved] == ["B", "A", "B", None]
