"""One way to get a Hugging Face model: ``from_pretrained`` (hub id or local folder) or a config.

Tiny presets build from a config dict; real presets name a checkpoint. Tests save tiny HF
models to a folder and load them through ``build_hf_model(pretrained=folder)``, which is the
same call a user's hub id goes through.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from videovlm.models.configs import ModelConfigError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hf_config_from_dict(data: dict[str, Any], *, where: str) -> PretrainedConfig:
    """A transformers config from its ``to_dict()`` form (``model_type`` picks the class)."""
    model_type = data.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ModelConfigError(f"{where}.model_type: unknown transformers model type {model_type!r}")
    return CONFIG_MAPPING[model_type].from_dict(dict(data))


def resolve_dtype(dtype: str | None, *, where: str) -> torch.dtype | None:
    if dtype is None:
        return None
    if dtype not in _DTYPES:
        raise ModelConfigError(f"{where}.dtype: expected one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def load_hf_config(*, pretrained: str | None, hf_config: dict | None, where: str) -> PretrainedConfig:
    """The transformers config of a component given exactly one of a checkpoint or a config dict."""
    if (pretrained is None) == (hf_config is None):
        raise ModelConfigError(f"{where}: give exactly one of 'pretrained' (hub id or folder) or 'hf_config'")
    if pretrained is not None:
        try:
            return AutoConfig.from_pretrained(pretrained, trust_remote_code=False)
        except OSError as e:
            raise ModelConfigError(f"{where}.pretrained: cannot load a config from {pretrained!r}: {e}") from e
    return hf_config_from_dict(hf_config, where=f"{where}.hf_config")


def blip2_checkpoint_config(pretrained: str | None):
    """The ``Blip2Config`` when ``pretrained`` names a full BLIP-2 checkpoint, else None."""
    if pretrained is None:
        return None
    try:
        config = AutoConfig.from_pretrained(pretrained, trust_remote_code=False)
    except (OSError, ValueError):
        return None
    return config if getattr(config, "model_type", None) == "blip-2" else None


def read_checkpoint_tensor(pretrained: str, name: str) -> torch.Tensor:
    """One tensor of a transformers checkpoint (folder or hub id; one file or sharded)."""
    from safetensors import safe_open
    from transformers.utils import cached_file

    index = cached_file(pretrained, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False)
    if index is not None:
        weight_map = json.loads(Path(index).read_text())["weight_map"]
        if name not in weight_map:
            raise ModelConfigError(f"{pretrained}: no tensor {name!r} in its index")
        path = cached_file(pretrained, weight_map[name])
    else:
        path = cached_file(pretrained, "model.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        if name not in handle.keys():
            raise ModelConfigError(f"{pretrained}: no tensor {name!r} in {Path(path).name}")
        return handle.get_tensor(name)


def build_hf_model(
    *,
    model_class: Any,
    pretrained: str | None,
    config: PretrainedConfig,
    dtype: str | None,
    where: str,
    key_mapping: dict[str, str] | None = None,
) -> PreTrainedModel:
    """``model_class.from_pretrained(pretrained)`` when a checkpoint is named, else
    ``from_config(config)`` with fresh weights (``model_class`` is an Auto class or a model class).
    ``key_mapping``: transformers' regex renames of the checkpoint's tensor names (a sub-model
    read from a larger checkpoint, e.g. ``{"^vision_model\\.": ""}``)."""
    torch_dtype = resolve_dtype(dtype, where=where)
    kwargs = {"dtype": torch_dtype} if torch_dtype is not None else {}
    if key_mapping is not None and pretrained is not None:
        kwargs["key_mapping"] = key_mapping
    if pretrained is not None:
        try:
            return model_class.from_pretrained(pretrained, trust_remote_code=False, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelConfigError(f"{where}.pretrained: cannot load {pretrained!r}: {e}") from e
    if hasattr(model_class, "from_config"):
        return model_class.from_config(config, **kwargs)
    model = model_class(config)
    return model.to(torch_dtype) if torch_dtype is not None else model


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Turn on a transformers model's activation (gradient) checkpointing, non-reentrant.

    Non-reentrant: with reentrant checkpointing a frozen model whose inputs need no grad
    would silently give the trainable parts before it no gradient. Newer transformers call
    it ``activation_checkpointing_enable``; older ones ``gradient_checkpointing_enable``."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
