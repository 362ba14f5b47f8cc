"""Batch mode: answer every question of a QA file (or caption every video of a captions CSV)
and write the predictions JSONL that ``videovlm eval --predictions`` reads.

Lines follow ``videovlm.eval.records``: ``video_id``, ``question``, ``answer`` (the reference),
``type``, and ``prediction`` or ``error``. A missing or corrupt video gives an error line;
the run goes on. ``predict_records`` is what ``videovlm eval --model`` calls.

The output may not be the data file, one of its videos or inside the model folder
(``OutputPathError``, before any work); it is written under a temporary name beside it and
renamed when complete, so an interrupted run never leaves a half file under the real name.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from videovlm.paths import atomic_output, check_outputs
from videovlm.qa.api import BatchOptions, QARequest, QAResult, VideoQA
from videovlm.qa.frames import QAInputError

TASKS = ("qa", "pope", "caption")


@dataclass(frozen=True)
class BatchSummary:
    """What a batch run wrote: lines, lines with an error, distinct videos of those lines,
    the output file."""

    total: int
    errors: int
    output: Path
    failed_videos: int = 0


def read_task_data(data: str | Path, *, task: str) -> list:
    """QA records (``qa``/``pope``: a QA JSON) or caption records (``caption``: a captions CSV).
    Missing video files are not an error here: their questions get error lines."""
    from videovlm.data.formats import read_qa_json, read_webvid_csv

    if task not in TASKS:
        raise QAInputError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    data = Path(data)
    if task == "caption":
        return read_webvid_csv(data, check_files=False)
    return read_qa_json(data, check_files=False)


def with_default_candidates(vqa: VideoQA, records: Sequence, options: BatchOptions, *, task: str) -> BatchOptions:
    """VideoBERT chooses among the data's distinct answers unless candidates are given
    (closed-vocabulary QA, as in the VideoBERT / MSRVTT-QA evaluations); the generating
    families need none."""
    if vqa.family != "videobert" or task == "caption" or options.candidates is not None:
        return options
    return dataclasses.replace(options, candidates=tuple(sorted({r.answer for r in records})))


def prediction_rows(
    vqa: VideoQA,
    records: Sequence,
    *,
    task: str = "qa",
    options: BatchOptions | None = None,
    progress: bool = False,
) -> Iterator[dict]:
    """One predictions-file dict per QA record (per video for ``caption``), in order."""
    if task == "caption":
        references: dict[str, list[str]] = {}
        videos: dict[str, Path] = {}
        for record in records:
            references.setdefault(record.video_id, []).append(record.caption)
            videos.setdefault(record.video_id, record.video)
        ids = list(videos)
        requests = [QARequest(videos[v], "") for v in ids]
        rows = [{"video_id": v, "references": references[v]} for v in ids]
    else:
        requests = [QARequest(r.video, r.question) for r in records]
        rows = [{"video_id": r.video_id, "question": r.question, "answer": r.answer, "type": r.type} for r in records]
    bar = tqdm(total=len(requests), desc="videovlm qa", unit="q", disable=not progress)
    done = 0
    try:
        for chunk in vqa.iter_batches(requests, options=options, captions=task == "caption"):
            for result in chunk:
                yield _with_result(rows[done], result)
                done += 1
            bar.update(len(chunk))
    finally:
        bar.close()


def _with_result(row: dict, result: QAResult) -> dict:
    if result.error is not None:
        return {**row, "error": result.error}
    return {**row, "prediction": result.answer}


def check_output_path(output: str | Path, *, data: str | Path, records: Sequence = (), model_dir: str | Path | None = None) -> None:
    """``OutputPathError`` when ``output`` would overwrite ``data``, a video its ``records``
    name, or a file of ``model_dir``."""
    videos = {f"the video of {r.video_id!r} in --data": r.video for r in records}
    check_outputs({"--output": output}, files={"--data": data, **videos}, folders={"--model": model_dir})


def write_predictions(
    vqa: VideoQA,
    data: str | Path,
    output: str | Path,
    *,
    task: str = "qa",
    options: BatchOptions | None = None,
    progress: bool = True,
    model_dir: str | Path | None = None,
) -> BatchSummary:
    """Answer ``data`` and write one JSON line per question to ``output`` as answers come
    (a long run can be followed with ``tail -f`` on the temporary file, named on stderr
    with ``progress``). VideoBERT without ``options.candidates`` chooses among the data's
    answers. ``model_dir`` (the model's folder) is protected from the output as well."""
    records = read_task_data(data, task=task)
    check_output_path(output, data=data, records=records, model_dir=model_dir)
    options = with_default_candidates(vqa, records, options or BatchOptions(), task=task)
    output = Path(output)
    total = errors = 0
    failed_videos: set[str] = set()
    with atomic_output(output) as handle:
        if progress:
            print(f"writing {handle.name} (renamed to {output} when complete)", file=sys.stderr)
        for row in prediction_rows(vqa, records, task=task, options=options, progress=progress):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            total += 1
            if "error" in row:
                errors += 1
                failed_videos.add(row["video_id"])
    return BatchSummary(total=total, errors=errors, output=output, failed_videos=len(failed_videos))


def predict_records(
    *,
    model_dir: str | Path,
    data: str | Path,
    task: str = "qa",
    batch_size: int = 8,
    device: str = "cpu",
    sampler: str | None = None,
) -> list[dict]:
    """Predictions-file dicts of a saved model on ``data`` (``videovlm eval --model``):
    ``qa``/``pope`` read a QA JSON, ``caption`` a captions CSV (one caption per video)."""
    records = read_task_data(data, task=task)
    vqa = VideoQA.from_pretrained(model_dir, device=device, sampler=sampler)
    options = with_default_candidates(vqa, records, BatchOptions(batch_size=batch_size), task=task)
    return list(prediction_rows(vqa, records, task=task, options=options))
