"""``videovlm data check``: the videos of a manifest that will not decode, with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture()
def manifest(tmp_path):
    from videovlm.video.writer import write_video

    good = write_video(tmp_path / "good.mp4", list(np.zeros((6, 32, 32, 3), dtype=np.uint8)), fps=4)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    (tmp_path / "folder.mp4").mkdir()
    items = [{"video_id": name, "video": f"{name}.mp4", "question": "what colour?", "answer": "red"}
             for name in ("good", "truncated", "missing", "folder", "good")]
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(items))
    return path


def test_check_lists_each_bad_video_once_with_its_reason(manifest, capsys):
    from videovlm.cli import main

    assert main(["data", "check", str(manifest), "--quiet"]) == 1
    captured = capsys.readouterr()
    lines = dict(line.split("\t") for line in captured.out.strip().splitlines())
    folder = manifest.parent
    assert set(lines) == {str(folder / "truncated.mp4"), str(folder / "missing.mp4"), str(folder / "folder.mp4")}
    assert lines[str(folder / "missing.mp4")].startswith("missing: ") and lines[str(folder / "folder.mp4")].startswith("missing: ")
    assert lines[str(folder / "truncated.mp4")].startswith(("undecodable: ", "unreadable: "))
    assert "4 files checked, 3 will not load" in captured.err  # the good video is checked once


def test_check_reads_every_manifest_kind(tmp_path, manifest, capsys):
    from videovlm.cli import main
    from videovlm.data.check import manifest_kind

    good = str(manifest.parent / "good.mp4")
    (tmp_path / "captions.csv").write_text(f"videoid,name,video\ngood,a caption,{good}\n")
    (tmp_path / "mcq.json").write_text(json.dumps([{"video_id": "good", "video": good, "question": "q?", "candidates": ["a", "b"], "answer": "a"}]))
    (tmp_path / "inst.json").write_text(json.dumps([{"id": "1", "video": good, "conversations": [{"from": "human", "value": "<video> hi"}, {"from": "gpt", "value": "hello"}]}]))
    for name, kind in [("captions.csv", "captions"), ("mcq.json", "mcq"), ("inst.json", "instructions"), ("qa.json", "qa")]:
        assert manifest_kind(tmp_path / name) == kind
    for name in ("captions.csv", "mcq.json", "inst.json"):
        assert main(["data", "check", str(tmp_path / name), "--quiet"]) == 0
    (tmp_path / "bad.json").write_text(json.dumps([{"what": 1}]))
    assert main(["data", "check", str(tmp_path / "bad.json"), "--quiet"]) == 2
    assert "cannot tell the manifest kind" in capsys.readouterr().err
