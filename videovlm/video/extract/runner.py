"""The extraction run: list, shard, skip what is done, fan out to worker processes with a
per-video timeout, record failures, summarise."""

from __future__ import annotations

import multiprocessing
import os
import select
import shutil
import signal
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pebble
from tqdm import tqdm

from videovlm.video import available_backends
from videovlm.video.extract.frames import (
    CONTACT_SHEET,
    ExtractJob,
    ExtractResult,
    FrameSize,
    extract_video,
)
from videovlm.video.extract.inputs import (
    ExtractUsageError,
    VideoEntry,
    list_inputs,
    mark_duplicates,
    take_shard,
)
from videovlm.video.extract.publish import FRAMES_JSON, clear_staging
from videovlm.video.extract.sinks import (
    FailureLog,
    ShardSink,
    check_failure_log,
    done_shard_keys,
    wds_key,
)
from videovlm.video.samplers import SamplerSpecError, parse_sampler

FORMATS = ("jpg", "png", "wds")
WDS_FRAME_FORMATS = ("jpg", "png")  # png: lossless, the frames a video reader decodes, bit for bit
PARTIAL_DIR = ".partial"


@dataclass(frozen=True)
class ExtractSummary:
    """Counts of one run, video2dataset style. ``failures_path`` is the run's failure log;
    ``seconds`` the run's wall time, ``frames`` the frames written, ``failure_reasons`` the
    failed videos per error type (``VideoDecodeError``, ``TimeoutError``, ...)."""

    done: int
    skipped: int
    failed: int
    failures_path: Path
    seconds: float = 0.0
    frames: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        text = f"done {self.done}, skipped {self.skipped} (already done), failed {self.failed}"
        text += f" (see {self.failures_path})" if self.failed else ""
        if self.seconds > 0 and self.done:
            text += f" | {self.done / self.seconds:.2f} videos/s, {self.frames / self.seconds:.1f} frames/s in {self.seconds:.1f} s"
        if self.failure_reasons:
            text += " | failures: " + ", ".join(f"{reason} {n}" for reason, n in sorted(self.failure_reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        return text


def failure_reason(error: str) -> str:
    """The error type a failure line starts with (``"VideoDecodeError: ..."``), else ``other``."""
    head = error.split(":", 1)[0].strip()
    return head if head.isidentifier() else "other"


def _init_worker(run_pid: int) -> None:
    # One decode thread per worker: parallelism comes from --workers, not oversubscription.
    import torch

    torch.set_num_threads(1)
    _exit_with_run(run_pid)


def _exit_with_run(run_pid: int) -> None:
    """End this worker as soon as the run's process ``run_pid`` is gone, even mid-decode.

    Workers are children of the fork server, not of the run, and the fork server lives as
    long as they do, so nothing tells a busy worker that the run was killed (kill -9, the
    OOM killer): a daemon thread waits for the run's exit and ends the process.
    """
    try:
        handle = os.pidfd_open(run_pid)  # readable once the process has exited (Linux >= 5.3)
    except (AttributeError, OSError):
        handle = None

    def wait_then_exit() -> None:
        if handle is not None:
            select.select([handle], [], [])
        else:
            while _is_alive(run_pid):
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=wait_then_exit, name="exit-with-run", daemon=True).start()


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: the pid was reused, the run is gone
    return True


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


def _check_options(*, sampler: str, image_format: str, wds_frames: str, workers: int, timeout: float, tar_size: int, backend: str) -> str:
    """The canonical sampler spec; raises ``ExtractUsageError`` for a bad option."""
    try:
        sampler_spec = parse_sampler(sampler).spec
    except SamplerSpecError as e:
        raise ExtractUsageError(f"--sampler: {e}") from None
    if image_format not in FORMATS:
        raise ExtractUsageError(f"--format {image_format!r}: choose one of {', '.join(FORMATS)}")
    if wds_frames not in WDS_FRAME_FORMATS:
        raise ExtractUsageError(f"--wds-frames {wds_frames!r}: choose one of {', '.join(WDS_FRAME_FORMATS)}")
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
    return sampler_spec


def _check_output(output: Path, staging_root: Path) -> None:
    if output.exists() and not output.is_dir():
        raise ExtractUsageError(f"OUTPUT {output}: exists and is not a folder")
    for folder in (output / PARTIAL_DIR, staging_root):
        # Temporary files are written and removed there: it must be extract's own folder.
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise ExtractUsageError(f"{folder}: extract keeps its temporary files there; it must be a folder, not a link or a file")


def _split_done(entries: list[VideoEntry], is_done: Callable[[VideoEntry], bool], failures: FailureLog) -> tuple[list[VideoEntry], int]:
    """``(entries still to extract, number already done)``; entries that cannot be extracted
    (bad or duplicate key, an output path the file system refuses) go to ``failures``."""
    todo: list[VideoEntry] = []
    skipped = 0
    for entry in entries:
        problem = entry.problem
        if problem is None:
            try:
                done = is_done(entry)
            except OSError as e:  # e.g. OUTPUT/<key> longer than the file system allows
                problem = f"key {entry.key!r}: cannot look for its output ({e.strerror or e})"
        if problem is not None:
            failures.add(video=entry.path, key=entry.key, error=f"ExtractUsageError: {problem}")
        elif done:
            skipped += 1
        else:
            todo.append(entry)
    return todo, skipped


def _done_check(output: Path, *, wds_mode: bool) -> Callable[[VideoEntry], bool]:
    """Whether a video's output is complete: its key in a finished shard, or its frames.json."""
    if not wds_mode:
        return lambda entry: (output / entry.key / FRAMES_JSON).is_file()
    try:
        done_keys = done_shard_keys(output)
    except tarfile.TarError as e:
        raise ExtractUsageError(f"OUTPUT {output}: an existing shard cannot be read ({e})") from None
    return lambda entry: wds_key(entry.key) in done_keys


@dataclass(frozen=True)
class _JobSettings:
    output: Path
    staging_root: Path
    sampler_spec: str
    backend: str
    size: FrameSize
    image_format: str
    contact_sheet: bool
    wds_frames: str = "jpg"

    def job(self, number: int, entry: VideoEntry) -> ExtractJob:
        wds_mode = self.image_format == "wds"
        if not self.contact_sheet:
            sheet = None
        elif wds_mode:
            sheet = str(self.output / "contact_sheets" / f"{entry.key}.png")
        else:
            sheet = str(self.output / entry.key / CONTACT_SHEET)
        return ExtractJob(
            key=entry.key,
            path=entry.path,
            sampler=self.sampler_spec,
            backend=self.backend,
            size=self.size,
            image_format=self.wds_frames if wds_mode else self.image_format,
            contact_sheet=sheet,
            staging_dir=None if wds_mode else str(self.staging_root / f"{number:08d}"),
            final_dir=None if wds_mode else str(self.output / entry.key),
            rows=entry.rows,
        )


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
    wds_frames: str = "jpg",
    progress: bool = True,
) -> ExtractSummary:
    """Extract sampled frames of every video named by ``input_spec`` into ``output``.

    Raises ``ExtractUsageError`` for a bad argument, INPUT or manifest (nothing is
    extracted then); a video that fails is logged and the run goes on. SIGTERM stops the
    run as Ctrl-C does (workers stopped, temporary files removed), exit code 143.
    """
    sampler_spec = _check_options(
        sampler=sampler, image_format=image_format, wds_frames=wds_frames, workers=workers, timeout=timeout, tar_size=tar_size, backend=backend
    )
    output = Path(output)
    tag = "all" if shard is None else f"shard{shard[0]}of{shard[1]}"
    staging_root = output / PARTIAL_DIR / tag
    _check_output(output, staging_root)
    wds_mode = image_format == "wds"
    entries = mark_duplicates(list_inputs(input_spec, output=output), wds_key if wds_mode else (lambda key: key))
    if shard is not None:
        entries = take_shard(entries, *shard)
    failures_path = output / ("failures.jsonl" if shard is None else f"failures-{tag}.jsonl")
    check_failure_log(failures_path)
    output.mkdir(parents=True, exist_ok=True)
    # What a killed run of this same part left half-written: never counted, removed.
    clear_staging(staging_root)

    is_done = _done_check(output, wds_mode=wds_mode)
    failures = FailureLog(failures_path)
    sink = ShardSink(output, staging_root, "videos" if shard is None else f"videos-{tag}", max_count=tar_size)
    settings = _JobSettings(output, staging_root, sampler_spec, backend, size or FrameSize(), image_format, contact_sheet, wds_frames)
    done, frames, reasons = 0, 0, {}
    began = time.perf_counter()
    bar = None
    try:
        with _sigterm_as_exit():
            todo, skipped = _split_done(entries, is_done, failures)
            jobs = [settings.job(number, entry) for number, entry in enumerate(todo)]
            bar = tqdm(total=len(jobs), unit="video", desc="extract", disable=not progress, file=sys.stderr)
            for job, result, error in _run_jobs(jobs, workers=workers, timeout=timeout):
                if result is not None and error is None:
                    if wds_mode:
                        sink.write(job.key, result.files or {}, result.record or {})
                    done += 1
                    frames += len((result.record or {}).get("files", ()))
                else:
                    if job.staging_dir is not None:
                        shutil.rmtree(job.staging_dir, ignore_errors=True)
                    failures.add(video=job.path, key=job.key, error=error or "unknown error")
                    reason = failure_reason(error or "")
                    reasons[reason] = reasons.get(reason, 0) + 1
                bar.update(1)
            sink.close()  # publishes the last shard
    finally:
        sink.discard()  # after an error or interrupt: the unfinished shard is dropped, never published
        if bar is not None:
            bar.close()
        failures.close()
        clear_staging(staging_root)
        try:
            (output / PARTIAL_DIR).rmdir()
        except OSError:
            pass  # other --shard parts still running, or never created
    return ExtractSummary(
        done=done, skipped=skipped, failed=failures.count, failures_path=failures_path,
        seconds=time.perf_counter() - began, frames=frames, failure_reasons=reasons,
    )


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While extracting, SIGTERM (a batch scheduler's stop, ``kill``) exits through the
    cleanup code as Ctrl-C does, instead of ending the process at once: the worker pool is
    stopped (a busy worker would otherwise decode on as an orphan) and the temporary files
    are removed. A second SIGTERM during that cleanup is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_jobs(
    jobs: list[ExtractJob], *, workers: int, timeout: float
) -> Iterator[tuple[ExtractJob, ExtractResult | None, str | None]]:
    """Run ``jobs`` in worker processes; yield ``(job, result, error)`` as each finishes.

    A job still running ``timeout`` seconds after its worker started it has its worker
    killed (pebble replaces it) and yields a TimeoutError message.
    """
    if not jobs:
        return
    pool = pebble.ProcessPool(
        max_workers=min(workers, len(jobs)), initializer=_init_worker, initargs=(os.getpid(),), context=_context()
    )
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
