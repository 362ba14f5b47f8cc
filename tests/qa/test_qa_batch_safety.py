"""`videovlm qa` batch mode: outputs that are inputs are refused, outputs are written
atomically, failures are counted (exit 1 only with --strict), data paths are relative to the
data file, and a folder or symlink loop given as a video is named as such."""

from __future__ import annotations

import json
from pathlib import Path

from tests.qa.conftest import QUESTION
from videovlm.cli import main


def _qa_data(path: Path, clips: dict[str, Path], colours=("red", "blue"), *, video=None) -> Path:
    items = [
        {"video_id": c, "video": str(video(c) if video else clips[c]), "question": QUESTION, "answer": c if c in ("red", "blue") else "red"}
        for c in colours
    ]
    path.write_text(json.dumps(items))
    return path


def qa(model: Path, *args: object) -> int:
    return main(["qa", "--model", str(model), *map(str, args), "--sampler", "uniform:2", "--device", "cpu", "--no-progress"])


def test_an_output_that_is_an_input_is_refused(trained_llama, clips, tmp_path, capsys):
    data = _qa_data(tmp_path / "qa.json", clips)
    original = data.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(data)
    (tmp_path / "sub").mkdir()
    video_bytes = clips["red"].read_bytes()
    model_files = sorted(p.name for p in trained_llama.iterdir())
    cases = [
        (data, "same file as --data"),
        (tmp_path / "link.jsonl", "same file as --data"),
        (tmp_path / "sub" / ".." / "qa.json", "same file as --data"),
        (clips["red"], "same file as the video of 'red' in --data"),
        (trained_llama / "predictions.jsonl", "inside --model"),
        (tmp_path / "sub", "is a folder"),
    ]
    for output, message in cases:
        assert qa(trained_llama, "--data", data, "--output", output) == 2, output
        assert message in capsys.readouterr().err, output
    assert data.read_bytes() == original and clips["red"].read_bytes() == video_bytes
    assert sorted(p.name for p in trained_llama.iterdir()) == model_files


def test_failures_are_counted_and_strict_exits_1(trained_llama, clips, tmp_path, capsys):
    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    loop = tmp_path / "loop.mp4"
    loop.symlink_to(loop)
    paths = {**clips, "folder": folder, "loop": loop}
    data = _qa_data(tmp_path / "qa.json", paths, ("red", "corrupt", "folder", "loop"), video=paths.get)
    output = tmp_path / "out" / "predictions.jsonl"
    output.parent.mkdir()
    output.write_text("an older run's predictions\n")
    assert qa(trained_llama, "--data", data, "--output", output) == 0
    err = capsys.readouterr().err
    assert "wrote 4 predictions (3 with errors)" in err and "3 video(s) failed" in err
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line.get("prediction") for line in lines] == ["red", None, None, None]
    assert "is a directory, not a file" in lines[2]["error"] and "symlink loop" in lines[3]["error"]
    assert sorted(p.name for p in output.parent.iterdir()) == ["predictions.jsonl"]  # no temporary file left
    assert qa(trained_llama, "--data", data, "--output", output, "--strict") == 1
    assert "3 video(s) failed" in capsys.readouterr().err
    good = _qa_data(tmp_path / "good.json", clips)
    assert qa(trained_llama, "--data", good, "--output", output, "--strict") == 0
    assert "failed" not in capsys.readouterr().err
    # One video: the same words for a folder.
    assert qa(trained_llama, "--video", folder, "--question", QUESTION) == 2
    assert "is a directory, not a file" in capsys.readouterr().err


def test_data_video_paths_are_relative_to_the_data_file(trained_llama, clips, tmp_path, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    relative = {c: Path("..") / "clips" / clips[c].name for c in ("red", "blue")}
    (tmp_path / "clips").symlink_to(clips["red"].parent)
    data = _qa_data(lists / "qa.json", clips, video=relative.get)
    monkeypatch.chdir(tmp_path / "clips")  # a folder where "../clips/red.mp4" means something else
    assert qa(trained_llama, "--data", data, "--output", tmp_path / "p.jsonl") == 0
    predictions = [json.loads(line)["prediction"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert predictions == ["red", "blue"]
