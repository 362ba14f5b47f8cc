"""Presets of every family in one place (each family's live in its folder's ``presets.py``):
tiny models that train on 2 CPU cores in minutes, and real ones naming hub checkpoints.

Tiny presets return a model (fresh weights, or the tiny backbones a backbone recipe saved,
passed as folders). Real presets return only a config: building it downloads the checkpoints
(``VideoLlamaModel(videollama_7b())``), which is for a GPU machine, so tests only validate it.
The tiny backbone configs they share are in ``videovlm.models.tiny_configs``.
"""

from __future__ import annotations

from videovlm.models.tiny_configs import (
    TINY_IMAGE_SIZE,
    as_tokenizer,
    tiny_bart_config,
    tiny_bert_config,
    tiny_clip_vision_config,
    tiny_llama_config,
    tiny_vision,
)
from videovlm.models.videobert.presets import tiny_videobert, videobert_base
from videovlm.models.videollama.presets import TINY_TEMPORAL, tiny_videollama, tiny_videollama_config, videollama_7b, videollama_convnext_7b
from videovlm.models.videoofa.presets import tiny_videoofa, videoofa_base

__all__ = ["TINY_IMAGE_SIZE", "TINY_TEMPORAL", "as_tokenizer", "tiny_bart_config", "tiny_bert_config", "tiny_clip_vision_config", "tiny_llama_config", "tiny_videobert", "tiny_videollama", "tiny_videollama_config", "tiny_videoofa", "tiny_vision", "videobert_base", "videollama_7b", "videollama_convnext_7b", "videoofa_base"]
