"""VideoOFA, as transformers lays out a model family: ``configuration`` (the typed config),
``processing`` (records and frames -> model inputs; imports the configuration) and ``modeling``
(the model; imports both). Recipe builders: ``videovlm.recipes.builders.tiny_videoofa_model`` / ``videoofa_base_model``
and the multi-task data of ``videovlm.recipes.videoofa``; presets: ``presets.py`` here; QA
adapter: ``videovlm.qa.families.OFAAnswerer``; recipes: ``recipes/videoofa/``.
"""

from __future__ import annotations

from videovlm.models.videoofa.configuration import OFATemplateConfig, VideoOFAConfig
from videovlm.models.videoofa.modeling import VideoOFAModel
from videovlm.models.videoofa.processing import VideoOFAProcessor

__all__ = ["OFATemplateConfig", "VideoOFAConfig", "VideoOFAModel", "VideoOFAProcessor"]
