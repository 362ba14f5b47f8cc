"""Video question answering with a trained model: ``VideoQA`` (Python), ``videovlm qa`` (CLI),
and the inference ``videovlm eval --model`` uses (``predict_records``, ``retrieval_scores``)."""

from __future__ import annotations

from videovlm.qa.api import BatchOptions, ChatSession, QARequest, QAResult, VideoQA
from videovlm.qa.batch import BatchSummary, predict_records, write_predictions
from videovlm.qa.families import ChatTurn
from videovlm.qa.frames import QAInputError, SampledFrames, load_frames, model_sampler_spec
from videovlm.qa.generation import GenerationSettings, GenerationSettingsError, terminal_streamer
from videovlm.qa.retrieval import retrieval_scores, score_texts

__all__ = [
    "BatchOptions",
    "BatchSummary",
    "ChatSession",
    "ChatTurn",
    "GenerationSettings",
    "GenerationSettingsError",
    "QAInputError",
    "QARequest",
    "QAResult",
    "SampledFrames",
    "VideoQA",
    "load_frames",
    "model_sampler_spec",
    "predict_records",
    "retrieval_scores",
    "score_texts",
    "terminal_streamer",
    "write_predictions",
]
