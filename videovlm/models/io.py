"""Load any family (or its processor) from a folder written by ``save_pretrained``."""

from __future__ import annotations

from pathlib import Path

from videovlm.models.base import VideoFamilyModel, read_config_json
from videovlm.models.configs import ModelConfigError


def _families() -> dict[str, type[VideoFamilyModel]]:
    from videovlm.models.videobert import VideoBertModel
    from videovlm.models.videollama import VideoLlamaModel
    from videovlm.models.videoofa import VideoOFAModel

    return {cls.MODEL_TYPE: cls for cls in (VideoLlamaModel, VideoOFAModel, VideoBertModel)}


def load_pretrained(directory: str | Path) -> VideoFamilyModel:
    """The family named by ``model_type`` in ``directory/config.json``, with its weights."""
    directory = Path(directory)
    model_type = read_config_json(directory).get("model_type")
    families = _families()
    if model_type not in families:
        raise ModelConfigError(
            f"{directory / 'config.json'}: model_type {model_type!r} is not a videovlm family ({', '.join(families)})"
        )
    return families[model_type].from_pretrained(directory)


def load_processor(directory: str | Path, *, expected: type | None = None):
    """The processor saved with a model: tokenizer files + the processor settings in config.json.

    Builds only the text/pixel side (no weights are read)."""
    from videovlm.models.base import load_saved_tokenizer
    from videovlm.models.configs import config_from_dict

    directory = Path(directory)
    data = read_config_json(directory)
    families = _families()
    model_type = data.get("model_type")
    if model_type not in families:
        raise ModelConfigError(f"{directory / 'config.json'}: model_type {model_type!r} is not a videovlm family")
    family = families[model_type]
    config = config_from_dict(family.CONFIG_CLASS, data, where=str(directory / "config.json"))
    processor = family.build_processor(config, tokenizer=load_saved_tokenizer(directory))
    if expected is not None and not isinstance(processor, expected):
        raise ModelConfigError(f"{directory}: holds a {model_type} model, whose processor is {type(processor).__name__}")
    return processor
