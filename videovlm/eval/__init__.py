"""Evaluation: metrics on plain predictions and references, the report, and `videovlm eval`.

Metrics (each takes predictions and references, never a model):
`qa_accuracy` (exact match after `normalize_answer`, per question type), `pope_metrics`,
`corpus_bleu` and `cider_d` (coco-caption definitions), `chair` (CHAIR-i / CHAIR-s),
`retrieval_recall` (R@K from a score matrix) and `video_clip_score` (CLIPScore over frames).
"""

from __future__ import annotations

from videovlm.eval.caption import BleuScore, CiderScore, cider_d, corpus_bleu
from videovlm.eval.chair import ChairScore, ObjectVocabulary, chair, synthetic_ground_truth, synthetic_object_vocabulary
from videovlm.eval.clipscore import ContrastiveCore, HFClipCore, video_clip_score
from videovlm.eval.normalize import caption_tokens, normalize_answer
from videovlm.eval.pope import PopeScore, parse_yes_no, pope_metrics
from videovlm.eval.qa import Accuracy, QAAccuracy, pooled_accuracy, qa_accuracy
from videovlm.eval.records import PredictionFormatError, PredictionRecord, read_predictions_jsonl
from videovlm.eval.report import build_report, markdown_table, write_report
from videovlm.eval.retrieval import RetrievalScore, retrieval_ranks, retrieval_recall

__all__ = [
    "Accuracy",
    "BleuScore",
    "ChairScore",
    "CiderScore",
    "ContrastiveCore",
    "HFClipCore",
    "ObjectVocabulary",
    "PopeScore",
    "PredictionFormatError",
    "PredictionRecord",
    "QAAccuracy",
    "RetrievalScore",
    "build_report",
    "caption_tokens",
    "chair",
    "cider_d",
    "corpus_bleu",
    "markdown_table",
    "normalize_answer",
    "parse_yes_no",
    "pooled_accuracy",
    "pope_metrics",
    "qa_accuracy",
    "read_predictions_jsonl",
    "retrieval_ranks",
    "retrieval_recall",
    "synthetic_ground_truth",
    "synthetic_object_vocabulary",
    "video_clip_score",
    "write_report",
]
