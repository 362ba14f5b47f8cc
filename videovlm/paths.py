"""Path checks shared by the commands: what a path given as an input file really is, outputs
that would overwrite an input, and atomic writes.

A command never overwrites one of its own inputs by accident: before writing, it compares
each output with every input after following symlinks and ``..`` (and by inode, for hard
links), and refuses with ``OutputPathError``. Files are written under a temporary name in
the target's folder and renamed over the target only once complete, so an interrupted run
leaves the old file (or none), never half of one.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

NOT_FOUND = "file not found"


class OutputPathError(ValueError):
    """An output path would overwrite an input of the same command, or cannot be a file."""


def file_problem(path: str | Path, *, missing: str = NOT_FOUND, special_ok: bool = False) -> str | None:
    """Why ``path`` cannot be read as a file, in words, or None when it can.

    ``missing`` is the words for a path that does not exist; a FIFO, socket or device counts
    as a file only with ``special_ok``. A folder, a symlink loop and a broken symlink are
    named as such, not reported as missing.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as e:
        return _stat_problem(path, e, missing)
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not special_ok and not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, socket or device)"
    return None


def _stat_problem(path: Path, error: OSError, missing: str) -> str:
    if error.errno == errno.ELOOP:
        return "is a symlink loop (the links never reach a file)"
    if error.errno == errno.ENOENT and path.is_symlink():
        return f"is a broken symlink (to {os.readlink(path)!r}, which does not exist)"
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return missing
    if error.errno == errno.ENAMETOOLONG:
        return "has a name too long for the file system"
    return f"cannot be read ({error.strerror or error})"


def real_path(path: str | Path) -> Path:
    """``path`` with every symlink followed and ``..`` resolved (a path that does not exist
    yet is resolved as far as it exists; a symlink loop is left as it is, never raised)."""
    return Path(os.path.realpath(os.path.abspath(path)))


def _same_file(a: Path, b: Path) -> bool:
    if real_path(a) == real_path(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links: two names, one file
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    real, base = real_path(path), real_path(folder)
    return real == base or base in real.parents


def check_outputs(
    outputs: Mapping[str, str | Path],
    *,
    files: Mapping[str, str | Path | None] = {},
    folders: Mapping[str, str | Path | None] = {},
) -> None:
    """Raise ``OutputPathError`` when an output (label -> path) is an existing folder, is
    the same file as one of ``files`` (label -> input path), or lies inside one of
    ``folders`` (inputs read as a whole, e.g. a model folder). None inputs are ignored."""
    for label, output in outputs.items():
        output = Path(output)
        if output.is_dir():
            raise OutputPathError(f"{label} {output}: is a folder; give a file path")
        for input_label, source in files.items():
            if source is not None and _same_file(output, Path(source)):
                raise OutputPathError(
                    f"{label} {output}: is the same file as {input_label} {source}; writing it would destroy "
                    "that input, so choose another output path"
                )
        for input_label, folder in folders.items():
            if folder is not None and _inside(output, Path(folder)):
                raise OutputPathError(
                    f"{label} {output}: lies inside {input_label} {folder}, which this command reads; "
                    "write the output outside that folder"
                )


def _temporary_beside(target: Path) -> Path:
    """A new empty file beside ``target`` (same folder, so the final rename is atomic),
    created with the usual permissions (0666 less the umask, unlike mkstemp's 0600)."""
    for _ in range(100):
        # At most 48 characters of the name: a long name plus the suffix must stay a valid name.
        temporary = target.with_name(f".{target.name[:48]}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temporary
        except FileExistsError:
            continue
    raise OutputPathError(f"{target}: cannot create a temporary file beside it")


@contextmanager
def atomic_output(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing (``mode`` ``"w"`` text, ``"wb"``
    bytes); on success it is renamed over ``path``, on an error it is removed.

    A symlink at ``path`` is written through (its target is replaced), as ``open(path,
    "w")`` would. The temporary file's name is ``handle.name``, for a user who wants to
    follow a long run with ``tail -f``.
    """
    target = real_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(target)
    try:
        with open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` through a temporary file beside it."""
    with atomic_output(path, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
