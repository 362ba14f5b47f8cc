"""`videovlm eval`: score predictions (or a model's answers) and write the report.

    videovlm eval --task qa --predictions predictions.jsonl [--output report.json]
    videovlm eval --task qa --model DIR --data test/qa.json [--control shuffled|blank [--control-seed 0]]
    videovlm eval --task caption --predictions captions.jsonl --data test/captions.csv \\
        [--annotations test/annotations.jsonl]
    videovlm eval --task retrieval --scores scores.safetensors
    videovlm eval --task pope --predictions predictions.jsonl
    videovlm eval --task mcq --model DIR --data test/mcq.json [--scoring likelihood|generate [--length-normalize]]

With ``--model``, inference goes through `videovlm.qa` (`predict_records(model_dir=, data=,
task=)` returning prediction dicts, and `retrieval_scores(model_dir=, data=)` returning the
(N_text, N_video) score matrix and the text -> video pairing); the predictions are saved next
to the report so that the numbers can be recomputed without the model. ``--control`` answers
every question a second time without its video (`videovlm.eval.controls`): the report adds
the accuracy under the control and the drop per type, and the control's predictions go
beside the real ones (``<output stem>.control-<name>.predictions.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from videovlm.eval.controls import CONTROLS, DEFAULT_CONTROL_SEED, control_predictions_path, control_section
from videovlm.eval.records import (
    PredictionRecord,
    duplicate_ids,
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
from videovlm.paths import check_outputs, file_problem, write_atomic
from videovlm.video.types import VideoDecodeError

TASKS = ("qa", "mcq", "caption", "retrieval", "pope")


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
    parser.add_argument(
        "--scoring",
        choices=("likelihood", "generate"),
        default="likelihood",
        help="mcq with --model: the option with the most probable answer tokens (default), or the option the generated answer names",
    )
    parser.add_argument("--length-normalize", action="store_true", help="mcq --scoring likelihood: mean log-probability per token instead of the sum")
    parser.add_argument("--sampler", default="uniform:8", help="caption CLIPScore: frames to score per video (default: uniform:8)")
    parser.add_argument("--output", type=Path, default=Path("report.json"), help="report JSON path; .md and .png are written beside it")
    parser.add_argument(
        "--control",
        choices=CONTROLS,
        help="qa with --model: answer every question again without its video, 'shuffled' (the frames of another "
        "video, a seeded derangement) or 'blank' (black frames); the report shows real, control and drop per type",
    )
    parser.add_argument(
        "--control-seed",
        type=int,
        default=None,
        help=f"--control shuffled: the seed of the video permutation (default {DEFAULT_CONTROL_SEED})",
    )


def check_control_arguments(args: argparse.Namespace) -> None:
    """A control re-answers the questions, so it needs the model (not fixed --predictions)."""
    if args.control is None:
        if args.control_seed is not None:
            raise EvalInputError("--control-seed is the seed of --control shuffled; give --control shuffled with it")
        return
    if args.task != "qa":
        raise EvalInputError(f"--control is for --task qa (per-type accuracy with and without the video), not --task {args.task}")
    if args.model is None:
        given = "--predictions" if args.predictions is not None else "--scores"
        raise EvalInputError(
            f"--control {args.control} needs --model DIR (with --data): the control answers every question again "
            f"without its video, and {given} holds fixed answers"
        )
    if args.control_seed is not None and args.control != "shuffled":
        raise EvalInputError(f"--control-seed is the seed of --control shuffled; --control {args.control} has no randomness")


def _predictions_path(args: argparse.Namespace) -> Path:
    return args.output.with_suffix(".predictions.jsonl")


def _parse_rows(rows: list[dict], *, require_answer: bool, where: str) -> list[PredictionRecord]:
    return [parse_prediction(row, where=f"{where} item {i}", require_answer=require_answer) for i, row in enumerate(rows)]


def _model_predictions(args: argparse.Namespace, *, require_answer: bool) -> tuple[list[PredictionRecord], dict | None]:
    """The model's predictions on --data (saved beside the report) and, with --control, the
    report's control block (the control pass saved beside them too)."""
    if args.data is None:
        raise EvalInputError("--model needs --data (the questions or videos to run the model on)")
    from videovlm.qa import predict_controlled_records, predict_records  # imported here: it loads torch models

    if args.task == "mcq":
        from videovlm.qa.mcq import predict_mcq_records

        rows, controlled = predict_mcq_records(model_dir=args.model, data=args.data, scoring=args.scoring, length_normalize=args.length_normalize), None
    elif args.control is None:
        rows, controlled = predict_records(model_dir=args.model, data=args.data, task=args.task), None
    else:
        seed = DEFAULT_CONTROL_SEED if args.control_seed is None else args.control_seed
        controlled = predict_controlled_records(model_dir=args.model, data=args.data, task=args.task, control=args.control, seed=seed)
        rows = controlled.real
    records = _parse_rows(rows, require_answer=require_answer, where="model output")
    if not records:
        raise EvalInputError(f"the model produced no predictions for {args.data}")
    saved = _predictions_path(args)
    write_atomic(saved, "".join(to_json_line(r) + "\n" for r in records))
    print(f"predictions saved to {saved}")
    if controlled is None:
        return records, None
    control_records = _parse_rows(controlled.control, require_answer=require_answer, where=f"{args.control} control output")
    control_saved = control_predictions_path(saved, args.control)
    # the raw lines: they name the video whose frames each answer saw (control_video_id)
    write_atomic(control_saved, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in controlled.control))
    print(f"{args.control} control predictions saved to {control_saved}")
    section = control_section(name=args.control, real=records, control=control_records, seed=controlled.seed, predictions=control_saved)
    return records, section


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
    annotations_path = _annotations_path(args)
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


def read_scores_file(path: Path) -> tuple[torch.Tensor, list[int]]:
    """``scores`` (N_text, N_video) and ``text_to_video`` (N_text,) from a safetensors file;
    ``EvalInputError`` naming the file for anything that is not such a file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    problem = file_problem(path)
    if problem is not None:
        raise EvalInputError(f"scores file {path}: {problem}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise EvalInputError(f"{path}: not a readable safetensors file ({e})") from None
    for key in ("scores", "text_to_video"):
        if key not in tensors:
            raise EvalInputError(f"{path}: missing tensor {key!r} (has {sorted(tensors)})")
    scores, text_to_video = tensors["scores"], tensors["text_to_video"]
    if scores.ndim != 2 or 0 in scores.shape or not scores.is_floating_point():
        raise EvalInputError(f"{path}: 'scores' must be a non-empty float (N_text, N_video) matrix, got {scores.dtype} {tuple(scores.shape)}")
    if text_to_video.ndim != 1 or text_to_video.is_floating_point() or text_to_video.dtype == torch.bool:
        raise EvalInputError(f"{path}: 'text_to_video' must be a 1-D integer tensor, got {text_to_video.dtype} {tuple(text_to_video.shape)}")
    return scores, text_to_video.tolist()


def _retrieval_inputs(args: argparse.Namespace):
    if args.scores is not None:
        return read_scores_file(args.scores)
    if args.model is None:
        raise EvalInputError("--task retrieval needs --scores FILE or --model DIR --data PATH")
    if args.data is None:
        raise EvalInputError("--model needs --data (the captions and videos to match)")
    from videovlm.qa import retrieval_scores

    return retrieval_scores(model_dir=args.model, data=args.data)


def _check_unique(records: list[PredictionRecord], args: argparse.Namespace) -> None:
    """Each question (each video, for captions) is scored once: a duplicate would count twice."""
    duplicates = duplicate_ids(records, per_video=args.task == "caption")
    if not duplicates:
        return
    source = f"--predictions {args.predictions}" if args.predictions is not None else f"the questions of --data {args.data}"
    shown = "; ".join(
        f"video {key[0]!r}" + (f" question {key[1]!r}" if len(key) > 1 and key[1] is not None else "") + f" x{count}"
        for key, count in list(duplicates.items())[:5]
    )
    raise EvalInputError(
        f"{source}: {len(duplicates)} prediction ids occur more than once ({shown}); each would be counted "
        "every time: remove the repeated lines (a file concatenated twice?)"
    )


@dataclass(frozen=True)
class Evaluation:
    """What the report is built from: the task result, the items scored, those with an
    error, and the video-blind control block (--control, else None)."""

    result: TaskResult
    items: int
    errors: int
    control: dict | None = None


def _evaluate(args: argparse.Namespace) -> Evaluation:
    if args.task == "retrieval":
        scores, text_to_video = _retrieval_inputs(args)
        try:
            return Evaluation(evaluate_retrieval(scores, text_to_video), scores.shape[0], 0)
        except ValueError as e:  # shapes, ids or NaN that do not fit: name where they came from
            raise EvalInputError(f"{args.scores or args.model}: {e}") from None
    if args.scores is not None:
        raise EvalInputError(f"--scores is for --task retrieval, not {args.task}")
    require_answer = args.task in ("qa", "mcq", "pope")
    control = None
    if args.predictions is not None:
        records = read_predictions_jsonl(args.predictions, require_answer=require_answer)
    else:
        records, control = _model_predictions(args, require_answer=require_answer)
    _check_unique(records, args)
    if args.task in ("qa", "mcq"):  # mcq: the chosen option's letter against the right one
        result = evaluate_qa(records)
    elif args.task == "pope":
        result = evaluate_pope(records)
    else:
        result = _evaluate_caption(args, records)
    return Evaluation(result, len(records), sum(r.prediction is None for r in records), control)


def _annotations_path(args: argparse.Namespace) -> Path | None:
    """--annotations, else annotations.jsonl beside --data when it exists (caption)."""
    if args.annotations is not None or args.data is None:
        return args.annotations
    beside = args.data.parent / "annotations.jsonl"
    return beside if beside.is_file() else None


def _data_videos(args: argparse.Namespace) -> dict[str, Path]:
    """The videos --data names, where this run reads them (caption data, or --model)."""
    from videovlm.data.formats import read_qa_json, read_webvid_csv

    if args.data is None or not (args.task == "caption" or args.model is not None):
        return {}
    if args.task == "caption":
        return {f"the video of {c.video_id} in --data": c.video for c in read_webvid_csv(args.data, check_files=False)}
    if args.task == "mcq":
        from videovlm.data.mcq import read_mcq_json

        return {f"the video of {q.video_id} in --data": q.video for q in read_mcq_json(args.data, check_files=False)}
    return {f"the video of {q.video_id} in --data": q.video for q in read_qa_json(args.data, check_files=False)}


def _check_output_paths(args: argparse.Namespace) -> None:
    """Refuse before any work when a file this run writes is one of its inputs."""
    output = args.output
    outputs = {"--output": output, "the markdown report": output.with_suffix(".md"), "the chart": output.with_suffix(".png")}
    if args.model is not None and args.task != "retrieval":
        outputs["the saved predictions"] = _predictions_path(args)
        if args.control is not None:
            outputs["the control's predictions"] = control_predictions_path(_predictions_path(args), args.control)
    files = {"--predictions": args.predictions, "--scores": args.scores, "--data": args.data, "--annotations": _annotations_path(args)}
    files.update(_data_videos(args))
    check_outputs(outputs, files=files, folders={"--model": args.model, "--clip-model": args.clip_model})


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
    if args.task == "mcq" and args.model is not None:
        command += ["--scoring", args.scoring] + (["--length-normalize"] if args.length_normalize else [])
    if args.control is not None:
        command += ["--control", args.control]
        if args.control == "shuffled":
            command += ["--control-seed", str(DEFAULT_CONTROL_SEED if args.control_seed is None else args.control_seed)]
    return command


def run(args: argparse.Namespace) -> int:
    try:
        check_control_arguments(args)
        _check_output_paths(args)
        evaluation = _evaluate(args)
    except (ValueError, OSError, VideoDecodeError) as e:
        # bad inputs (EvalInputError, PredictionFormatError, DataFormatError, ControlError are
        # ValueErrors), missing files and undecodable videos: one clear line, no traceback
        print(f"videovlm eval: error: {e}", file=sys.stderr)
        return 2
    result = evaluation.result
    report = build_report(
        task=args.task,
        command=_command_line(args),
        metrics=result.metrics,
        items=evaluation.items,
        errors=evaluation.errors,
        data=args.data,
        predictions=args.predictions or args.scores,
        model=args.model,
        per_type=result.per_type,
        details=result.details,
        non_fraction_metrics=result.non_fraction_metrics,
        control=evaluation.control,
    )
    try:
        paths = write_report(report, args.output)
    except (ValueError, OSError) as e:
        print(f"videovlm eval: error: {e}", file=sys.stderr)
        return 2
    print(markdown_table(report))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
