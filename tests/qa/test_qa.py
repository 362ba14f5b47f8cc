"""VideoQA on a micro Video-LLaMA trained in the test, plus VideoOFA / VideoBERT plumbing."""

from __future__ import annotations

import io
import json

import pytest
import torch

from tests.qa.conftest import QUESTION, colour_frames
from videovlm.qa import BatchOptions, GenerationSettings, GenerationSettingsError, QAInputError, QARequest, VideoQA, terminal_streamer


@pytest.fixture(scope="module")
def llama(trained_llama) -> VideoQA:
    return VideoQA.from_pretrained(trained_llama, sampler="uniform:2")


def test_trained_model_answers_its_questions(llama, clips):
    assert llama.qa(clips["red"], QUESTION) == "red"
    assert llama.qa(clips["blue"], QUESTION) == "blue"
    # Decoded frames work as well as a path; raw uint8 frames of the colour give its answer.
    assert llama.qa(torch.from_numpy(colour_frames("blue", count=2)), QUESTION) == "blue"


def test_default_sampler_is_uniform_capped_by_max_frames(trained_llama):
    assert VideoQA.from_pretrained(trained_llama).sampler_spec == "uniform:4"  # max_frames=4 < 8
    marker = trained_llama.parent / "with_sampler"
    marker.mkdir()
    for f in trained_llama.iterdir():
        (marker / f.name).symlink_to(f)
    (marker / "training_stage.json").write_text(json.dumps({"sampler": "segment:2"}))
    assert VideoQA.from_pretrained(marker).sampler_spec == "segment:2"


def test_decode_size_follows_training_and_the_processor(trained_llama, clips, tmp_path):
    """QA decodes at the size training decoded at (training_stage.json's ``decode_size``);
    ``auto`` is the processor's resize target; the answer is unchanged; bad sizes are typed errors."""
    from videovlm.models.pixels import decode_target
    from videovlm.qa.cli import parse_decode_size

    full = VideoQA.from_pretrained(trained_llama, sampler="uniform:2")
    assert full.decode_size is None and full.frames(clips["red"]).frames.shape[1:3] == (48, 48)
    auto = VideoQA.from_pretrained(trained_llama, sampler="uniform:2", decode_size="auto")
    target = decode_target(auto.model.processor.pixel)
    assert auto.decode_size == target and min(auto.frames(clips["red"]).frames.shape[1:3]) == target
    assert auto.qa(clips["red"], QUESTION) == "red" and auto.qa(clips["blue"], QUESTION) == "blue"
    marker = tmp_path / "trained_at_24"
    marker.mkdir()
    for f in trained_llama.iterdir():
        (marker / f.name).symlink_to(f)
    (marker / "training_stage.json").write_text(json.dumps({"sampler": "uniform:2", "decode_size": 24}))
    assert VideoQA.from_pretrained(marker).frames(clips["red"]).frames.shape[1:3] == (24, 24)
    with pytest.raises(QAInputError, match="decode_size: expected auto"):
        VideoQA.from_pretrained(trained_llama, decode_size="big")
    assert parse_decode_size("auto") == "auto" and parse_decode_size("224") == 224 and parse_decode_size("24x32") == (24, 32)
    with pytest.raises(Exception, match="expected auto, N"):
        parse_decode_size("large")


def test_batched_generation_matches_single_and_isolates_broken_videos(llama, clips):
    requests = [QARequest(clips[c], QUESTION) for c in ("red", "corrupt", "blue", "missing", "red")]
    results = llama.qa_batch(requests, options=BatchOptions(batch_size=4))
    assert [r.answer for r in results] == ["red", None, "blue", None, "red"]
    assert "VideoDecodeError" in results[1].error and str(clips["corrupt"]) in results[1].error
    assert "file not found" in results[3].error
    # Prompts of different lengths share a left-padded batch: each answer is what it is alone.
    mixed = [QARequest(clips["blue"], "describe the video briefly."), QARequest(clips["red"], QUESTION)]
    alone = [llama.qa(r.video, r.question, settings=GenerationSettings(max_new_tokens=6)) for r in mixed]
    assert [r.answer for r in llama.qa_batch(mixed, options=BatchOptions(batch_size=2, settings=GenerationSettings(max_new_tokens=6)))] == alone


def test_decoding_options(llama, clips):
    beam = llama.qa(clips["red"], QUESTION, settings=GenerationSettings(num_beams=3))
    assert beam == "red"
    sampled = [llama.qa(clips["blue"], QUESTION, settings=GenerationSettings(do_sample=True, seed=7, temperature=1.5)) for _ in range(2)]
    assert sampled[0] == sampled[1]  # same seed, same sample
    buffer = io.StringIO()
    streamed = llama.qa(clips["red"], QUESTION, streamer=terminal_streamer(llama.model.tokenizer, stream=buffer))
    assert buffer.getvalue().strip() == streamed == "red"
    with pytest.raises(GenerationSettingsError, match="beam"):
        llama.qa(clips["red"], QUESTION, settings=GenerationSettings(num_beams=2), streamer=terminal_streamer(llama.model.tokenizer, stream=buffer))
    with pytest.raises(GenerationSettingsError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)


def test_timestamps_and_chat(llama, clips):
    frames = llama.frames(clips["red"])
    prompt = llama.prompt(QUESTION, frames, timestamps=True)
    assert prompt.text.startswith("the video's 2 frames are sampled at 0.2s, 1.0s.")
    with pytest.raises(QAInputError, match="frame times"):
        llama.prompt(QUESTION, llama.frames(torch.from_numpy(colour_frames("red", 2))), timestamps=True)
    session = llama.chat(clips["blue"])
    first = session.ask(QUESTION)
    second = session.ask("the video is red?")
    assert first == "blue" and isinstance(second, str) and len(session.history) == 2
    # The second prompt carries the first exchange: more tokens than a fresh question.
    follow_up = llama.prompt("the video is red?", frames, history=session.history[:1])
    fresh = llama.prompt("the video is red?", frames)
    assert follow_up.item["input_ids"].shape[0] > fresh.item["input_ids"].shape[0]


def test_bad_inputs_raise_clear_errors(llama, clips):
    with pytest.raises(QAInputError, match="question"):
        llama.qa(clips["red"], "  ")
    with pytest.raises(QAInputError, match=r"frames: expected uint8 RGB \(T, H, W, 3\)"):
        llama.qa(torch.zeros(2, 8, 8), QUESTION)
    with pytest.raises(QAInputError, match="candidates"):
        llama.qa(clips["red"], QUESTION, candidates=["red"])
    with pytest.raises(QAInputError, match="not a folder"):
        VideoQA.from_pretrained(clips["red"].parent / "no_model")


def test_cli_batch_mode_writes_error_lines(trained_llama, clips, tmp_path, capsys):
    from videovlm.cli import main

    data = tmp_path / "qa.json"
    items = [{"video_id": c, "video": str(clips[c]), "question": QUESTION, "answer": c if c in ("red", "blue") else "red", "type": "colour"}
             for c in ("red", "corrupt", "blue", "missing")]
    data.write_text(json.dumps(items))
    output = tmp_path / "predictions.jsonl"
    code = main(["qa", "--model", str(trained_llama), "--data", str(data), "--output", str(output), "--sampler", "uniform:2",
                 "--batch-size", "3", "--device", "cpu", "--no-progress"])
    assert code == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line.get("prediction") for line in lines] == ["red", None, "blue", None]
    assert "error" in lines[1] and "error" in lines[3]
    assert lines[0]["question"] == QUESTION and lines[0]["answer"] == "red" and lines[0]["type"] == "colour"
    assert "4 predictions (2 with errors)" in capsys.readouterr().err
    # The eval reads what qa wrote.
    from videovlm.eval.records import read_predictions_jsonl

    assert [r.prediction for r in read_predictions_jsonl(output, require_answer=True)] == ["red", None, "blue", None]

    code = main(["qa", "--model", str(trained_llama), "--video", str(clips["red"]), "--question", QUESTION, "--sampler", "uniform:2", "--stream"])
    assert code == 0 and capsys.readouterr().out.strip() == "red"
    assert main(["qa", "--model", str(trained_llama), "--data", str(data)]) == 2
    assert "--data needs --output" in capsys.readouterr().err


def test_eval_inference_hooks(trained_llama, clips, tmp_path):
    from videovlm.eval.records import parse_prediction
    from videovlm.qa import predict_records, retrieval_scores

    data = tmp_path / "qa.json"
    data.write_text(json.dumps([{"video_id": c, "video": str(clips[c]), "question": QUESTION, "answer": c} for c in ("blue", "red")]))
    rows = predict_records(model_dir=trained_llama, data=data, task="qa", sampler="uniform:2")
    records = [parse_prediction(row, where=f"row {i}", require_answer=True) for i, row in enumerate(rows)]
    assert [(r.video_id, r.prediction, r.answer) for r in records] == [("blue", "blue", "blue"), ("red", "red", "red")]
    # videovlm eval --model goes through predict_records (the model's default sampler here).
    from videovlm.cli import main

    report = tmp_path / "report.json"
    assert main(["eval", "--task", "qa", "--model", str(trained_llama), "--data", str(data), "--output", str(report)]) == 0
    assert json.loads(report.read_text())["metrics"]["accuracy"] == 1.0
    assert report.with_suffix(".predictions.jsonl").is_file()

    captions = tmp_path / "captions.csv"
    captions.write_text("videoid,name,video\n" + "".join(f"{c},the video is {c}.,{clips[c]}\n" for c in ("red", "blue")))
    scores, text_to_video = retrieval_scores(model_dir=trained_llama, data=captions, sampler="uniform:2")
    assert scores.shape == (2, 2) and text_to_video == [0, 1] and torch.isfinite(scores).all()


@pytest.mark.parametrize("family", ["videoofa", "videobert"])
def test_other_families_answer_in_batches(family, saved_family, clips):
    vqa = VideoQA.from_pretrained(saved_family(family), sampler="uniform:2")
    candidates = ["red", "blue"] if family == "videobert" else None
    short = GenerationSettings(max_new_tokens=4)
    single = vqa.qa(clips["red"], QUESTION, candidates=candidates, settings=short)
    assert isinstance(single, str) and single == vqa.qa(clips["red"], QUESTION, candidates=candidates, settings=short)
    if candidates:
        assert single in candidates
        assert isinstance(vqa.qa(clips["red"], QUESTION), str)  # template filling: one vocabulary word
        with pytest.raises(GenerationSettingsError, match="template filling"):
            vqa.qa(clips["red"], QUESTION, settings=GenerationSettings(do_sample=True))
    options = BatchOptions(batch_size=3, settings=short, candidates=tuple(candidates) if candidates else None)
    results = vqa.qa_batch([QARequest(clips[c], QUESTION) for c in ("red", "corrupt", "blue")], options=options)
    assert results[0].answer == single and results[1].error is not None and results[2].answer is not None
    with pytest.raises(QAInputError, match="Video-LLaMA"):
        vqa.chat(clips["red"])
    scores = __import__("videovlm.qa", fromlist=["score_texts"]).score_texts(vqa, vqa.frames(clips["red"]), ["the video is red.", "the video is blue."])
    assert scores.shape == (2,) and torch.isfinite(scores).all()
