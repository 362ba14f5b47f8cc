"""From prediction records to report contents, one function per `videovlm eval` task.

Each returns a `TaskResult` whose fields are the arguments of `videovlm.eval.report.build_report`.
They take the records of `videovlm.eval.records` and plain data, not models, so the numbers
depend only on the predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from videovlm.eval.caption import cider_d, corpus_bleu
from videovlm.eval.chair import chair, synthetic_ground_truth, synthetic_object_vocabulary
from videovlm.eval.pope import pope_metrics
from videovlm.data.synthetic.vocabulary import STATIC_QUESTION_TYPES, TEMPORAL_QUESTION_TYPES
from videovlm.eval.qa import pooled_accuracy, qa_accuracy
from videovlm.eval.records import PredictionRecord
from videovlm.eval.retrieval import retrieval_recall


@dataclass(frozen=True)
class TaskResult:
    """metrics: headline numbers; per_type: per question type rows (qa); details: counts etc.;
    non_fraction_metrics: metric names that are not fractions in [0, 1]."""

    metrics: dict[str, float]
    per_type: dict[str, dict] = field(default_factory=dict)
    details: dict[str, object] = field(default_factory=dict)
    non_fraction_metrics: tuple[str, ...] = ()


# Pooled accuracies reported next to the overall one: the synthetic data's temporal types need
# the order of the frames, the static ones do not (the recipes' targets are set per group).
QUESTION_TYPE_GROUPS: dict[str, tuple[str, ...]] = {"static": STATIC_QUESTION_TYPES, "temporal": TEMPORAL_QUESTION_TYPES}

# The question type of the synthetic data's POPE-style yes/no existence probes.
POPE_QUESTION_TYPE = "exists"


class EvalInputError(ValueError):
    """The inputs of an evaluation do not fit together (missing references, ids, fields)."""


def evaluate_qa(records: Sequence[PredictionRecord]) -> TaskResult:
    """Exact-match accuracy overall, per question type and per group of `QUESTION_TYPE_GROUPS`."""
    result = qa_accuracy(
        predictions=[r.prediction for r in records],
        answers=[r.answer for r in records],
        types=[r.type for r in records],
    )
    per_type = {name: acc.to_dict() for name, acc in result.per_type.items()}
    # the per-type accuracies live in per_type (its own table and chart), not in metrics
    metrics = {"accuracy": result.overall.accuracy}
    details: dict[str, object] = {"correct": result.overall.correct}
    for group, types in QUESTION_TYPE_GROUPS.items():
        pooled = pooled_accuracy(result, types)
        if pooled is not None:
            metrics[f"accuracy/{group}"] = pooled.accuracy
            details[group] = pooled.to_dict()
    return TaskResult(metrics, per_type, details)


def evaluate_pope(records: Sequence[PredictionRecord]) -> TaskResult:
    """POPE metrics over the ``exists`` probes, or over every record if none has that type."""
    probes = [r for r in records if r.type == POPE_QUESTION_TYPE] or list(records)
    score = pope_metrics(predictions=[r.prediction for r in probes], answers=[r.answer for r in probes])
    metrics = {k: getattr(score, k) for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")}
    return TaskResult(metrics, {}, {"confusion": score.to_dict(), "probes": len(probes)})


def read_ground_truth_objects(annotations_path: str | Path) -> dict[str, dict]:
    """video_id -> annotation dict (the ``annotations.jsonl`` line) of the synthetic ground truth."""
    from videovlm.data.formats import read_annotations_jsonl

    return {ann.video_id: ann.to_json() for ann in read_annotations_jsonl(annotations_path, check_files=False)}


def evaluate_caption(
    records: Sequence[PredictionRecord],
    *,
    references: Mapping[str, Sequence[str]] | None = None,
    annotations: Mapping[str, Mapping] | None = None,
) -> TaskResult:
    """BLEU-1..4 and CIDEr-D; CHAIR-i/-s (shape and colour+shape) when annotations are given.

    References come from `references` (video_id -> captions) or from each record's
    ``references`` field. A record with an error is scored as an empty caption.
    """
    candidates: dict[str, str] = {}
    refs: dict[str, list[str]] = {}
    for record in records:
        if record.video_id in candidates:
            raise EvalInputError(f"video {record.video_id!r} has more than one predicted caption")
        video_refs = list(record.references) or list((references or {}).get(record.video_id, ()))
        if not video_refs:
            raise EvalInputError(f"video {record.video_id!r} has no reference captions (record or --data)")
        candidates[record.video_id] = record.prediction or ""
        refs[record.video_id] = video_refs
    bleu = corpus_bleu(candidates, refs)
    cider = cider_d(candidates, refs)
    metrics = {f"BLEU-{n + 1}": value for n, value in enumerate(bleu.bleu)}
    metrics["CIDEr-D"] = cider.cider_d
    details: dict[str, object] = {
        "candidate_length": bleu.candidate_length,
        "reference_length": bleu.reference_length,
    }
    if annotations is not None:
        missing = sorted(set(candidates) - set(annotations))
        if missing:
            raise EvalInputError(f"no ground-truth objects for videos {missing[:5]} in the annotations")
        ids = sorted(candidates)
        for name, with_colors in (("shape", False), ("color_shape", True)):
            score = chair(
                captions=[candidates[i] for i in ids],
                ground_truth=[synthetic_ground_truth(annotations[i], with_colors=with_colors) for i in ids],
                vocabulary=synthetic_object_vocabulary(with_colors=with_colors),
            )
            metrics[f"CHAIR-i/{name}"] = score.chair_i
            metrics[f"CHAIR-s/{name}"] = score.chair_s
            details[f"chair/{name}"] = score.to_dict()
    return TaskResult(metrics, {}, details, non_fraction_metrics=("CIDEr-D",))


def evaluate_retrieval(scores: torch.Tensor, text_to_video: Sequence[int]) -> TaskResult:
    """R@1/5/10 and median rank in both directions from a (N_text, N_video) score matrix."""
    result = retrieval_recall(scores, text_to_video)
    metrics = {f"t2v/R@{k}": v for k, v in result.text_to_video.items()}
    metrics.update({f"v2t/R@{k}": v for k, v in result.video_to_text.items()})
    metrics["t2v/median_rank"] = result.text_to_video_median_rank
    metrics["v2t/median_rank"] = result.video_to_text_median_rank
    return TaskResult(
        metrics,
        {},
        {"texts": scores.shape[0], "videos": scores.shape[1]},
        non_fraction_metrics=("t2v/median_rank", "v2t/median_rank"),
    )
