"""`videovlm qa`: ask a trained model about videos.

    videovlm qa --model DIR --video clip.mp4 --question "what colour is the circle?" [--stream]
    videovlm qa --model DIR --video clip.mp4 --chat            # multi-turn (Video-LLaMA), questions from stdin
    videovlm qa --model DIR --data test/qa.json --output predictions.jsonl [--batch-size 8] [--strict]
    torchrun --nproc_per_node 4 -m videovlm qa --model DIR --data test/qa.json --output predictions.jsonl
        # questions split across processes, merged in input order into the one-process file

Decoding: greedy by default; ``--num-beams N`` for beam search; ``--sample --seed S``
(``--temperature``, ``--top-p``, ``--top-k``) for reproducible sampling. ``--timestamps`` puts
the sampled frames' times into the prompt. ``--sampler`` defaults to the model's own.

Batch mode: a video that fails gives an error line and the run goes on; the count of failed
questions and videos goes to stderr. Exit code 0, 1 with ``--strict`` when a question got an
error line, 2 for usage errors (among them an ``--output`` that is ``--data``, one of its
videos, or inside ``--model``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from videovlm.qa.generation import GenerationSettings
from videovlm.video.types import VideoDecodeError

CHAT_EXIT = ("", "/quit", "/exit")


def parse_decode_size(text: str) -> str | int | tuple[int, int]:
    """``--decode-size``: ``auto``, ``N`` (short side) or ``HxW``."""
    if text == "auto":
        return text
    height, x, width = text.lower().partition("x")
    try:
        values = [int(v) for v in ((height, width) if x else (height,))]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto, N (short side) or HxW, e.g. 224 or 224x398") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be >= 1 pixel")
    return values[0] if not x else (values[0], values[1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="a model folder written by save_pretrained (a stage's final/)")
    single = parser.add_argument_group("one video")
    single.add_argument("--video", type=Path, help="the video file to ask about")
    single.add_argument("--question", help="the question (with --chat: the first question)")
    single.add_argument("--chat", action="store_true", help="multi-turn chat about --video; reads questions from stdin (Video-LLaMA)")
    single.add_argument("--stream", action="store_true", help="print the answer's tokens as they are generated")
    batch = parser.add_argument_group("batch mode")
    batch.add_argument("--data", type=Path, help="QA JSON (video_id, question, answer[, video, type]) to answer, or captions CSV with --task caption")
    batch.add_argument("--output", type=Path, help="predictions JSONL to write (one line per question; errors on their own line)")
    batch.add_argument("--task", choices=("qa", "caption"), default="qa", help="qa: answer the questions; caption: caption each video of a captions CSV")
    batch.add_argument("--batch-size", type=int, default=8, help="questions per generate call (default 8)")
    batch.add_argument("--strict", action="store_true", help="exit code 1 when any question got an error line (the failures are counted on stderr either way)")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    frames = parser.add_argument_group("frames")
    frames.add_argument("--sampler", help="frame sampler spec, e.g. uniform:8 (default: the model's training sampler, else uniform:8)")
    frames.add_argument("--max-visual-tokens", type=int, help="instead of --sampler: uniform:T with the most frames whose video tokens fit this budget")
    frames.add_argument("--timestamps", action="store_true", help='put the frame times in the prompt ("frames are sampled at 0.0s, 0.5s, ...")')
    frames.add_argument("--backend", default="auto", choices=("auto", "pyav", "decord", "torchcodec"), help="video decoder (default auto)")
    frames.add_argument("--decode-size", type=parse_decode_size, metavar="auto|N|HxW", help="scale frames in the decoder: auto = the size the model's processor resizes to, N = short side, HxW (default: what the model was trained with, else full size)")
    decoding = parser.add_argument_group("decoding")
    decoding.add_argument("--max-new-tokens", type=int, default=32, help="most tokens per answer (default 32)")
    decoding.add_argument("--num-beams", type=int, default=1, help="beam search width (default 1 = greedy)")
    decoding.add_argument("--sample", action="store_true", help="sample instead of greedy / beam decoding")
    decoding.add_argument("--temperature", type=float, default=1.0)
    decoding.add_argument("--top-p", type=float, default=1.0)
    decoding.add_argument("--top-k", type=int, default=50)
    decoding.add_argument("--seed", type=int, help="seed for --sample (same seed, same answer)")
    decoding.add_argument("--candidates", help="VideoBERT: comma-separated answers to choose from (default: template filling)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: cuda if available; under torchrun, cuda:LOCAL_RANK)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"), help="cast the model (default auto: as saved)")
    placement = parser.add_argument_group("a model larger than one device (accelerate)")
    placement.add_argument("--device-map", choices=("auto", "balanced", "sequential"), help="instead of --device: place the model across the GPUs, then the CPU, then the disk")
    placement.add_argument("--max-memory", help="with --device-map: memory per device, e.g. 0=20GiB,1=20GiB,cpu=60GiB (default: what is free)")
    placement.add_argument("--offload-folder", type=Path, help="with --device-map: where weights that fit nowhere else are kept on disk")


def _settings(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        do_sample=args.sample,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
    )


def _check_mode(args: argparse.Namespace) -> str:
    if args.data is not None:
        if args.video is not None or args.question is not None or args.chat:
            raise ValueError("--data (batch mode) cannot be combined with --video / --question / --chat")
        if args.output is None:
            raise ValueError("--data needs --output (the predictions JSONL to write)")
        if args.stream:
            raise ValueError("--stream shows one answer as it is generated; batch mode writes --output instead")
        return "batch"
    if args.video is None:
        raise ValueError("give --video and --question (one question), --video --chat, or --data and --output (batch mode)")
    if args.chat:
        return "chat"
    if args.question is None:
        raise ValueError("--video needs --question (or --chat for a conversation)")
    return "single"


def _candidates(args: argparse.Namespace) -> list[str] | None:
    if args.candidates is None:
        return None
    words = [w.strip() for w in args.candidates.split(",") if w.strip()]
    if not words:
        raise ValueError(f"--candidates: no answers in {args.candidates!r}")
    return words


def _chat(vqa, args: argparse.Namespace, settings: GenerationSettings) -> None:
    from videovlm.qa.generation import terminal_streamer

    session = vqa.chat(args.video, settings=settings, timestamps=args.timestamps)
    question = args.question
    interactive = sys.stdin.isatty()
    while True:
        if question is None:
            if interactive:
                print("you> ", end="", file=sys.stderr, flush=True)
            line = sys.stdin.readline()
            if not line:  # end of input
                return
            question = line.strip()
            if question in CHAT_EXIT:
                return
        streamer = terminal_streamer(vqa.model.tokenizer) if args.stream else None
        answer = session.ask(question, streamer=streamer)
        if streamer is None:
            print(answer, flush=True)
        question = None


def _batch_report(summary) -> str:
    line = f"wrote {summary.total} predictions ({summary.errors} with errors) to {summary.output}"
    if summary.errors:
        line += f"; {summary.failed_videos} video(s) failed: see the lines with an 'error' field"
    return line


def run(args: argparse.Namespace) -> int:
    from videovlm.paths import check_outputs
    from videovlm.qa.api import BatchOptions, VideoQA
    from videovlm.qa.batch import process_rank, write_predictions
    from videovlm.qa.dispatch import parse_max_memory
    from videovlm.qa.generation import terminal_streamer

    try:
        mode = _check_mode(args)
        settings = _settings(args)
        candidates = _candidates(args)
        if mode == "batch":  # before loading the model: a refused output costs nothing
            check_outputs({"--output": args.output}, files={"--data": args.data}, folders={"--model": args.model})
        placement = {"device_map": args.device_map, "max_memory": parse_max_memory(args.max_memory), "offload_folder": args.offload_folder}
        vqa = VideoQA.from_pretrained(args.model, sampler=args.sampler, device=args.device, backend=args.backend, dtype=args.dtype, max_visual_tokens=args.max_visual_tokens, decode_size=args.decode_size, **placement)
        if mode == "batch":
            options = BatchOptions(
                batch_size=args.batch_size,
                settings=settings,
                timestamps=args.timestamps,
                candidates=tuple(candidates) if candidates else None,
            )
            summary = write_predictions(
                vqa, args.data, args.output, task=args.task, options=options, progress=not args.no_progress, model_dir=args.model
            )
            if process_rank()[0] == 0:  # under torchrun: one report, from the rank that merged
                print(_batch_report(summary), file=sys.stderr)
            if args.strict and summary.errors:
                return 1
        elif mode == "chat":
            _chat(vqa, args, settings)
        else:
            streamer = terminal_streamer(vqa.model.tokenizer) if args.stream else None
            answer = vqa.qa(args.video, args.question, settings=settings, timestamps=args.timestamps, candidates=candidates, streamer=streamer)
            if streamer is None:
                print(answer)
    except (ValueError, OSError, VideoDecodeError) as e:
        # bad options, unreadable model / data / video: one clear line, no traceback
        print(f"videovlm qa: error: {e}", file=sys.stderr)
        return 2
    return 0
