"""`videovlm extract` end to end on small generated videos (real decoders, real worker processes)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videovlm.cli import main
from videovlm.video import open_video
from videovlm.video.extract import ExtractUsageError, VideoEntry, list_inputs, shard_of
from videovlm.video.extract.inputs import take_shard
from videovlm.video.samplers import parse_sampler
from videovlm.video.writer import write_video

LEVEL_STEP = 8  # frame i is a flat grey of level 8 * i: a saved image says which frame it is


def _write_clip(path: Path, num_frames: int, step: int = LEVEL_STEP) -> Path:
    frames = [np.full((48, 64, 3), step * i, dtype=np.uint8) for i in range(num_frames)]
    return write_video(path, frames, fps=25, crf=10)


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    """Three good clips (one nested, one with a dot in its name) and a corrupt file."""
    root = tmp_path_factory.mktemp("videos")
    _write_clip(root / "a.mp4", 24)
    _write_clip(root / "sub" / "b.mp4", 30)
    _write_clip(root / "sub" / "c.v2.mp4", 12)
    (root / "broken.mp4").write_bytes(b"this is not a video" * 20)
    (root / "notes.txt").write_text("not a video suffix: ignored")
    return root


def extract(*args: str) -> int:
    return main(["extract", *map(str, args), "--workers", "2", "--no-progress"])


def read_failures(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jpg_layout_frames_json_failures_and_resume(video_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert extract(video_folder, out, "--contact-sheet", "--size", "32") == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"done 3, skipped 0 (already done), failed 1 (see {out / 'failures.jsonl'}) | ")
    # video2dataset-style rates (24 frames written: 8 per video) and the failures by reason.
    assert re.search(r"\| [0-9.]+ videos/s, [0-9.]+ frames/s in [0-9.]+ s \| failures: VideoDecodeError 1$", line), line

    record = json.loads((out / "a" / "frames.json").read_text())
    for field in ("video", "stream", "sampler", "indices", "pts", "width", "height", "num_frames", "fps"):
        assert field in record, field
    with open_video(video_folder / "a.mp4") as reader:
        expected = parse_sampler("uniform:8")(reader.metadata)
    assert record["indices"] == list(expected.indices) and record["pts"] == pytest.approx(expected.pts)
    assert (record["sampler"], record["num_frames"], record["width"], record["height"]) == ("uniform:8", 24, 43, 32)
    assert record["video"] == str(video_folder / "a.mp4")
    names = sorted(p.name for p in (out / "a").iterdir())
    assert names == [".extract-files.json"] + [f"{n:06d}.jpg" for n in range(8)] + ["contact_sheet.png", "frames.json"]
    # The hidden record names what extract wrote: all a rerun may ever replace or remove.
    assert json.loads((out / "a" / ".extract-files.json").read_text())["files"] == names[1:]
    for n, index in enumerate(record["indices"]):
        image = np.asarray(Image.open(out / "a" / f"{n:06d}.jpg"))
        assert image.shape == (32, 43, 3)
        assert abs(image.mean() - LEVEL_STEP * index) < 3, (n, index, image.mean())
    sheet = Image.open(out / "a" / "contact_sheet.png")
    assert sheet.format == "PNG" and sheet.size[0] == 3 * 160  # 8 thumbnails on a 3-column grid
    # Nested and dotted names keep their relative path as the key.
    assert (out / "sub" / "b" / "frames.json").is_file() and (out / "sub" / "c.v2" / "frames.json").is_file()
    (failure,) = read_failures(out / "failures.jsonl")
    assert failure["video"] == str(video_folder / "broken.mp4") and "broken.mp4" in failure["error"]

    # Resume: "a" is gone, "sub/b" lost its frames.json (killed mid-publish of a longer
    # sample, whose record lists a 10th frame) and a killed run left a half-written temp
    # folder: only "a" and "sub/b" are redone; the user's notes in "sub/b" stay.
    for p in (out / "a").iterdir():
        p.unlink()
    (out / "a").rmdir()
    (out / "sub" / "b" / "frames.json").unlink()
    (out / "sub" / "b" / "000009.jpg").write_bytes(b"stale")
    owned = out / "sub" / "b" / ".extract-files.json"
    record_of_b = json.loads(owned.read_text())
    owned.write_text(json.dumps({**record_of_b, "files": [*record_of_b["files"], "000008.jpg", "000009.jpg"]}))
    (out / "sub" / "b" / "notes.txt").write_text("mine")
    stale = out / ".partial" / "all" / "00000000"
    stale.mkdir(parents=True)
    (stale / "000000.jpg").write_bytes(b"half")
    mtime_c = (out / "sub" / "c.v2" / "frames.json").stat().st_mtime_ns
    assert extract(video_folder, out, "--strict") == 1
    assert capsys.readouterr().out.startswith("done 2, skipped 1 (already done), failed 1")
    assert (out / "sub" / "c.v2" / "frames.json").stat().st_mtime_ns == mtime_c
    assert sorted(p.name for p in (out / "sub" / "b").iterdir()) == (
        [".extract-files.json"] + [f"{n:06d}.jpg" for n in range(8)] + ["frames.json", "notes.txt"]
    )
    assert not (out / ".partial").exists()
    assert len(read_failures(out / "failures.jsonl")) == 1


def test_usage_errors_exit_2_and_write_nothing(video_folder, tmp_path, capsys):
    out = tmp_path / "out"
    no_video_column = tmp_path / "m.csv"
    no_video_column.write_text("path,id\nx.mp4,1\n")
    bad_jsonl = tmp_path / "m.jsonl"
    bad_jsonl.write_text('{"video": "a.mp4"}\n{not json\n')
    cases = [
        ([video_folder, out, "--sampler", "uniform:x"], "'x'"),
        ([tmp_path / "missing", out], "no such file"),
        ([video_folder, out, "--size", "big"], "--size"),
        ([video_folder, out, "--shard", "3/3"], "--shard"),
        ([no_video_column, out], "no 'video' column"),
        ([bad_jsonl, out], "m.jsonl:2"),
        ([tmp_path / "notes.txt", out], "not a folder"),
        ([video_folder, out, "--backend", "nope"], "--backend"),
    ]
    (tmp_path / "notes.txt").write_text("x")
    for args, message in cases:
        assert extract(*args) == 2, args
        assert message in capsys.readouterr().err, args
    assert not out.exists()
    with pytest.raises(SystemExit) as info:
        extract(video_folder, out, "--format", "gif")
    assert info.value.code == 2


def test_manifest_keys_guard_and_wds_read_back(video_folder, tmp_path, capsys):
    import webdataset as wds

    manifest = tmp_path / "list.jsonl"
    rows = [
        {"video": str(video_folder / "a.mp4"), "id": "clip.one"},
        {"video": str(video_folder / "sub" / "b.mp4"), "id": 7},
        {"video": str(video_folder / "sub" / "c.v2.mp4"), "id": "../escaped"},
        {"video": str(video_folder / "a.mp4"), "id": "/abs/escaped"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "shards"
    assert extract(manifest, out, "--format", "wds", "--contact-sheet", "--sampler", "clips:3,interval=2,num=2") == 0
    assert capsys.readouterr().out.startswith("done 2, skipped 0 (already done), failed 2")
    failures = read_failures(out / "failures.jsonl")
    assert sorted(f["key"] for f in failures) == ["../escaped", "/abs/escaped"]
    assert all("outside" in f["error"] for f in failures)
    assert not (tmp_path / "escaped").exists() and not Path("/abs").exists()

    tars = sorted(out.glob("videos-*.tar"))
    assert [t.name for t in tars] == ["videos-000000.tar"]
    samples = {s["__key__"]: s for s in wds.WebDataset(str(tars[0]), shardshuffle=False).decode("rgb8")}
    assert sorted(samples) == ["7", "clip_one"]
    sample = samples["clip_one"]
    assert sample["json"]["key"] == "clip.one" and sample["json"]["sampler"] == "clips:3,interval=2,num=2"
    assert len(sample["json"]["clips"]) == 2 and sample["000005.jpg"].shape == (48, 64, 3)
    assert (out / "contact_sheets" / "clip.one.png").is_file()

    # A rerun finds both in the shard: nothing to do, no new shard.
    assert extract(manifest, out, "--format", "wds") == 0
    assert capsys.readouterr().out.startswith("done 0, skipped 2 (already done), failed 2")
    assert sorted(out.glob("videos-*.tar")) == tars


def test_shards_are_disjoint_and_cover_the_input(video_folder, tmp_path, capsys):
    entries = [VideoEntry(key=f"video_{n:03d}", path=f"{n}.mp4") for n in range(200)]
    parts = [take_shard(entries, i, 3) for i in range(3)]
    keys = [{e.key for e in part} for part in parts]
    assert sum(map(len, keys)) == 200 and set().union(*keys) == {e.key for e in entries}
    assert all(len(k) > 40 for k in keys)  # a hash split, roughly balanced
    assert all(shard_of(e.key, 3) == i for i, part in enumerate(parts) for e in part)

    out = tmp_path / "out"
    for i in range(2):
        extract(video_folder, out, "--shard", f"{i}/2")
    summaries = capsys.readouterr().out.splitlines()
    done = {p.parent.relative_to(out).as_posix() for p in out.rglob("frames.json")}
    assert done == {"a", "sub/b", "sub/c.v2"}
    failed = [f["key"] for i in range(2) for f in read_failures(out / f"failures-shard{i}of2.jsonl")]
    assert failed == ["broken"]
    assert sum(int(s.split()[1].rstrip(",")) for s in summaries) == 3


def test_list_inputs_manifests_and_globs(video_folder, tmp_path):
    csv_manifest = tmp_path / "m.csv"
    csv_manifest.write_text(f"video,id\n{video_folder / 'a.mp4'},\nrel/x.mp4,x1\n../up.mp4,\n")
    entries = list_inputs(str(csv_manifest), output=tmp_path / "out")
    # No id: the path without its root; ".." in a manifest path is resolved, not kept in the key.
    up = tmp_path.parent / "up"
    assert [(e.key, e.problem) for e in entries] == sorted(
        [(str(video_folder / "a")[1:], None), ("x1", None), (str(up)[1:], None)]
    )
    assert {e.path for e in entries} >= {str(tmp_path / "rel" / "x.mp4"), str(tmp_path.parent / "up.mp4")}

    json_manifest = tmp_path / "m.json"
    json_manifest.write_text(json.dumps([{"video": "v.mp4", "id": "ok/../../up"}]))
    (entry,) = list_inputs(str(json_manifest), output=tmp_path / "out")
    assert "outside" in entry.problem
    json_manifest.write_text(json.dumps({"video": "v.mp4"}))
    with pytest.raises(ExtractUsageError, match="m.json: a JSON manifest is a list"):
        list_inputs(str(json_manifest), output=tmp_path / "out")

    globbed = list_inputs(str(video_folder / "sub" / "*.mp4"), output=tmp_path / "out")
    assert [e.key for e in globbed] == ["b", "c.v2"]
    # OUTPUT inside INPUT is not scanned.
    inside = video_folder / "sub" / "out"
    assert [e.key for e in list_inputs(str(video_folder), output=inside)] == ["a", "broken", "sub/b", "sub/c.v2"]


def test_timeout_kills_a_hung_video(tmp_path, capsys):
    # The reader refuses a bare FIFO (size 0) at once, so the hang is one level down: an
    # FFmpeg concat list (probed by content, whatever its name) whose only entry is a FIFO
    # that no one writes: opening it blocks forever inside FFmpeg.
    folder = tmp_path / "in"
    _write_clip(folder / "good.mp4", 70, step=3)
    os.mkfifo(folder / "pipe.fifo")
    (folder / "hang.mp4").write_text("ffconcat version 1.0\nfile 'pipe.fifo'\n")
    out = tmp_path / "out"
    assert extract(folder, out, "--timeout", "2", "--sampler", "fps:1000", "--format", "png") == 0
    assert capsys.readouterr().out.startswith("done 1, skipped 0 (already done), failed 1")
    (failure,) = read_failures(out / "failures.jsonl")
    assert failure["key"] == "hang" and "TimeoutError" in failure["error"] and "killed" in failure["error"]
    assert not (out / "hang").exists()
    # The good video meanwhile: every frame (decoded in several chunks), in order, as png.
    record = json.loads((out / "good" / "frames.json").read_text())
    assert record["indices"] == list(range(70)) and record["files"][-1] == "000069.png"
    for n in (0, 63, 64, 69):
        assert abs(np.asarray(Image.open(out / "good" / f"{n:06d}.png")).mean() - 3 * n) < 3


def test_unfinished_shard_is_never_published(tmp_path):
    from videovlm.video.extract.sinks import ShardSink, done_shard_keys

    out = tmp_path / "out"
    out.mkdir()
    sink = ShardSink(out, out / ".partial" / "all", "videos", max_count=2)
    for key in ("a", "b", "c"):
        sink.write(key, {"000000.jpg": b"jpeg bytes"}, {"key": key})
    # The first shard filled up and was renamed in; the second is still being written.
    assert [p.name for p in out.glob("*.tar")] == ["videos-000000.tar"]
    sink.discard()  # what an error or Ctrl-C does
    assert [p.name for p in out.glob("*.tar")] == ["videos-000000.tar"]
    assert done_shard_keys(out) == {"a", "b"}
    # The next run continues the numbering.
    sink = ShardSink(out, out / ".partial" / "all", "videos", max_count=2)
    sink.write("c", {"000000.jpg": b"jpeg bytes"}, {"key": "c"})
    sink.close()
    assert sorted(p.name for p in out.glob("*.tar")) == ["videos-000000.tar", "videos-000001.tar"]
    assert done_shard_keys(out) == {"a", "b", "c"}


def test_a_killed_run_leaves_nothing_half_done(video_folder, tmp_path, capsys):
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "in"
    for name in ("a.mp4", "sub/b.mp4", "sub/c.v2.mp4"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(video_folder / name)
    os.mkfifo(folder / "pipe.fifo")
    (folder / "hang.mp4").write_text("ffconcat version 1.0\nfile 'pipe.fifo'\n")
    out = tmp_path / "out"
    # One worker stuck on the hung video for a minute: the run is killed while it is busy.
    command = [sys.executable, "-m", "videovlm", "extract", str(folder), str(out), "--workers", "2", "--timeout", "60", "--no-progress"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(out.rglob("frames.json"))) < 3:
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the run, its workers and its fork server
        process.wait()
    # Killed while the hung video's temp folder existed: it is left behind, not done.
    assert list((out / ".partial" / "all").iterdir()) and not (out / "hang").exists()
    for mark in out.rglob("frames.json"):
        record = json.loads(mark.read_text())
        assert all((mark.parent / name).stat().st_size > 0 for name in record["files"])
    # The rerun finishes what was left: nothing done twice, the hang now times out quickly.
    assert extract(folder, out, "--timeout", "2") == 0
    summary = capsys.readouterr().out
    assert summary.startswith("done 0, skipped 3 (already done), failed 1"), summary
    assert not (out / ".partial").exists()


def test_a_manifest_s_rows_travel_with_their_video(video_folder, tmp_path):
    """Rows naming the same video under one key are one video whose record carries them all
    (every field but ``video``), in the manifest's order; a row of another key is its own video."""
    from videovlm.video.extract import extract_videos

    manifest = tmp_path / "qa.json"
    rows = [
        {"video": str(video_folder / "a.mp4"), "id": "a", "question": "what is it?", "answer": "grey"},
        {"video": str(video_folder / "sub" / "b.mp4"), "id": "b", "question": "how many?", "answer": "one"},
        {"video": str(video_folder / "a.mp4"), "id": "a", "question": "is it dark?", "answer": "yes"},
        {"video": str(video_folder / "a.mp4"), "id": "a_again", "question": "again?", "answer": "no"},
    ]
    manifest.write_text(json.dumps(rows))
    out = tmp_path / "out"
    summary = extract_videos(input_spec=str(manifest), output=out, workers=1, progress=False)
    assert (summary.done, summary.failed, summary.frames) == (3, 0, 24)
    record = json.loads((out / "a" / "frames.json").read_text())
    assert record["rows"] == [{"id": "a", "question": "what is it?", "answer": "grey"}, {"id": "a", "question": "is it dark?", "answer": "yes"}]
    assert json.loads((out / "a_again" / "frames.json").read_text())["rows"] == [{"id": "a_again", "question": "again?", "answer": "no"}]
    with pytest.raises(ExtractUsageError, match="--wds-frames 'gif'"):
        extract_videos(input_spec=str(manifest), output=tmp_path / "out2", image_format="wds", wds_frames="gif", progress=False)
