"""`videovlm eval` refuses outputs that are its inputs, writes atomically, and names the file
for a bad scores file, duplicate prediction ids, and paths that are not files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from videovlm.cli import main
from videovlm.paths import OutputPathError, atomic_output, check_outputs


def _predictions(path: Path, rows: list[dict] | None = None) -> Path:
    rows = rows or [
        {"video_id": "a", "question": "what colour?", "answer": "red", "prediction": "red"},
        {"video_id": "b", "question": "what colour?", "answer": "blue", "prediction": "red"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def evaluate(*args: object) -> int:
    return main(["eval", *map(str, args)])


def test_an_output_that_is_an_input_is_refused(tmp_path, capsys):
    predictions = _predictions(tmp_path / "p.jsonl")
    original = predictions.read_bytes()
    (tmp_path / "link.json").symlink_to(predictions)
    os.link(predictions, tmp_path / "hard.json")
    (tmp_path / "sub").mkdir()
    clip_model = tmp_path / "clip"
    clip_model.mkdir()
    cases = [
        (["--output", predictions], "same file as --predictions"),
        (["--output", tmp_path / "link.json"], "same file as --predictions"),  # symlink
        (["--output", tmp_path / "sub" / ".." / "p.jsonl"], "same file as --predictions"),  # ..
        (["--output", tmp_path / "hard.json"], "same file as --predictions"),  # hard link
        (["--output", tmp_path / "p.json"], None),  # fine: p.json, p.md, p.png are new files
        (["--output", tmp_path / "sub"], "is a folder"),
    ]
    for extra, message in cases:
        code = evaluate("--task", "qa", "--predictions", predictions, *extra)
        err = capsys.readouterr().err
        assert (code, message is None or message in err) == (0 if message is None else 2, True), (extra, err)
        assert predictions.read_bytes() == original
    # The markdown report and the chart beside --output count too.
    markdown_named = _predictions(tmp_path / "r.md")
    assert evaluate("--task", "qa", "--predictions", markdown_named, "--output", tmp_path / "r.json") == 2
    assert "the markdown report" in capsys.readouterr().err and markdown_named.read_text().startswith("{")
    captions = tmp_path / "captions.csv"
    captions.write_text("videoid,name,video\na,a red video,a.mp4\n")
    caption_rows = _predictions(tmp_path / "c.jsonl", [{"video_id": "a", "prediction": "red"}])
    for output, message in [(captions, "same file as --data"), (tmp_path / "a.mp4", "the video of a in --data"),
                            (clip_model / "r.json", "inside --clip-model")]:
        args = ["--task", "caption", "--predictions", caption_rows, "--data", captions, "--clip-model", clip_model]
        assert evaluate(*args, "--output", output) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "a.mp4").exists() and not list(clip_model.iterdir())


def test_outputs_are_written_atomically(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_output(target) as handle:
        handle.write("half of a new rep")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    # A symlinked output is written through, like open() would: the link stays a link.
    (tmp_path / "real").mkdir()
    (tmp_path / "link.json").symlink_to(tmp_path / "real" / "r.json")
    with atomic_output(tmp_path / "link.json") as handle:
        handle.write("new")
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "real" / "r.json").read_text() == "new"
    with pytest.raises(OutputPathError, match="inside --model"):
        check_outputs({"--output": tmp_path / "m" / "x" / ".." / "p.jsonl"}, folders={"--model": tmp_path / "m"})


def test_a_run_leaves_no_temporary_files(tmp_path):
    predictions = _predictions(tmp_path / "p.jsonl")
    output = tmp_path / "out" / "report.json"
    assert evaluate("--task", "qa", "--predictions", predictions, "--output", output) == 0
    assert sorted(p.name for p in output.parent.iterdir()) == ["report.json", "report.md", "report.png"]
    assert json.loads(output.read_text())["metrics"]["accuracy"] == 0.5


def _scores(path: Path, **tensors: torch.Tensor) -> Path:
    save_file(tensors, str(path))
    return path


def test_bad_scores_files_name_the_file(tmp_path, capsys):
    loop = tmp_path / "loop.safetensors"
    loop.symlink_to(loop)
    (tmp_path / "random.safetensors").write_bytes(os.urandom(300))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "cut.safetensors").write_bytes(
        _scores(tmp_path / "whole.safetensors", scores=torch.rand(3, 2), text_to_video=torch.tensor([0, 1, 1])).read_bytes()[:-5]
    )
    bad = {
        "random.safetensors": "not a readable safetensors file",
        "empty.safetensors": "not a readable safetensors file",
        "cut.safetensors": "not a readable safetensors file",
        "loop.safetensors": "symlink loop",
        "folder.safetensors": "is a directory",
        "missing.safetensors": "file not found",
    }
    (tmp_path / "folder.safetensors").mkdir()
    shaped = {
        "flat.safetensors": ({"scores": torch.rand(3), "text_to_video": torch.tensor([0, 1, 1])}, "non-empty float"),
        "none.safetensors": ({"scores": torch.rand(0, 2), "text_to_video": torch.tensor([], dtype=torch.long)}, "non-empty float"),
        "floats.safetensors": ({"scores": torch.rand(3, 2), "text_to_video": torch.tensor([0.0, 1.0, 1.0])}, "integer"),
        "range.safetensors": ({"scores": torch.rand(3, 2), "text_to_video": torch.tensor([0, 1, 5])}, "must be in [0, 2)"),
        "nan.safetensors": ({"scores": torch.full((3, 2), float("nan")), "text_to_video": torch.tensor([0, 1, 1])}, "NaN"),
        "short.safetensors": ({"scores": torch.rand(3, 2), "text_to_video": torch.tensor([0, 1])}, "2 entries for 3 texts"),
        "nokey.safetensors": ({"scores": torch.rand(3, 2)}, "missing tensor 'text_to_video'"),
    }
    for name, (tensors, message) in shaped.items():
        _scores(tmp_path / name, **tensors)
        bad[name] = message
    for name, message in bad.items():
        assert evaluate("--task", "retrieval", "--scores", tmp_path / name, "--output", tmp_path / "r.json") == 2, name
        err = capsys.readouterr().err
        assert str(tmp_path / name) in err and message in err and "Traceback" not in err, (name, err)
    assert not (tmp_path / "r.json").exists()


def test_duplicate_prediction_ids_are_an_error(tmp_path, capsys):
    row = {"video_id": "a", "question": "what colour?", "answer": "red", "prediction": "red"}
    other = {**row, "video_id": "b"}
    twice = _predictions(tmp_path / "twice.jsonl", [row, other, {**row, "prediction": "blue"}, other, other])
    assert evaluate("--task", "qa", "--predictions", twice, "--output", tmp_path / "r.json") == 2
    err = capsys.readouterr().err
    assert f"--predictions {twice}: 2 prediction ids occur more than once" in err
    assert "video 'a' question 'what colour?' x2" in err and "video 'b' question 'what colour?' x3" in err
    # Without a question only an exact repeat is a duplicate (POPE probes of one video differ by answer).
    probe = {"video_id": "a", "answer": "yes", "prediction": "yes", "type": "exists"}
    probes = _predictions(tmp_path / "pope.jsonl", [probe, {**probe, "answer": "no"}])
    assert evaluate("--task", "pope", "--predictions", probes, "--output", tmp_path / "r.json") == 0
    _predictions(probes, [probe, {**probe, "answer": "no"}, probe])
    assert evaluate("--task", "pope", "--predictions", probes, "--output", tmp_path / "r.json") == 2
    assert "1 prediction ids occur more than once (video 'a' x2)" in capsys.readouterr().err
    captions = _predictions(tmp_path / "c.jsonl", [{"video_id": "v", "prediction": "x", "references": ["x"]}] * 2)
    assert evaluate("--task", "caption", "--predictions", captions, "--output", tmp_path / "r.json") == 2
    assert "video 'v' x2" in capsys.readouterr().err


def test_paths_that_are_not_files_are_named(tmp_path, capsys):
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    (tmp_path / "broken.jsonl").symlink_to(tmp_path / "gone.jsonl")
    for name, message in [("dir.jsonl", "is a directory"), ("loop.jsonl", "symlink loop"), ("broken.jsonl", "broken symlink")]:
        assert evaluate("--task", "qa", "--predictions", tmp_path / name, "--output", tmp_path / "r.json") == 2
        assert message in capsys.readouterr().err, name
    predictions = _predictions(tmp_path / "c.jsonl", [{"video_id": "a", "prediction": "x"}])
    assert evaluate("--task", "caption", "--predictions", predictions, "--data", tmp_path / "dir.jsonl", "--output", tmp_path / "r.json") == 2
    assert "dir.jsonl: is a directory, not a file" in capsys.readouterr().err


def test_videobert_zero_shot_report_never_lands_on_its_inputs(tmp_path, capsys):
    from videovlm.recipes.videobert_eval import main as zero_shot

    split = tmp_path / "test"
    split.mkdir()
    (split / "captions.csv").write_text("videoid,name,video\n")
    (tmp_path / "model").mkdir()
    for output in (split / "captions.csv", tmp_path / "model" / "r.json"):
        assert zero_shot(["--model", str(tmp_path / "model"), "--data", str(split), "--output", str(output)]) == 2
        assert "lies inside" in capsys.readouterr().err  # refused before the model is loaded
    assert (split / "captions.csv").read_text() == "videoid,name,video\n"
