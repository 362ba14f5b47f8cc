"""`videovlm eval`: score predictions (or a model's answers) and write the report.

    videovlm eval --task qa --predictions predictions.jsonl [--output report.json]
    videovlm eval --task qa --model DIR --data test/qa.json
    videovlm eval --task caption --predictions captions.jsonl --data test/captions.csv \\
        [--annotations test/annotations.jsonl]
    videovlm eval --task retrieval --scores scores.safetensors
    videovlm eval --task pope --predictions predictions.jsonl

With ``--model``, inference goes through `videovlm.qa` (`predict_records(model_dir=, data=,
task=)` returning prediction dicts, and `retrieval_scores(model_dir=, data=)` returning the
(N_text, N_video) score matrix and the text -> video pairing); the predictions are saved next
to the report so that the numbers can be recomputed without the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from videovlm.eval.records import (
    PredictionRecord,
    parse_prediction,
    read_predictions_jsonl,
    to_json_line,
)
from videovlm.eval.report import build_report, markdown_table, write_report
from videovlm.eval.tasks import (
    EvalInputError,
    TaskResult,
    evaluate_caption,
    evaluate_pope,
    evaluate_qa,
    evaluate_retrieval,
    read_ground_truth_objects,
)

from videovlm.video.types import VideoDecodeError

TASKS = ("qa", "caption", "retrieval", "pope")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS, help="what to evaluate")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", type=Path, help="predictions JSONL (video_id, prediction or error, answer, type...)")
    source.add_argument("--model", type=Path, help="a saved model folder: answer --data with it first (needs videovlm.qa)")
    source.add_argument("--scores", type=Path, help="retrieval: safetensors with 'scores' (N_text, N_video) and 'text_to_video' (N_text,)")
    parser.add_argument("--data", type=Path, help="the data file: QA JSON for --model; captions CSV (references) for caption")
    parser.add_argument(
        "--annotations",
        type=Path,
        help="caption: ground-truth objects for CHAIR (default: annotations.jsonl beside --data, if present)",
    )
    parser.add_argument(
        "--clip-model",
        type=Path,
        help="caption: a CLIP-style model folder (model, tokenizer, image processor) for CLIPScore; needs --data",
    )
    parser.add_argument("--sampler", default="uniform:8", help="caption CLIPScore: frames to score per video (default: uniform:8)")
    parser.add_argument("--output", type=Path, default=Path("report.json"), help="report JSON path; .md and .png are written beside it")


def _model_predictions(args: argparse.Namespace, *, require_answer: bool) -> list[PredictionRecord]:
    if args.data is None:
        raise EvalInputError("--model needs --data (the questions or videos to run the model on)")
    from videovlm.qa import predict_records  # imported here: it loads torch models

    rows = predict_records(model_dir=args.model, data=args.data, task=args.task)
    records = [
        parse_prediction(row, where=f"model output item {i}", require_answer=require_answer) for i, row in enumerate(rows)
    ]
    if not records:
        raise EvalInputError(f"the model produced no predictions for {args.data}")
    saved = args.output.with_suffix(".predictions.jsonl")
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text("".join(to_json_line(r) + "\n" for r in records), encoding="utf-8")
    print(f"predictions saved to {saved}")
    return records


def _caption_data(data: Path | None, *, need_videos: bool) -> tuple[dict[str, list[str]] | None, dict[str, Path]]:
    """Reference captions and video paths per video id from a WebVid-style captions CSV."""
    if data is None:
        if need_videos:
            raise EvalInputError("--clip-model needs --data (the captions CSV that names the videos)")
        return None, {}
    from videovlm.data.formats import read_webvid_csv

    references: dict[str, list[str]] = {}
    videos: dict[str, Path] = {}
    for caption in read_webvid_csv(data, check_files=need_videos):
        references.setdefault(caption.video_id, []).append(caption.caption)
        videos[caption.video_id] = caption.video
    return references, videos


def _evaluate_caption(args: argparse.Namespace, records: list[PredictionRecord]) -> TaskResult:
    annotations_path = args.annotations
    if annotations_path is None and args.data is not None and (args.data.parent / "annotations.jsonl").is_file():
        annotations_path = args.data.parent / "annotations.jsonl"
    annotations = read_ground_truth_objects(annotations_path) if annotations_path is not None else None
    references, videos = _caption_data(args.data, need_videos=args.clip_model is not None)
    result = evaluate_caption(records, references=references, annotations=annotations)
    if args.clip_model is None:
        return result
    from videovlm.eval.clipscore import caption_clip_scores, load_hf_clip_core

    core, image_processor = load_hf_clip_core(args.clip_model)
    captions = {r.video_id: r.prediction or "" for r in records}
    per_video = caption_clip_scores(core, image_processor=image_processor, videos=videos, captions=captions, sampler=args.sampler)
    metrics = {**result.metrics, "CLIPScore": sum(per_video.values()) / len(per_video)}
    details = {**result.details, "clipscore": {"model": str(args.clip_model), "sampler": args.sampler}}
    return TaskResult(metrics, result.per_type, details, (*result.non_fraction_metrics, "CLIPScore"))


def _retrieval_inputs(args: argparse.Namespace):
    if args.scores is not None:
        from safetensors.torch import load_file

        if not args.scores.is_file():
            raise EvalInputError(f"scores file not found: {args.scores}")
        tensors = load_file(str(args.scores))
        for key in ("scores", "text_to_video"):
            if key not in tensors:
                raise EvalInputError(f"{args.scores}: missing tensor {key!r} (has {sorted(tensors)})")
        return tensors["scores"], tensors["text_to_video"].tolist()
    if args.model is None:
        raise EvalInputError("--task retrieval needs --scores FILE or --model DIR --data PATH")
    if args.data is None:
        raise EvalInputError("--model needs --data (the captions and videos to match)")
    from videovlm.qa import retrieval_scores

    return retrieval_scores(model_dir=args.model, data=args.data)


def _evaluate(args: argparse.Namespace) -> tuple[TaskResult, int, int]:
    """The task result, the number of items and the number of errors."""
    if args.task == "retrieval":
        scores, text_to_video = _retrieval_inputs(args)
        return evaluate_retrieval(scores, text_to_video), scores.shape[0], 0
    if args.scores is not None:
        raise EvalInputError(f"--scores is for --task retrieval, not {args.task}")
    require_answer = args.task in ("qa", "pope")
    if args.predictions is not None:
        records = read_predictions_jsonl(args.predictions, require_answer=require_answer)
    else:
        records = _model_predictions(args, require_answer=require_answer)
    if args.task == "qa":
        result = evaluate_qa(records)
    elif args.task == "pope":
        result = evaluate_pope(records)
    else:
        result = _evaluate_caption(args, records)
    return result, len(records), sum(r.prediction is None for r in records)


def _command_line(args: argparse.Namespace) -> list[str]:
    """The command that reproduces this report (from the parsed options, not sys.argv, so it is
    right however the command was invoked)."""
    command = ["videovlm", "eval", "--task", args.task]
    for option in ("predictions", "model", "scores", "data", "annotations", "clip_model", "output"):
        value = getattr(args, option)
        if value is not None:
            command += [f"--{option.replace('_', '-')}", str(value)]
    if args.clip_model is not None:
        command += ["--sampler", args.sampler]
    return command


def run(args: argparse.Namespace) -> int:
    try:
        result, items, errors = _evaluate(args)
    except (ValueError, OSError, VideoDecodeError) as e:
        # bad inputs (EvalInputError, PredictionFormatError, DataFormatError are ValueErrors),
        # missing files and undecodable videos: one clear line, no traceback
        print(f"videovlm eval: error: {e}", file=sys.stderr)
        return 2
    report = build_report(
        task=args.task,
        command=_command_line(args),
        metrics=result.metrics,
        items=items,
        errors=errors,
        data=args.data,
        predictions=args.predictions or args.scores,
        model=args.model,
        per_type=result.per_type,
        details=result.details,
        non_fraction_metrics=result.non_fraction_metrics,
    )
    paths = write_report(report, args.output)
    print(markdown_table(report))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
