"""Batch mode: answer every question of a QA file (or caption every video of a captions CSV)
and write the predictions JSONL that ``videovlm eval --predictions`` reads.

Lines follow ``videovlm.eval.records``: ``video_id``, ``question``, ``answer`` (the reference),
``type``, and ``prediction`` or ``error``. A missing or corrupt video gives an error line;
the run goes on. ``predict_records`` is what ``videovlm eval --model`` calls;
``predict_controlled_records`` / ``controlled_prediction_rows`` add a video-blind control
pass (``videovlm eval --control``, see ``videovlm.qa.controls``).

The output may not be the data file, one of its videos or inside the model folder
(``OutputPathError``, before any work); it is written under a temporary name beside it and
renamed when complete, so an interrupted run never leaves a half file under the real name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from videovlm.paths import atomic_output, check_outputs
from videovlm.qa.api import BatchOptions, QARequest, QAResult, VideoQA
from videovlm.qa.controls import DEFAULT_CONTROL_SEED, ControlError, control_plan, control_predictions_path
from videovlm.qa.frames import QAInputError

TASKS = ("qa", "pope", "caption")


@dataclass(frozen=True)
class BatchSummary:
    """What a batch run wrote: lines, lines with an error, distinct videos of those lines,
    the output file, and the control pass's predictions file (``control=``, else None)."""

    total: int
    errors: int
    output: Path
    failed_videos: int = 0
    control_output: Path | None = None


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
        rows = [question_row(r) for r in records]
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


def question_row(record) -> dict:
    """The fields of a QA record that a predictions line repeats (the answer is the reference)."""
    return {"video_id": record.video_id, "question": record.question, "answer": record.answer, "type": record.type}


@dataclass(frozen=True)
class ControlledRows:
    """Predictions-file dicts of a run with a video-blind control, both in data order.

    real: each question with its own video. control: the same questions under the control
    ``name`` (``shuffled`` or ``blank``); each line also names the control and
    ``control_video_id``, the video whose frames (or frame shape, for ``blank``) it was
    asked about. seed: the shuffled control's seed (None for blank)."""

    real: list[dict]
    control: list[dict]
    name: str
    seed: int | None


def controlled_prediction_rows(
    vqa: VideoQA,
    records: Sequence,
    *,
    control: str,
    seed: int = DEFAULT_CONTROL_SEED,
    options: BatchOptions | None = None,
    progress: bool = False,
) -> ControlledRows:
    """Answer QA ``records`` twice in one pass: with their own videos and under ``control``
    (see ``videovlm.qa.controls``); each video is decoded once. ``ControlError`` before any
    inference when the control cannot run (a shuffled control on fewer than 2 videos)."""
    plan = control_plan(records, control=control, seed=seed)
    real: list[dict | None] = [None] * len(records)
    controlled: list[dict | None] = [None] * len(records)
    bar = tqdm(total=len(plan), desc=f"videovlm qa + {control} control", unit="q", disable=not progress)
    done = 0
    try:
        for chunk in vqa.iter_batches([p.request for p in plan], options=options):
            for result in chunk:
                planned = plan[done]
                row = _with_result(question_row(records[planned.record]), result)
                if planned.is_control:
                    controlled[planned.record] = {**row, "control": control, "control_video_id": planned.frames_video_id}
                else:
                    real[planned.record] = row
                done += 1
            bar.update(len(chunk))
    finally:
        bar.close()
    return ControlledRows(real, controlled, control, seed if control == "shuffled" else None)


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
    control: str | None = None,
    control_seed: int = DEFAULT_CONTROL_SEED,
) -> BatchSummary:
    """Answer ``data`` and write one JSON line per question to ``output`` as answers come
    (a long run can be followed with ``tail -f`` on the temporary file, named on stderr
    with ``progress``). VideoBERT without ``options.candidates`` chooses among the data's
    answers. ``model_dir`` (the model's folder) is protected from the output as well.

    ``control`` (``shuffled`` / ``blank``, QA tasks): also answer every question under that
    video-blind control (``controlled_prediction_rows``) into
    ``control_predictions_path(output, control)``; both files are written at the end."""
    records = read_task_data(data, task=task)
    control_output = None if control is None else control_predictions_path(output, control)
    check_output_path(output, data=data, records=records, model_dir=model_dir)
    if control_output is not None:
        check_control_data(records, data=data, task=task, control=control, seed=control_seed)
        check_output_path(control_output, data=data, records=records, model_dir=model_dir)
    options = with_default_candidates(vqa, records, options or BatchOptions(), task=task)
    rank, world = process_rank()
    if world > 1:
        if control is not None:
            raise ValueError("--control: answer the control in one process (it shuffles videos across all questions)")
        return _write_sharded(vqa, records, output, task=task, options=options, progress=progress, rank=rank, world=world)
    if control is None:
        return _write_rows(output, prediction_rows(vqa, records, task=task, options=options, progress=progress), progress=progress)
    controlled = controlled_prediction_rows(vqa, records, control=control, seed=control_seed, options=options, progress=progress)
    control_summary = _write_rows(control_output, controlled.control, progress=progress)
    summary = _write_rows(output, controlled.real, progress=progress)
    return dataclasses.replace(summary, control_output=control_summary.output)


def process_rank() -> tuple[int, int]:
    """(rank, world size) under torchrun (its RANK / WORLD_SIZE variables), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)


def shard_path(output: Path, rank: int, world: int) -> Path:
    return output.with_name(f"{output.name}.part-{rank:05d}-of-{world:05d}")


def _write_sharded(vqa: VideoQA, records: Sequence, output: str | Path, *, task: str, options: BatchOptions, progress: bool, rank: int, world: int) -> BatchSummary:
    """Under torchrun: rank r answers questions r, r + world, ... into its part file beside
    ``output``; after a barrier rank 0 merges the parts in input order into ``output`` (the
    same file one process writes) and removes them. Every rank returns the merged summary."""
    import torch.distributed as dist

    output = Path(output)
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    part = shard_path(output, rank, world)
    mine = records[rank::world]
    _write_rows(part, prediction_rows(vqa, mine, task=task, options=options, progress=progress and rank == 0), progress=False)
    dist.barrier()
    if rank == 0:
        parts = [[json.loads(line) for line in shard_path(output, r, world).read_text().splitlines()] for r in range(world)]
        expected = [len(records[r::world]) for r in range(world)]
        if [len(p) for p in parts] != expected:  # one line per question, errors included
            raise RuntimeError(f"{output}: part files hold {[len(p) for p in parts]} lines, expected {expected}")
        merged = (parts[i % world][i // world] for i in range(len(records)))
        summary = _write_rows(output, merged, progress=progress)
        for r in range(world):
            shard_path(output, r, world).unlink()
    else:
        summary = None
    shared = [summary]
    dist.broadcast_object_list(shared, src=0)  # rank 0's summary of the merged file, to every rank
    return shared[0]


def _write_rows(output: str | Path, rows: Iterable[dict], *, progress: bool) -> BatchSummary:
    output = Path(output)
    total = errors = 0
    failed_videos: set[str] = set()
    with atomic_output(output) as handle:
        if progress:
            print(f"writing {handle.name} (renamed to {output} when complete)", file=sys.stderr)
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            total += 1
            if "error" in row:
                errors += 1
                failed_videos.add(row["video_id"])
    return BatchSummary(total=total, errors=errors, output=output, failed_videos=len(failed_videos))


def check_control_data(records: Sequence, *, data: str | Path, task: str, control: str, seed: int = DEFAULT_CONTROL_SEED) -> None:
    """``ControlError`` naming ``data`` when ``control`` cannot run on its records (a caption
    task, an unknown control, a shuffled control on one video); called before the model loads."""
    if task == "caption":
        raise ControlError(f"{data}: a video-blind control re-asks QA questions; it does not apply to task {task!r}")
    try:
        control_plan(records, control=control, seed=seed)
    except ControlError as e:
        raise ControlError(f"{data}: {e}") from None


def _load_for_prediction(
    model_dir, data, *, task: str, batch_size: int, device: str, sampler: str | None, control: str | None = None, seed: int = DEFAULT_CONTROL_SEED
):
    """The records of ``data``, the loaded model and the batch options of a prediction run
    (a control is checked against the records first: a bad one fails before the model loads)."""
    records = read_task_data(data, task=task)
    if control is not None:
        check_control_data(records, data=data, task=task, control=control, seed=seed)
    vqa = VideoQA.from_pretrained(model_dir, device=device, sampler=sampler)
    return records, vqa, with_default_candidates(vqa, records, BatchOptions(batch_size=batch_size), task=task)


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
    records, vqa, options = _load_for_prediction(model_dir, data, task=task, batch_size=batch_size, device=device, sampler=sampler)
    return list(prediction_rows(vqa, records, task=task, options=options))


def predict_controlled_records(
    *,
    model_dir: str | Path,
    data: str | Path,
    control: str,
    seed: int = DEFAULT_CONTROL_SEED,
    task: str = "qa",
    batch_size: int = 8,
    device: str = "cpu",
    sampler: str | None = None,
) -> ControlledRows:
    """``predict_records`` plus the same questions under a video-blind ``control``
    (``videovlm eval --model --control``); ``ControlError`` before the model loads when the
    control cannot run on ``data``."""
    records, vqa, options = _load_for_prediction(
        model_dir, data, task=task, batch_size=batch_size, device=device, sampler=sampler, control=control, seed=seed
    )
    return controlled_prediction_rows(vqa, records, control=control, seed=seed, options=options)
