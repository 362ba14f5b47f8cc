"""Where finished videos and failures go: the failure log and the webdataset shard sink."""

from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path, PurePosixPath

import webdataset as wds
from webdataset.tariterators import base_plus_ext

from videovlm.video.extract.inputs import ExtractUsageError

_FAILURE_FIELDS = {"video", "key", "error"}


def check_failure_log(path: Path) -> None:
    """Raise ``ExtractUsageError`` when ``path`` exists but is not a failure log extract wrote
    (judged by its first line): each run rewrites the log, and must not rewrite a user's file."""
    if not os.path.lexists(path):
        return
    item = None  # a folder, a link or a special file is never extract's log
    if path.is_file() and not path.is_symlink():
        try:
            with open(path, encoding="utf-8") as handle:
                first = handle.readline()
            item = json.loads(first) if first.strip() else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            item = None
    if not isinstance(item, dict) or not set(item) <= _FAILURE_FIELDS:
        raise ExtractUsageError(
            f"{path}: exists and is not a failure log written by extract, which rewrites this file on every run; "
            "move it away or choose another OUTPUT"
        )


class FailureLog:
    """``failures.jsonl``: one ``{"video", "key", "error"}`` line per failed video, flushed
    as it happens so a killed run still says what failed. Rewritten by each run (failed
    videos are retried by the next run)."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115  closed by close()

    def add(self, *, video: str, key: str, error: str) -> None:
        self._file.write(json.dumps({"video": video, "key": key, "error": error}) + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        self._file.close()


def wds_key(key: str) -> str:
    """The sample key in a tar: webdataset splits a member name at the first '.' of its
    last component, so dots there become '_' (the original key is in the sample's json)."""
    pure = PurePosixPath(key)
    return str(pure.with_name(pure.name.replace(".", "_")))


class ShardSink:
    """Writes one sample per video into webdataset tar shards
    ``OUTPUT/<prefix>-NNNNNN.tar``.

    A shard is written under ``staging`` and renamed into OUTPUT when complete, so a killed
    run leaves no partial shard and its videos are redone; new shards continue the
    numbering after the ones already there.
    """

    def __init__(self, output: Path, staging: Path, prefix: str, *, max_count: int):
        self.output = output
        self.staging = staging
        self.prefix = prefix
        self.max_count = max_count
        self._writer: wds.ShardWriter | None = None

    @staticmethod
    def shard_pattern() -> re.Pattern[str]:
        return re.compile(r"^videos(?:-shard\d+of\d+)?-(\d{6})\.tar$")

    def _next_number(self) -> int:
        pattern = re.compile(rf"^{re.escape(self.prefix)}-(\d{{6}})\.tar$")
        numbers = [int(m.group(1)) for p in self.output.iterdir() if (m := pattern.match(p.name))]
        return max(numbers, default=-1) + 1

    def _publish(self, staged_name: str) -> None:
        """Move a finished shard into OUTPUT under a number no file has yet: a shard of
        another run of the same part at once, or a file put there, is never overwritten."""
        staged = Path(staged_name)
        number = int(staged.stem.rsplit("-", 1)[1])
        while True:
            target = self.output / f"{self.prefix}-{number:06d}.tar"
            try:
                os.link(staged, target)  # fails if the name is taken: no check-then-write race
            except FileExistsError:
                number += 1
                continue
            except OSError:  # no hard links on this file system: check, then rename
                if os.path.lexists(target):
                    number += 1
                    continue
                os.rename(staged, target)
                return
            staged.unlink()
            return

    def write(self, key: str, files: dict[str, bytes], record: dict) -> None:
        if self._writer is None:
            # Opened on the first sample: a run with nothing new writes no empty shard.
            self.staging.mkdir(parents=True, exist_ok=True)
            self._writer = wds.ShardWriter(
                str(self.staging / f"{self.prefix}-%06d.tar"),
                maxcount=self.max_count,
                post=self._publish,
                start_shard=self._next_number(),
                verbose=0,
            )
        self._writer.write({"__key__": wds_key(key), **files, "json": record})

    def close(self) -> None:
        """Finish and publish the current shard."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def discard(self) -> None:
        """Close the current shard without publishing it (it stays under ``staging``, which
        the run removes); no-op after ``close``."""
        if self._writer is not None:
            self._writer.post = None
            self._writer.close()
            self._writer = None


def done_shard_keys(output: Path) -> set[str]:
    """Sample keys in the complete shards already in OUTPUT (any ``--shard`` part)."""
    keys: set[str] = set()
    if not output.is_dir():
        return keys
    pattern = ShardSink.shard_pattern()
    for path in sorted(output.iterdir()):
        if not pattern.match(path.name):
            continue
        with tarfile.open(path) as tar:
            for name in tar.getnames():
                key, _ = base_plus_ext(name)
                if key is not None:
                    keys.add(key)
    return keys
