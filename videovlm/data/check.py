"""``videovlm data check MANIFEST``: which videos of a data file will not decode, and why,
before a long run finds out.

The manifest is any file the training and evaluation commands read: a WebVid captions CSV,
a QA JSON, an instructions JSON (its video items; images are checked to exist) or a
multiple-choice JSON; the kind is told from the extension and the first item's fields. Each
distinct video is opened and its first, middle and last frames decoded with the reader the
training datasets use (``videovlm.video.open_video``, backend ``auto``), so a file whose index
or tail is broken is found too.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from videovlm.data.formats import DataFormatError


@dataclass
class CheckReport:
    """``checked`` distinct media files; ``failures`` path -> reason; ``reasons`` counts per kind of failure."""

    manifest: Path
    kind: str
    checked: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def reasons(self) -> Counter:
        return Counter(reason.split(":", 1)[0] for reason in self.failures.values())


def manifest_kind(path: Path) -> str:
    """``captions`` (CSV), ``mcq``, ``instructions`` or ``qa`` (JSON), from the first item."""
    if path.suffix.lower() == ".csv":
        return "captions"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(path, None, None, f"not a readable JSON manifest ({type(e).__name__}: {e})") from None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None
    if first is None:
        raise DataFormatError(path, None, None, "expected a non-empty JSON list of objects")
    if "candidates" in first or "options" in first:
        return "mcq"
    if "conversations" in first or "QA" in first:
        return "instructions"
    if "question" in first:
        return "qa"
    raise DataFormatError(path, "item 1", None, f"cannot tell the manifest kind from the fields {sorted(first)}")


def manifest_media(path: Path) -> tuple[str, list[tuple[Path, bool]]]:
    """The kind and the distinct (media path, is_video) pairs of a manifest, in order."""
    from videovlm.data import formats
    from videovlm.data.mcq import read_mcq_json

    kind = manifest_kind(path)
    if kind == "captions":
        media = [(r.video, True) for r in formats.read_webvid_csv(path, check_files=False)]
    elif kind == "qa":
        media = [(r.video, True) for r in formats.read_qa_json(path, check_files=False)]
    elif kind == "mcq":
        media = [(r.video, True) for r in read_mcq_json(path, check_files=False)]
    else:
        media = [(r.media, r.media_kind == "video") for r in formats.read_instructions_json(path, check_files=False)]
    return kind, list(dict.fromkeys(media))


def check_video(path: Path) -> str | None:
    """None when the first, middle and last frames decode, else the reason."""
    from videovlm.paths import file_problem
    from videovlm.video import open_video
    from videovlm.video.types import VideoDecodeError

    from videovlm.video.frame_folder import is_frame_folder

    problem = None if is_frame_folder(path) else file_problem(path)  # extracted frames stand for a video
    if problem is not None:
        return f"missing: {problem}"
    try:
        with open_video(path) as reader:
            count = reader.metadata.num_frames
            if count < 1:
                return "no frames: the video stream holds no frames"
            reader.get_frames(sorted({0, count // 2, count - 1}))
    except VideoDecodeError as e:
        return f"undecodable: {e.reason}"
    except (OSError, ValueError, RuntimeError) as e:
        return f"unreadable: {type(e).__name__}: {e}"
    return None


def check_manifest(path: str | Path, *, progress: bool = False) -> CheckReport:
    """Check every distinct video (and image) a manifest names."""
    from tqdm import tqdm

    from videovlm.paths import file_problem

    path = Path(path)
    kind, media = manifest_media(path)
    report = CheckReport(manifest=path, kind=kind)
    for media_path, is_video in tqdm(media, desc="checking", unit="file", disable=not progress):
        report.checked += 1
        if is_video:
            reason = check_video(media_path)
        else:
            problem = file_problem(media_path)
            reason = None if problem is None else f"missing: {problem}"
        if reason is not None:
            report.failures[str(media_path)] = reason
    return report
