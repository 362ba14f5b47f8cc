"""VideoBERT, as transformers lays out a model family: ``configuration`` (the typed config),
``processing`` (records and frames -> model inputs; imports the configuration) and ``modeling``
(the model; imports both). Recipe builders: ``videovlm.recipes.builders.tiny_videobert_model`` and
``videovlm.recipes.videobert`` (the hierarchical k-means visual vocabulary); presets:
``presets.py`` here; QA adapter: ``videovlm.qa.families.BertAnswerer``; recipes:
``recipes/videobert/``.
"""

from __future__ import annotations

from videovlm.models.videobert.configuration import BertTemplateConfig, VideoBertConfig
from videovlm.models.videobert.modeling import VideoBertModel
from videovlm.models.videobert.processing import VideoBertProcessor

__all__ = ["BertTemplateConfig", "VideoBertConfig", "VideoBertModel", "VideoBertProcessor"]
