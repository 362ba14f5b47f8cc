"""Putting a video's finished folder in place without touching what extract did not write.

Each video folder ``OUTPUT/<key>/`` holds a hidden ``.extract-files.json``: the names of the
files extract wrote there. Publishing over an existing folder replaces or removes only those
files; a file of any other name stays as it is, and one that sits where extract would write
(a user's ``000000.jpg``, the source video...) makes that video fail with
``OutputConflictError`` instead of being overwritten. Keys never start with '.', so the
hidden name cannot clash with another key's folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from videovlm.paths import write_atomic

FRAMES_JSON = "frames.json"
OWNED_FILES = ".extract-files.json"
_WRITTEN_BY = "videovlm extract"
# What extract stages: one numbered folder per video, and webdataset shards being written.
_STAGED_NAME = re.compile(r"^(\d{8}|[\w.-]+-\d{6}\.tar)$")


class OutputConflictError(RuntimeError):
    """A video's output folder holds files extract did not write where it would write."""


def _plain_name(name: object) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\x00" not in name


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)  # a symlink put there is not a file extract wrote
    except OSError:
        return False


def owned_names(folder: Path) -> set[str]:
    """The names extract recorded as its own in ``folder`` that are still regular files
    there (empty when there is no record)."""
    record = folder / OWNED_FILES
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OutputConflictError(f"{record}: not the file list extract writes ({e}); move it away") from None
    names = data.get("files") if isinstance(data, dict) and data.get("written_by") == _WRITTEN_BY else None
    if not isinstance(names, list) or not all(_plain_name(n) for n in names):
        raise OutputConflictError(f"{record}: not the file list extract writes; move it away")
    return {n for n in names if _is_regular_file(folder / n)}


def record_owned(folder: Path, names: Iterable[str]) -> None:
    """Write ``folder``'s record of the files extract wrote there."""
    content = {"written_by": _WRITTEN_BY, "files": sorted(set(names) - {OWNED_FILES})}
    write_atomic(folder / OWNED_FILES, json.dumps(content) + "\n")


def publish_folder(staging: Path, final: Path) -> None:
    """Make ``staging`` (with its ``OWNED_FILES`` record) the video's output folder
    ``final`` so that ``final/frames.json`` (the "done" mark) exists only once every file is
    in place.

    Usually one atomic rename. When ``final`` already exists (a folder that other keys nest
    under, what a killed run left behind, a folder of the user's), the files extract wrote
    there before are removed or replaced and the new ones moved in one by one, ``frames.json``
    last; everything else stays. Raises ``OutputConflictError`` (nothing changed) when a
    file extract did not write has the name of one it would write.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(staging, final)  # replaces only a missing or empty folder
        return
    except OSError:
        if final.is_symlink() or not final.is_dir():
            raise OutputConflictError(f"{final} exists and is not a folder; nothing was overwritten") from None
    owned = owned_names(final)
    new_names = {p.name for p in staging.iterdir()} - {OWNED_FILES}
    in_the_way = sorted(n for n in new_names if n not in owned and os.path.lexists(final / n))
    if in_the_way:
        more = f" and {len(in_the_way) - 5} more" if len(in_the_way) > 5 else ""
        raise OutputConflictError(
            f"{final} holds {', '.join(in_the_way[:5])}{more}, which extract did not write, where this video's "
            "files go; nothing was overwritten: move those files away or choose another OUTPUT"
        )
    # Listed before anything moves: a run killed from here on leaves every name it may have
    # put in the folder recorded as its own, so the rerun can replace them.
    record_owned(final, owned | new_names)
    if FRAMES_JSON in owned:
        (final / FRAMES_JSON).unlink()  # the done mark goes first
    for name in sorted(owned - new_names - {FRAMES_JSON}):
        (final / name).unlink(missing_ok=True)
    for name in sorted(new_names - {FRAMES_JSON}):
        os.replace(staging / name, final / name)
    os.replace(staging / OWNED_FILES, final / OWNED_FILES)
    os.replace(staging / FRAMES_JSON, final / FRAMES_JSON)
    staging.rmdir()


def clear_staging(staging_root: Path) -> None:
    """Remove what extract staged under ``staging_root`` (numbered video folders, shard tars)
    and then the folder itself if that left it empty; anything else in it stays."""
    if staging_root.is_symlink() or not staging_root.is_dir():
        return
    for entry in staging_root.iterdir():
        if not _STAGED_NAME.match(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    try:
        staging_root.rmdir()
    except OSError:
        pass  # something that is not extract's is left in it
