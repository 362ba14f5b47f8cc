"""What ``videovlm extract`` reads: the list of videos and the output key of each.

INPUT is a folder (searched recursively), a glob, a single video, or a manifest (CSV, JSON
list of objects, or JSONL) with a ``video`` column and an optional ``id``. A video's key is
the manifest ``id``, else its path relative to INPUT (the glob's fixed prefix, the
manifest's folder) without the suffix; it names the video's output under OUTPUT.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from videovlm.paths import file_problem, real_path

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp", ".ogv"}
)
MANIFEST_SUFFIXES = frozenset({".csv", ".json", ".jsonl"})
_GLOB_CHARS = set("*?[")
# File systems allow 255 bytes per name; a key's last part also gets ".png" appended (a wds
# contact sheet), so key parts may have 251 bytes.
MAX_KEY_PART_BYTES = 255 - len(".png")


class ExtractUsageError(ValueError):
    """The command line or the manifest is wrong (exit code 2); the message says where."""


@dataclass(frozen=True)
class VideoEntry:
    """One video to extract.

    Fields:
        key: the output name under OUTPUT, a relative POSIX path without suffix.
        path: the video file as found (relative paths stay relative to the working dir).
        problem: why this video cannot be extracted (a key that would escape OUTPUT, a key
            another video already has); such entries are reported as failures.
        rows: a manifest's rows of this video (every field but ``video``: the captions,
            questions, conversations), carried into its frames.json / shard sample so that
            training can read the text from the extraction; empty for folders and globs.
    """

    key: str
    path: str
    problem: str | None = None
    rows: tuple[dict, ...] = ()


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot name an output inside OUTPUT, or None when it can."""
    if not key:
        return "empty key"
    if "\\" in key or "\x00" in key:
        return f"key {key!r} contains a backslash or NUL"
    pure = PurePosixPath(key)
    if pure.is_absolute():
        return f"key {key!r} is an absolute path (it would be written outside OUTPUT)"
    for part in pure.parts:
        if part in (".", ".."):
            return f"key {key!r} contains {part!r} (it would be written outside its folder)"
        if part.startswith("."):
            return f"key {key!r} has a component starting with '.' (reserved for temporary files)"
        if len(_name_bytes(part)) > MAX_KEY_PART_BYTES:
            return (
                f"key {key[:60]!r}... has a component of {len(_name_bytes(part))} bytes, over the "
                f"{MAX_KEY_PART_BYTES} a file name can have here; give the video a shorter 'id'"
            )
    return None


def _name_bytes(text: str) -> bytes:
    """``text`` as the file system gets it (undecodable bytes of a file name come back as they were)."""
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:  # a lone surrogate from a manifest's JSON escapes
        return text.encode("utf-8", "surrogatepass")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``."""
    index, slash, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ExtractUsageError(f"--shard {text!r}: expected I/N with integers, e.g. 0/4") from None
    if not slash or n < 1 or not 0 <= i < n:
        raise ExtractUsageError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4")
    return i, n


def shard_of(key: str, num_shards: int) -> int:
    """The shard a key belongs to: a hash of the key, so a video stays in its shard when
    other videos are added or removed, and every machine computes the same split."""
    # surrogatepass: a key from an undecodable file name hashes too (valid text is unchanged).
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def take_shard(entries: Iterable[VideoEntry], index: int, count: int) -> list[VideoEntry]:
    return [e for e in entries if shard_of(e.key, count) == index]


def mark_duplicates(entries: Iterable[VideoEntry], output_name: Callable[[str], str]) -> list[VideoEntry]:
    """Sort by key and mark every entry whose output name an earlier one already has."""
    owners: dict[str, str] = {}
    marked = []
    for entry in sorted(entries, key=lambda e: (e.key, e.path)):
        if entry.problem is None:
            name = output_name(entry.key)
            if name in owners:
                entry = replace(entry, problem=f"key {entry.key!r} gives the same output as {owners[name]}")
            else:
                owners[name] = entry.path
        marked.append(entry)
    return marked


def _key_from_path(path: Path, base: Path) -> str:
    try:
        relative = path.relative_to(base)
    except ValueError:
        # Outside the base (an absolute manifest path elsewhere): the path without its root.
        relative = Path(*path.parts[1:]) if path.is_absolute() else path
    return relative.with_suffix("").as_posix()


def _entry(path: Path, key: str, rows: tuple[dict, ...] = ()) -> VideoEntry:
    return VideoEntry(key=key, path=str(path), problem=key_problem(key), rows=rows)


def _is_video(path: Path) -> bool:
    # Not `is_file()`: a named pipe or a broken link named .mp4 is listed and then fails
    # with its own error, rather than silently vanishing from the run.
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.is_dir()


def _under(path: Path, folder: Path) -> bool:
    # real_path, not Path.resolve: a symlink loop among the videos must not raise here.
    real = real_path(path)
    return real == folder or folder in real.parents


def _scan_folder(folder: Path, output: Path) -> list[VideoEntry]:
    output = real_path(output)
    entries = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        # Hidden folders and the output folder (when it lies inside INPUT) are not input.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _under(root_path / d, output))
        for name in sorted(files):
            path = root_path / name
            if not name.startswith(".") and _is_video(path):
                entries.append(_entry(path, _key_from_path(path, folder)))
    return entries


def _glob_base(pattern: str) -> Path:
    parts = []
    for part in Path(pattern).parts:
        if _GLOB_CHARS & set(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _scan_glob(pattern: str, output: Path) -> list[VideoEntry]:
    base = _glob_base(pattern)
    output = real_path(output)
    paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    return [_entry(p, _key_from_path(p, base)) for p in paths if _is_video(p) and not _under(p, output)]


def _manifest_rows(path: Path) -> list[tuple[str, dict]]:
    """``(where, row)`` pairs; ``where`` names the line or item for error messages."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ExtractUsageError(f"{path}: cannot read the manifest: {e}") from None
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "video" not in reader.fieldnames:
            raise ExtractUsageError(f"{path}: no 'video' column (columns: {reader.fieldnames or []})")
        # Line numbers: the header is line 1.
        return [(f"{path}:{n}", row) for n, row in enumerate(reader, start=2)]
    if suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path}:{n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ExtractUsageError(f"{path}:{n}: not valid JSON: {e.msg}") from None
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ExtractUsageError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if not isinstance(data, list):
        raise ExtractUsageError(f"{path}: a JSON manifest is a list of objects, got {type(data).__name__}")
    return [(f"{path}: item {n}", row) for n, row in enumerate(data)]


def _scan_manifest(path: Path) -> list[VideoEntry]:
    """One entry per (key, video): the rows naming the same video under the same key (the
    questions of one video in a qa.json) become that entry's ``rows``."""
    base = path.parent
    grouped: dict[tuple[str, Path], list[dict]] = {}
    for where, row in _manifest_rows(path):
        if not isinstance(row, dict):
            raise ExtractUsageError(f"{where}: expected an object with a 'video' field, got {type(row).__name__}")
        key, video_path = _manifest_video(where, row, base)
        grouped.setdefault((key, video_path), []).append({k: v for k, v in row.items() if k != "video"})
    return [_entry(video_path, key, tuple(rows)) for (key, video_path), rows in grouped.items()]


def _manifest_video(where: str, row: dict, base: Path) -> tuple[str, Path]:
    """(key, video path) of a manifest row."""
    video = row.get("video")
    if not isinstance(video, str) or not video.strip():
        raise ExtractUsageError(f"{where}: field 'video' must be a non-empty path, got {video!r}")
    video_path = Path(video.strip())
    if not video_path.is_absolute():
        # Lexically normalised: "../clips/x.mp4" is a sibling folder's video, not a key
        # with ".." in it.
        video_path = Path(os.path.normpath(base / video_path))
    video_id = row.get("id")
    if video_id in (None, ""):
        return _key_from_path(video_path, base), video_path
    if isinstance(video_id, (str, int)) and not isinstance(video_id, bool):
        return str(video_id), video_path
    raise ExtractUsageError(f"{where}: field 'id' must be a string or integer, got {video_id!r}")


def check_placement(folder: Path, output: Path) -> None:
    """Raise ``ExtractUsageError`` when a searched INPUT ``folder`` (a folder, a glob's fixed
    part) is OUTPUT or lies inside it. OUTPUT inside INPUT is fine: the search leaves it out.

    Refused rather than half done: the search leaves out everything inside OUTPUT, so with
    OUTPUT = INPUT every sub-folder would be skipped in silence, and the frame folders
    (OUTPUT/<key>/) would sit among the videos.
    """
    source, target = real_path(folder), real_path(output)
    if source == target:
        raise ExtractUsageError(
            f"OUTPUT {output} is the INPUT folder {folder} itself: its sub-folders would be skipped as output and "
            "the frames written among the videos; choose a separate OUTPUT (one inside INPUT is left out of the search)"
        )
    if target in source.parents:
        raise ExtractUsageError(
            f"INPUT {folder} lies inside OUTPUT {output}: the search leaves OUTPUT out, so no video would be "
            "found; choose an OUTPUT outside INPUT (or inside it)"
        )


def list_inputs(input_spec: str, *, output: Path) -> list[VideoEntry]:
    """Every video named by INPUT, sorted by key; raises ``ExtractUsageError`` when INPUT is
    missing, an unreadable manifest, names no video, or is searched where OUTPUT is
    (``check_placement``)."""
    path = Path(input_spec)
    output = Path(output)
    if path.is_dir():
        check_placement(path, output)
        entries = _scan_folder(path, output)
    elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        entries = _scan_manifest(path)
    elif path.exists() and _is_video(path):
        entries = [_entry(path, path.stem)]
    elif _GLOB_CHARS & set(input_spec):
        check_placement(_glob_base(input_spec), output)
        entries = _scan_glob(input_spec, output)
    elif path.exists():
        raise ExtractUsageError(
            f"INPUT {input_spec}: not a folder, a video ({', '.join(sorted(VIDEO_SUFFIXES))}) "
            f"or a manifest ({', '.join(sorted(MANIFEST_SUFFIXES))})"
        )
    else:
        raise ExtractUsageError(f"INPUT {input_spec}: {file_problem(path, missing='no such file or folder')}")
    if not entries:
        raise ExtractUsageError(f"INPUT {input_spec}: no videos found")
    return sorted(entries, key=lambda e: (e.key, e.path))
