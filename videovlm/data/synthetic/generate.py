"""Generate the synthetic data set: videos, images and text files for each split.

Every video is a pure function of ``(seed, split, index)`` (numpy ``default_rng`` seeded with
that triple), so results do not depend on the number of worker processes, and splits never share
a random stream.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from videovlm.data.synthetic.captions import make_caption, make_conversation, make_image_caption, pick_image_frame
from videovlm.data.synthetic.questions import sample_questions
from videovlm.data.synthetic.render import render_background, render_video
from videovlm.data.synthetic.scene import sample_scene
from videovlm.video.writer import write_video

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FILES: tuple[str, ...] = ("captions.csv", "qa.json", "mcq.json", "instructions.json", "image_captions.json", "annotations.jsonl")
# x264 quality: low enough that the saturated colours keep their hue after 4:2:0 subsampling.
VIDEO_CRF = 18
X264_PRESET = "veryfast"  # ~40% less encode time than the default "medium" and no larger at this size
JPEG_QUALITY = 92
# Written first into every generated folder: --overwrite removes split folders only where it is.
GENERATED_MARKER = ".videovlm-synth"
# Upper bounds of --size and --frames: a video is rendered in memory (size^2 * 3 * frames
# bytes), so 1024 px and 512 frames keep one video under 1.6 GB per worker.
MAX_SIZE = 1024
MAX_FRAMES = 512


@dataclass(frozen=True)
class VideoTask:
    split_dir: str
    seed: int
    split_number: int
    index: int
    size: int
    num_frames: int
    fps: float

    @property
    def video_id(self) -> str:
        return f"{SPLITS[self.split_number]}_{self.index:05d}"


def make_video(task: VideoTask) -> dict:
    """Draw, render and write one video and its image; return its JSON records."""
    rng = np.random.default_rng([task.seed, task.split_number, task.index])
    ann = sample_scene(rng, video_id=task.video_id, size=task.size, num_frames=task.num_frames, fps=task.fps)
    frames = render_video(ann, render_background(rng, height=task.size, width=task.size))  # (T, H, W, 3)
    split_dir = Path(task.split_dir)
    write_video(split_dir / ann.video, frames, fps=task.fps, crf=VIDEO_CRF, options={"preset": X264_PRESET})
    qa_items = sample_questions(rng, ann)
    caption = make_caption(rng, ann)
    turns = make_conversation(rng, caption, qa_items)
    frame = pick_image_frame(rng, ann)
    image_id = f"{ann.video_id}_f{frame:02d}"
    image = f"images/{image_id}.jpg"
    (split_dir / "images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(frames[frame]).save(split_dir / image, quality=JPEG_QUALITY)
    conversations = []
    for number, turn in enumerate(turns):
        conversations.append({"from": "human", "value": ("<video>\n" if number == 0 else "") + turn.human})
        conversations.append({"from": "gpt", "value": turn.gpt})
    return {
        "annotation": ann.to_json(),
        "caption": {"videoid": ann.video_id, "name": caption, "page_dir": "videos", "duration": f"{ann.num_frames / ann.fps:g}", "video": ann.video},
        "qa": [{"video_id": ann.video_id, "video": ann.video, "question": q.question, "answer": q.answer, "type": q.type} for q in qa_items],
        "instruction": {"id": ann.video_id, "video": ann.video, "conversations": conversations},
        "image_caption": {"id": image_id, "image": image, "caption": make_image_caption(rng, ann, frame)},
    }


@dataclass(frozen=True)
class GenerationResult:
    output_dir: Path
    counts: dict[str, int]  # videos per split
    seconds: float  # wall-clock time of the whole generation
    cpu_seconds: float  # CPU time (user + system) of this process and its worker processes
    workers: int


def generate(
    output_dir: str | Path,
    *,
    train: int = 2000,
    val: int = 200,
    test: int = 200,
    seed: int = 0,
    size: int = 112,
    frames: int = 16,
    fps: float = 8.0,
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = False,
) -> GenerationResult:
    """Write ``output_dir/<split>/{videos,images,captions.csv,qa.json,...}`` and ``stats.json``.

    ``workers`` processes render and encode videos (1: in this process); the output is the same
    for any value. Workers are spawned (not forked: safe after torch has started threads), so a
    script calling this with ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard. An existing non-empty ``output_dir`` is refused unless ``overwrite``, which
    removes only the split folders and files this function writes, and only in a folder it
    wrote (``GENERATED_MARKER`` or its stats.json): a user's folder is never emptied.
    """
    from videovlm.data.synthetic.stats import compute_stats

    counts = {"train": train, "val": val, "test": test}
    _check_arguments(counts=counts, size=size, frames=frames, fps=fps, workers=workers)
    output_dir = Path(output_dir)
    _prepare_output(output_dir, overwrite=overwrite)
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    tasks = [
        VideoTask(str(output_dir / split), seed, number, index, size, frames, float(fps))
        for number, split in enumerate(SPLITS)
        for index in range(counts[split])
    ]
    bar = tqdm(total=len(tasks), desc="synth", unit="video", disable=not progress)
    results: list[dict] = []
    if workers == 1:
        for task in tasks:
            results.append(make_video(task))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for result in pool.map(make_video, tasks, chunksize=8):
                results.append(result)
                bar.update()
    bar.close()
    offset = 0
    for split in SPLITS:
        _write_split(output_dir / split, results[offset : offset + counts[split]])
        offset += counts[split]
    stats = compute_stats(output_dir, params={"train": train, "val": val, "test": test, "seed": seed, "size": size, "frames": frames, "fps": fps})
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    return GenerationResult(output_dir=output_dir, counts=counts, seconds=time.perf_counter() - started, cpu_seconds=_cpu_seconds() - cpu_started, workers=workers)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished child processes."""
    try:
        import resource
    except ImportError:  # Windows: no rusage; count this process only
        return time.process_time()
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _check_arguments(*, counts: dict[str, int], size: int, frames: int, fps: float, workers: int) -> None:
    for split, count in counts.items():
        if count < 0:
            raise ValueError(f"--{split} must be >= 0, got {count}")
    if size < 48 or size % 2 or size > MAX_SIZE:
        raise ValueError(f"--size must be an even number of pixels from 48 to {MAX_SIZE} (h264 4:2:0 needs even sides), got {size}")
    if not 8 <= frames <= MAX_FRAMES:
        raise ValueError(f"--frames must be from 8 (events are kept away from the first and last frames) to {MAX_FRAMES}, got {frames}")
    if not fps > 0:
        raise ValueError(f"--fps must be > 0, got {fps}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")


def _is_generated(output_dir: Path) -> bool:
    """Whether ``output_dir`` was written by ``generate`` (its marker, or the stats.json of a
    set generated before the marker existed)."""
    if (output_dir / GENERATED_MARKER).is_file():
        return True
    try:
        stats = json.loads((output_dir / "stats.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(stats, dict) and isinstance(stats.get("params"), dict) and "seed" in stats["params"]


def _prepare_output(output_dir: Path, *, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"{output_dir}: exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output_dir}: folder is not empty (pass --overwrite to replace a generated data set)")
        # The split folders are removed whole: only where this function wrote them.
        if not _is_generated(output_dir):
            raise FileExistsError(
                f"{output_dir}: --overwrite replaces only a data set written by `videovlm data synth` (one with "
                f"{GENERATED_MARKER} or its stats.json); this folder has neither, so nothing was removed"
            )
        for split in SPLITS:
            shutil.rmtree(output_dir / split, ignore_errors=True)
        for name in ("stats.json", "README.md"):
            (output_dir / name).unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Before any split: a run stopped midway is still recognised as generated by --overwrite.
    (output_dir / GENERATED_MARKER).write_text("written by videovlm data synth\n", encoding="utf-8")


def _write_json(path: Path, records: list) -> None:
    path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_split(split_dir: Path, results: list[dict]) -> None:
    split_dir.mkdir(parents=True, exist_ok=True)
    with (split_dir / "captions.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["videoid", "name", "page_dir", "duration", "video"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(r["caption"] for r in results)
    _write_json(split_dir / "qa.json", [item for r in results for item in r["qa"]])
    # The same questions as multiple choice (MVBench style: 4 candidates from the type's answers).
    from videovlm.data.mcq import synthetic_mcq

    _write_json(split_dir / "mcq.json", synthetic_mcq(split_dir / "qa.json"))
    _write_json(split_dir / "instructions.json", [r["instruction"] for r in results])
    _write_json(split_dir / "image_captions.json", [r["image_caption"] for r in results])
    with (split_dir / "annotations.jsonl").open("w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r["annotation"], ensure_ascii=False) + "\n")
