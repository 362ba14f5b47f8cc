"""Video question answering with a trained model: ``VideoQA`` (Python), ``videovlm qa`` (CLI),
and the inference ``videovlm eval --model`` uses (``predict_records``, ``retrieval_scores``,
and ``predict_controlled_records`` for the video-blind controls of ``videovlm.qa.controls``)."""

from __future__ import annotations

from videovlm.qa.api import BatchOptions, ChatSession, QARequest, QAResult, VideoQA
from videovlm.qa.batch import BatchSummary, ControlledRows, controlled_prediction_rows, predict_controlled_records, predict_records, write_predictions
from videovlm.qa.controls import CONTROLS, ControlError, control_predictions_path, shuffled_assignment
from videovlm.qa.families import ChatTurn
from videovlm.qa.frames import QAInputError, SampledFrames, blank_frames_like, load_frames, model_sampler_spec
from videovlm.qa.generation import GenerationSettings, GenerationSettingsError, terminal_streamer
from videovlm.qa.retrieval import retrieval_scores, score_texts

__all__ = [
    "BatchOptions",
    "BatchSummary",
    "CONTROLS",
    "ChatSession",
    "ChatTurn",
    "ControlError",
    "ControlledRows",
    "GenerationSettings",
    "GenerationSettingsError",
    "QAInputError",
    "QARequest",
    "QAResult",
    "SampledFrames",
    "VideoQA",
    "blank_frames_like",
    "control_predictions_path",
    "controlled_prediction_rows",
    "load_frames",
    "model_sampler_spec",
    "predict_controlled_records",
    "predict_records",
    "retrieval_scores",
    "score_texts",
    "shuffled_assignment",
    "terminal_streamer",
    "write_predictions",
]
