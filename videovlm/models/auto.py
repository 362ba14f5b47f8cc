"""Load any family (or its processor) from a folder written by ``save_pretrained``, by the
``model_type`` in its config.json (transformers' ``AutoModel`` / ``AutoProcessor``). Only
``videovlm.models``' own ``__init__`` and code outside the package import this module; each
family's classes load themselves (``VideoLlamaModel.from_pretrained``,
``VideoLlamaProcessor.from_pretrained``)."""

from __future__ import annotations

from pathlib import Path

from videovlm.models.base import VideoFamilyModel, read_config_json
from videovlm.models.configs import ModelConfigError
from videovlm.models.processing import FamilyProcessor
from videovlm.models.videobert import VideoBertModel
from videovlm.models.videollama import VideoLlamaModel
from videovlm.models.videoofa import VideoOFAModel

FAMILIES: dict[str, type[VideoFamilyModel]] = {cls.MODEL_TYPE: cls for cls in (VideoLlamaModel, VideoOFAModel, VideoBertModel)}


def family_of(directory: Path) -> type[VideoFamilyModel]:
    """The family class named by ``model_type`` in ``directory/config.json``."""
    model_type = read_config_json(directory).get("model_type")
    if model_type not in FAMILIES:
        raise ModelConfigError(f"{directory / 'config.json'}: model_type {model_type!r} is not a videovlm family ({', '.join(FAMILIES)})")
    return FAMILIES[model_type]


def load_pretrained(directory: str | Path) -> VideoFamilyModel:
    """The family named by ``model_type`` in ``directory/config.json``, with its weights."""
    return family_of(Path(directory)).from_pretrained(directory)


def load_processor(directory: str | Path) -> FamilyProcessor:
    """The processor saved with a model of any family: tokenizer files + the processor settings
    in config.json. Builds only the text/pixel side (no weights are read)."""
    return family_of(Path(directory)).PROCESSOR_CLASS.from_pretrained(directory)
