"""`videovlm extract` never deletes or overwrites what it did not write, refuses an OUTPUT that
is its INPUT, caps frame sizes, keeps going past bad keys, and its workers die with the run.
Real videos, real worker processes; the kill tests run the command in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from videovlm.cli import main
from videovlm.video.extract import FrameSize
from videovlm.video.extract.publish import (
    OWNED_FILES,
    OutputConflictError,
    clear_staging,
    publish_folder,
    record_owned,
)
from videovlm.video.writer import write_video


def _clip(path: Path, num_frames: int = 12) -> Path:
    frames = [np.full((48, 64, 3), 10 * i, dtype=np.uint8) for i in range(num_frames)]
    return write_video(path, frames, fps=25, crf=10)


def extract(*args: object) -> int:
    return main(["extract", *map(str, args), "--workers", "2", "--no-progress"])


def failures_of(out: Path) -> dict[str, str]:
    lines = (out / "failures.jsonl").read_text().splitlines()
    return {item["key"]: item["error"] for item in map(json.loads, lines)}


def summary_counts(text: str) -> tuple[int, int, int]:
    """(done, skipped, failed) from the summary line."""
    words = text.replace(",", " ").split()
    return int(words[1]), int(words[3]), int(words[words.index("failed") + 1])


def _staged(tmp_path: Path, files: dict[str, bytes]) -> Path:
    staging = tmp_path / "staging"
    staging.mkdir()
    for name, data in files.items():
        (staging / name).write_bytes(data)
    record_owned(staging, files)
    return staging


def test_publish_replaces_only_its_own_files(tmp_path):
    final = tmp_path / "out" / "clip"
    final.mkdir(parents=True)
    (final / "notes.txt").write_text("mine")
    (final / "nested").mkdir()  # another key's folder
    publish_folder(_staged(tmp_path, {"000000.jpg": b"new", "frames.json": b"{}"}), final)
    assert (final / "notes.txt").read_text() == "mine" and (final / "nested").is_dir()
    assert json.loads((final / OWNED_FILES).read_text())["files"] == ["000000.jpg", "frames.json"]
    # Republishing a shorter sample: the old frame extract wrote goes, the user's file stays.
    (final / "frames.json").unlink()
    publish_folder(_staged(tmp_path, {"000001.jpg": b"newer", "frames.json": b"{}"}), final)
    assert sorted(p.name for p in final.iterdir()) == [OWNED_FILES, "000001.jpg", "frames.json", "nested", "notes.txt"]


@pytest.mark.parametrize("planted", ["user_frame", "symlink", "bad_record", "escaping_record"])
def test_publish_refuses_files_it_did_not_write(tmp_path, planted):
    final = tmp_path / "out" / "clip"
    final.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    if planted == "user_frame":
        (final / "000000.jpg").write_bytes(b"the user's own picture")
    elif planted == "symlink":  # where extract's frame was, someone put a link to their file
        record_owned(final, ["000000.jpg"])
        (final / "000000.jpg").symlink_to(victim)
    elif planted == "bad_record":
        (final / OWNED_FILES).write_text("not json")
    else:
        (final / OWNED_FILES).write_text(json.dumps({"written_by": "videovlm extract", "files": ["../../victim.txt"]}))
    before = {p.name: (p.read_bytes() if p.is_file() else None) for p in final.iterdir()}
    with pytest.raises(OutputConflictError, match=str(final)):
        publish_folder(_staged(tmp_path, {"000000.jpg": b"new", "frames.json": b"{}"}), final)
    assert {p.name: (p.read_bytes() if p.is_file() else None) for p in final.iterdir()} == before
    assert victim.read_text() == "keep me"


def test_extract_keeps_user_files_and_the_source_video(tmp_path, capsys):
    # OUTPUT is the folder the manifest's videos are in: the key "a" of a.mp4 is the folder
    # a/, which holds the user's notes and another source video.
    data = tmp_path / "data"
    _clip(data / "a.mp4")
    nested_video = _clip(data / "a" / "b.mp4")
    (data / "a" / "notes.txt").write_text("mine")
    _clip(data / "c.mp4")
    (data / "c").mkdir()
    (data / "c" / "000003.jpg").write_bytes(b"a picture of the user's")
    manifest = data / "list.csv"
    manifest.write_text("video\na.mp4\nc.mp4\n")
    nested_bytes = nested_video.read_bytes()
    assert extract(manifest, data, "--sampler", "uniform:4") == 0
    assert summary_counts(capsys.readouterr().out) == (1, 0, 1)
    assert nested_video.read_bytes() == nested_bytes and (data / "a" / "notes.txt").read_text() == "mine"
    assert (data / "a" / "frames.json").is_file() and (data / "a.mp4").is_file()
    # c/ holds a user file where a frame goes: that video fails, nothing of the user's changes.
    error = failures_of(data)["c"]
    assert error.startswith("OutputConflictError") and "000003.jpg" in error and "nothing was overwritten" in error
    assert (data / "c" / "000003.jpg").read_bytes() == b"a picture of the user's"
    assert sorted(p.name for p in (data / "c").iterdir()) == ["000003.jpg"]


def test_foreign_failure_log_and_staging_are_left_alone(tmp_path, capsys):
    videos = tmp_path / "videos"
    _clip(videos / "a.mp4")
    out = tmp_path / "out"
    out.mkdir()
    (out / "failures.jsonl").write_text("my own list of failures\n")
    assert extract(videos, out) == 2
    assert "failures.jsonl: exists and is not a failure log" in capsys.readouterr().err
    assert (out / "failures.jsonl").read_text() == "my own list of failures\n"
    (out / "failures.jsonl").unlink()
    # In extract's temporary folder, only what extract stages there is removed.
    staging = out / ".partial" / "all"
    (staging / "00000007").mkdir(parents=True)
    (staging / "keep.txt").write_text("not extract's")
    clear_staging(staging)
    assert sorted(p.name for p in staging.iterdir()) == ["keep.txt"]
    assert extract(videos, out) == 0 and (out / "a" / "frames.json").is_file()
    assert (staging / "keep.txt").is_file()


def test_output_that_is_the_input_is_refused(tmp_path, capsys):
    videos = tmp_path / "videos"
    _clip(videos / "a.mp4")
    _clip(videos / "sub" / "b.mp4")
    (tmp_path / "link").symlink_to(videos)
    cases = [
        (videos, videos, "is the INPUT folder"),
        (videos, tmp_path / "link", "is the INPUT folder"),
        (videos / "sub", videos / "sub" / ".." / "sub", "is the INPUT folder"),
        (f"{videos}/**/*.mp4", videos, "is the INPUT folder"),
        (videos / "sub", videos, "lies inside OUTPUT"),
    ]
    for source, output, message in cases:
        assert extract(source, output) == 2, (source, output)
        assert message in capsys.readouterr().err
    assert sorted(p.relative_to(videos).as_posix() for p in videos.rglob("*")) == ["a.mp4", "sub", "sub/b.mp4"]
    # OUTPUT inside INPUT is fine: it is left out of the search, every video is found.
    assert extract(videos, videos / "frames") == 0
    assert summary_counts(capsys.readouterr().out) == (2, 0, 0)


def test_frame_sizes_are_capped(tmp_path, capsys):
    for text, message in [("100000x100000", "over 8192"), ("8193x10", "over 8192"), ("5000x5000", "over the cap"), ("5000", "over the cap")]:
        with pytest.raises(ValueError, match=message):
            FrameSize.parse(text)
    with pytest.raises(ValueError, match="over the cap"):
        FrameSize(width=4097, height=4096)  # the API checks too, not only --size
    assert FrameSize.parse("8192x2048").for_source(64, 48) == (8192, 2048)  # exactly at the cap
    # A short side within the cap can still make an elongated video too large: that video fails.
    with pytest.raises(ValueError, match="makes this 64x48 video 5333x4000"):
        FrameSize.parse("4000").for_source(64, 48)
    videos = tmp_path / "videos"
    _clip(videos / "a.mp4")
    _clip(videos / "b.mp4")
    out = tmp_path / "out"
    assert extract(videos, out, "--size", "100000x100000") == 2
    assert "--size 100000x100000" in capsys.readouterr().err and not out.exists()
    assert extract(videos, out, "--size", "4000") == 0
    assert summary_counts(capsys.readouterr().out) == (0, 0, 2)
    assert all("over the cap" in error for error in failures_of(out).values())


def test_bad_keys_are_failure_lines_not_the_end_of_the_run(tmp_path, capsys):
    video = _clip(tmp_path / "a.mp4")
    keys = ["k" * 300, "é" * 130, "/".join(["p" * 200] * 25), "fine"]  # 300 and 260 bytes; a 5000-byte path
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("".join(json.dumps({"video": str(video), "id": key}) + "\n" for key in keys))
    out = tmp_path / "out"
    assert extract(manifest, out) == 0
    assert summary_counts(capsys.readouterr().out) == (1, 0, 3)
    failures = failures_of(out)
    assert sorted(failures) == sorted(keys[:3])
    assert "over the 251 a file name can have" in failures[keys[0]] and "over the 251" in failures[keys[1]]
    assert "cannot look for its output" in failures[keys[2]]
    assert (out / "fine" / "frames.json").is_file()


def test_undecodable_file_names_and_things_that_are_not_videos(tmp_path, capsys):
    videos = tmp_path / "videos"
    good = _clip(videos / "good.mp4")
    os.rename(_clip(videos / "tmp.mp4"), os.fsencode(videos) + b"/bad\xff.mp4")  # not UTF-8
    (videos / "loop.mp4").symlink_to("loop.mp4")
    (videos / "folder.mp4").mkdir()  # not listed: a folder is searched, and holds no video
    (tmp_path / "list.csv").write_text(f"video\n{videos / 'folder.mp4'}\n{videos / 'loop.mp4'}\n{good}\n")
    out = tmp_path / "out"
    assert extract(videos, out, "--shard", "0/1") == 0  # the hash of a key that is not UTF-8
    done, _, failed = summary_counts(capsys.readouterr().out)
    assert done + failed == 3 and "symlink loop" in failures_of_shard(out)["loop"]
    assert extract(tmp_path / "list.csv", tmp_path / "out2") == 0
    assert summary_counts(capsys.readouterr().out) == (1, 0, 2)
    failures = {Path(k).name: v for k, v in failures_of(tmp_path / "out2").items()}
    assert "is a directory, not a file" in failures["folder"] and "symlink loop" in failures["loop"]
    assert extract(videos / "loop.mp4", out) == 2
    assert "symlink loop" in capsys.readouterr().err


def failures_of_shard(out: Path) -> dict[str, str]:
    lines = (out / "failures-shard0of1.jsonl").read_text().splitlines()
    return {item["key"]: item["error"] for item in map(json.loads, lines)}


def test_manifest_paths_are_relative_to_the_manifest(tmp_path, monkeypatch, capsys):
    _clip(tmp_path / "videos" / "a.mp4")
    absolute = _clip(tmp_path / "elsewhere" / "b.mp4")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "m.jsonl").write_text(
        json.dumps({"video": "../videos/a.mp4", "id": "a"}) + "\n" + json.dumps({"video": str(absolute), "id": "b"}) + "\n"
    )
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # not the manifest's folder
    assert extract("../lists/m.jsonl", "out") == 0
    assert summary_counts(capsys.readouterr().out) == (2, 0, 0)
    records = {k: json.loads((workdir / "out" / k / "frames.json").read_text()) for k in ("a", "b")}
    assert Path(records["a"]["video"]).resolve() == (tmp_path / "videos" / "a.mp4").resolve()
    assert records["b"]["video"] == str(absolute)


def _session_processes(session: int) -> list[str]:
    """Command lines of the live processes of a session (ps-like, from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(f"{entry}: {command[:100]}")
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
@pytest.mark.parametrize("kill_signal", [signal.SIGTERM, signal.SIGKILL])
def test_workers_die_with_the_run(tmp_path, kill_signal):
    folder = tmp_path / "in"
    _clip(folder / "good.mp4")
    os.mkfifo(folder / "pipe.fifo")
    (folder / "hang.mp4").write_text("ffconcat version 1.0\nfile 'pipe.fifo'\n")  # decoding blocks forever
    out = tmp_path / "out"
    command = [sys.executable, "-m", "videovlm", "extract", str(folder), str(out), "--workers", "2", "--timeout", "120", "--no-progress"]
    run = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        # The good video is done and a worker is stuck on the hung one.
        while time.monotonic() < deadline and not ((out / "good" / "frames.json").is_file() and len(_session_processes(run.pid)) >= 4):
            time.sleep(0.2)
        assert (out / "good" / "frames.json").is_file(), "the run never got going"
        os.kill(run.pid, kill_signal)  # the run's process only, as a scheduler or the OOM killer does
        assert run.wait(timeout=30) == (128 + signal.SIGTERM if kill_signal == signal.SIGTERM else -signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _session_processes(run.pid):
            time.sleep(0.2)
        assert _session_processes(run.pid) == [], "orphan processes outlived the run"
        if kill_signal == signal.SIGTERM:  # stopped through the cleanup: nothing half-written left
            assert not (out / ".partial").exists() and (out / "failures.jsonl").is_file()
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        run.wait()


def test_a_finished_shard_never_replaces_another(tmp_path):
    from videovlm.video.extract.sinks import ShardSink, done_shard_keys

    out = tmp_path / "out"
    out.mkdir()
    # Two runs of the same part at once: both start numbering at 000000.
    first = ShardSink(out, out / ".partial" / "a", "videos", max_count=10)
    second = ShardSink(out, out / ".partial" / "b", "videos", max_count=10)
    first.write("x", {"000000.jpg": b"jpeg"}, {"key": "x"})
    second.write("y", {"000000.jpg": b"jpeg"}, {"key": "y"})
    first.close()
    second.close()
    assert sorted(p.name for p in out.glob("*.tar")) == ["videos-000000.tar", "videos-000001.tar"]
    assert done_shard_keys(out) == {"x", "y"}
