"""Video-LLaMA, as transformers lays out a model family: ``configuration`` (the typed config),
``processing`` (records and frames -> model inputs; imports the configuration) and ``modeling``
(the model; imports both). Recipe builders: ``videovlm.recipes.builders.tiny_videollama_model`` / ``videollama_7b_model``;
presets: ``presets.py`` here; QA adapter: ``videovlm.qa.families.LlamaAnswerer``; recipes:
``recipes/videollama/``.
"""

from __future__ import annotations

from videovlm.models.videollama.configuration import ChatTemplateConfig, VideoLlamaConfig
from videovlm.models.videollama.modeling import VideoLlamaModel
from videovlm.models.videollama.processing import VideoLlamaProcessor, encode_chat

__all__ = ["ChatTemplateConfig", "VideoLlamaConfig", "VideoLlamaModel", "VideoLlamaProcessor", "encode_chat"]
