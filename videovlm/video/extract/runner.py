"""The extraction run: list, shard, skip what is done, fan out to worker processes with a
per-video timeout, record failures, summarise."""

from __future__ import annotations

import multiprocessing
import shutil
import sys
import tarfile
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pebble
from tqdm import tqdm

from videovlm.video.extract.frames import CONTACT_SHEET, FRAMES_JSON, ExtractJob, ExtractResult, FrameSize, extract_video
from videovlm.video.extract.inputs import ExtractUsageError, VideoEntry, list_inputs, mark_duplicates, take_shard
from videovlm.video.extract.sinks import FailureLog, ShardSink, done_shard_keys, wds_key
from videovlm.video import available_backends
from videovlm.video.samplers import SamplerSpecError, parse_sampler

FORMATS = ("jpg", "png", "wds")
PARTIAL_DIR = ".partial"


@dataclass(frozen=True)
class ExtractSummary:
    """Counts of one run. ``failures_path`` is the run's failure log."""

    done: int
    skipped: int
    failed: int
    failures_path: Path

    def line(self) -> str:
        text = f"done {self.done}, skipped {self.skipped} (already done), failed {self.failed}"
        return text + (f" (see {self.failures_path})" if self.failed else "")


def _init_worker() -> None:
    # One decode thread per worker: parallelism comes from --workers, not oversubscription.
    import torch

    torch.set_num_threads(1)


def _context() -> multiprocessing.context.BaseContext:
    """forkserver where the platform has it (workers fork from a server that already
    imported torch and the decoders: fast starts, no inherited threads), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["videovlm.video.extract.frames", "videovlm.video"])
        return context
    return multiprocessing.get_context("spawn")


def _outcome(future: Future, timeout: float) -> tuple[ExtractResult | None, str | None]:
    """``(result, None)``, or ``(None, error message)`` when the worker gave no result."""
    try:
        return future.result(), None
    except TimeoutError:
        return None, f"TimeoutError: no result after {timeout:g} s (worker killed)"
    except pebble.ProcessExpired as e:
        return None, f"ProcessExpired: the worker process died (exit code {e.exitcode})"
    except Exception as e:  # noqa: BLE001  e.g. a result that could not be sent back
        return None, f"{type(e).__name__}: {e}"


def extract_videos(
    *,
    input_spec: str,
    output: str | Path,
    sampler: str = "uniform:8",
    size: FrameSize | None = None,
    image_format: str = "jpg",
    workers: int = 1,
    timeout: float = 600.0,
    shard: tuple[int, int] | None = None,
    contact_sheet: bool = False,
    backend: str = "auto",
    tar_size: int = 1000,
    progress: bool = True,
) -> ExtractSummary:
    """Extract sampled frames of every video named by ``input_spec`` into ``output``.

    Raises ``ExtractUsageError`` for a bad argument, INPUT or manifest (nothing is
    extracted then); a video that fails is logged and the run goes on.
    """
    try:
        sampler_spec = parse_sampler(sampler).spec
    except SamplerSpecError as e:
        raise ExtractUsageError(f"--sampler: {e}") from None
    if image_format not in FORMATS:
        raise ExtractUsageError(f"--format {image_format!r}: choose one of {', '.join(FORMATS)}")
    if workers < 1:
        raise ExtractUsageError(f"--workers {workers}: need at least 1 worker process")
    if not timeout > 0:
        raise ExtractUsageError(f"--timeout {timeout}: must be > 0 seconds")
    if tar_size < 1:
        raise ExtractUsageError(f"--tar-size {tar_size}: must be >= 1")
    if backend != "auto" and backend not in available_backends():
        raise ExtractUsageError(
            f"--backend {backend!r}: not one of auto, {', '.join(available_backends())} (the installed backends)"
        )
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ExtractUsageError(f"OUTPUT {output}: exists and is not a folder")

    wds_mode = image_format == "wds"
    output_name = wds_key if wds_mode else (lambda key: key)
    entries = mark_duplicates(list_inputs(input_spec, output=output), output_name)
    tag = "all"
    if shard is not None:
        entries = take_shard(entries, *shard)
        tag = f"shard{shard[0]}of{shard[1]}"
    output.mkdir(parents=True, exist_ok=True)
    staging_root = output / PARTIAL_DIR / tag
    # What a killed run of this same part left half-written: never counted, removed.
    shutil.rmtree(staging_root, ignore_errors=True)
    failures_path = output / ("failures.jsonl" if shard is None else f"failures-{tag}.jsonl")

    if wds_mode:
        try:
            done_keys = done_shard_keys(output)
        except tarfile.TarError as e:
            raise ExtractUsageError(f"OUTPUT {output}: an existing shard cannot be read ({e})") from None
        is_done = lambda entry: wds_key(entry.key) in done_keys  # noqa: E731
    else:
        is_done = lambda entry: (output / entry.key / FRAMES_JSON).is_file()  # noqa: E731

    failures = FailureLog(failures_path)
    sink = ShardSink(output, staging_root, "videos" if shard is None else f"videos-{tag}", max_count=tar_size)
    todo: list[VideoEntry] = []
    skipped = 0
    for entry in entries:
        if entry.problem is not None:
            failures.add(video=entry.path, key=entry.key, error=f"ExtractUsageError: {entry.problem}")
        elif is_done(entry):
            skipped += 1
        else:
            todo.append(entry)

    def job_for(number: int, entry: VideoEntry) -> ExtractJob:
        if not contact_sheet:
            sheet = None
        elif wds_mode:
            sheet = str(output / "contact_sheets" / f"{entry.key}.png")
        else:
            sheet = str(output / entry.key / CONTACT_SHEET)
        return ExtractJob(
            key=entry.key,
            path=entry.path,
            sampler=sampler_spec,
            backend=backend,
            size=size or FrameSize(),
            image_format="jpg" if wds_mode else image_format,
            contact_sheet=sheet,
            staging_dir=None if wds_mode else str(staging_root / f"{number:08d}"),
            final_dir=None if wds_mode else str(output / entry.key),
        )

    jobs = [job_for(number, entry) for number, entry in enumerate(todo)]
    done = 0
    bar = tqdm(total=len(jobs), unit="video", desc="extract", disable=not progress, file=sys.stderr)
    try:
        for job, result, error in _run_jobs(jobs, workers=workers, timeout=timeout):
            if result is not None and error is None:
                if wds_mode:
                    sink.write(job.key, result.files or {}, result.record or {})
                done += 1
            else:
                if job.staging_dir is not None:
                    shutil.rmtree(job.staging_dir, ignore_errors=True)
                failures.add(video=job.path, key=job.key, error=error or "unknown error")
            bar.update(1)
        sink.close()  # publishes the last shard
    finally:
        sink.discard()  # after an error or interrupt: the unfinished shard is dropped, never published
        bar.close()
        failures.close()
        shutil.rmtree(staging_root, ignore_errors=True)
        try:
            (output / PARTIAL_DIR).rmdir()
        except OSError:
            pass  # other --shard parts still running, or never created
    return ExtractSummary(done=done, skipped=skipped, failed=failures.count, failures_path=failures_path)


def _run_jobs(
    jobs: list[ExtractJob], *, workers: int, timeout: float
) -> Iterator[tuple[ExtractJob, ExtractResult | None, str | None]]:
    """Run ``jobs`` in worker processes; yield ``(job, result, error)`` as each finishes.

    A job still running ``timeout`` seconds after its worker started it has its worker
    killed (pebble replaces it) and yields a TimeoutError message.
    """
    if not jobs:
        return
    pool = pebble.ProcessPool(max_workers=min(workers, len(jobs)), initializer=_init_worker, context=_context())
    try:
        pending: dict[Future, ExtractJob] = {}
        queue = iter(jobs)
        # A bounded number in flight: memory stays flat on millions of videos.
        limit = 2 * workers
        while True:
            for job in queue:
                pending[pool.schedule(extract_video, args=(job,), timeout=timeout)] = job
                if len(pending) >= limit:
                    break
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                result, error = _outcome(future, timeout)
                if error is None and result is not None:
                    error = result.error
                yield job, result, error
    finally:
        # Every result is in (or the run is aborted): workers are idle or must not go on.
        pool.stop()
        pool.join()
