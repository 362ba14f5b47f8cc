"""What the three families share: freezing by part name, save/load, visual-token splicing.

Save format (a folder): ``config.json`` (the family config dataclass as JSON, with
``model_type``), ``model.safetensors`` (every weight; shared tensors stored once), and the
tokenizer files (``AutoTokenizer.from_pretrained(folder)`` works on it). No pickles.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from videovlm.components import find_forbidden_keys
from videovlm.models.configs import ModelConfigError, config_from_dict, config_to_dict
from videovlm.models.hf import enable_activation_checkpointing
from videovlm.models.weights import (  # noqa: F401  (WeightsFileError: re-exported, the errors a user catches)
    BASE_FILE,
    WEIGHTS_FILE,
    WeightsFileError,
    load_weights,
    _save_weights,
    unshared,
    unshared_state_dict,
    _write_base,
)

CONFIG_FILE = "config.json"
IGNORE_INDEX = -100  # labels with this value are left out of the loss (HF convention)
LORA_PART = "lora"


class VideoFamilyModel(nn.Module, ABC):
    """Base of ``VideoBertModel``, ``VideoOFAModel`` and ``VideoLlamaModel``.

    Subclasses set ``MODEL_TYPE``, ``CONFIG_CLASS``, ``PROCESSOR_CLASS``, ``PART_NAMES``
    (top-level parts for freezing, in order), ``DEFAULT_TRAINABLE`` (the paper's pattern) and
    ``LANGUAGE_FIELD`` (the config field of the language model), implement
    ``__init__(config, *, tokenizer)`` (with ``self.vision`` and ``self.processor``) and
    ``language_model()``, and may add fields to ``saved_fields()``.
    """

    MODEL_TYPE: ClassVar[str]
    CONFIG_CLASS: ClassVar[type]
    PROCESSOR_CLASS: ClassVar[type]
    PART_NAMES: ClassVar[tuple[str, ...]]
    DEFAULT_TRAINABLE: ClassVar[tuple[str, ...]]
    LANGUAGE_FIELD: ClassVar[str]
    # Old part name -> new: old checkpoints' weights load under the new name, and a trainable
    # list naming the old one gets an error saying what it is called now.
    RENAMED_PARTS: ClassVar[dict[str, str]] = {}

    def __init__(self):
        super().__init__()
        self._frozen_parts: tuple[str, ...] = ()

    # -- parts and freezing -------------------------------------------------------------
    def parts(self) -> dict[str, nn.Module]:
        """Part name -> module, for the parts this instance has (optional ones may be absent)."""
        found = {}
        for name in self.PART_NAMES:
            module = getattr(self, name, None)
            if isinstance(module, nn.Module):
                found[name] = module
        return found

    def train(self, mode: bool = True):
        super().train(mode)
        # Frozen parts stay in eval mode so their dropout / batch statistics do not move.
        for name in self._frozen_parts:
            module = getattr(self, name, None)
            if isinstance(module, nn.Module):
                module.eval()
        return self

    def gradient_checkpointing_enable(self) -> None:
        """Activation checkpointing in every Hugging Face model inside (vision tower, LM,
        Q-Formers); the name is the one the training engine (and HF Trainer) calls."""
        for module in self.modules():
            if isinstance(module, PreTrainedModel) and module.supports_gradient_checkpointing:
                enable_activation_checkpointing(module)

    # -- language side ------------------------------------------------------------------
    @abstractmethod
    def language_model(self) -> nn.Module:
        """The family's language model (LLM, seq2seq or BERT), as the model holds it."""

    def generate_with_language_model(self, **inputs: Any) -> torch.Tensor:
        """The language model's ``generate`` with KV cache, greedy and 16 new tokens unless
        ``inputs`` says otherwise, stopping at the tokenizer's EOS."""
        inputs.setdefault("max_new_tokens", 16)
        inputs.setdefault("do_sample", False)
        return self.language_model().generate(
            use_cache=True, pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id, **inputs
        )

    def export_language_model(self, directory: str | Path) -> Path:
        """The language model alone in plain transformers format (LoRA merged, if any) plus
        the tokenizer: ``AutoModelFor...from_pretrained(directory)`` loads it."""
        from videovlm.models.language import plain_language_model

        directory = Path(directory)
        plain_language_model(self.language_model()).save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        return directory

    # -- save / load --------------------------------------------------------------------
    def save_pretrained(
        self,
        directory: str | Path,
        *,
        max_shard_size: int | str | None = None,
        parts: Sequence[str] | None = None,
        base: str | Path | None = None,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Write config.json, the weights and the tokenizer to ``directory``.

        ``max_shard_size`` (bytes or e.g. "2GB"): transformers' sharded layout instead of one
        ``model.safetensors``. ``parts`` + ``base``: write only these parts' weights (e.g. a
        stage's trainable ones) and name ``base``, the checkpoint folder with the rest, which
        ``from_pretrained`` loads first (see ``videovlm.models.weights``). ``state_dict``: the
        weights to write instead of this model's own (under ZeRO-3, where a rank holds only a
        slice, DeepSpeed's consolidated state dict, gathered one module at a time on rank 0)."""
        directory = Path(directory)
        if (parts is None) != (base is None):
            raise ValueError("save_pretrained: parts and base go together (the parts to write, the checkpoint with the rest)")
        state = unshared_state_dict(self) if state_dict is None else unshared(state_dict)
        if parts is not None:
            unknown = sorted(set(parts) - set(self.parts()) - {LORA_PART})
            if unknown or not parts:
                raise ValueError(f"save_pretrained: parts {unknown or list(parts)} are not parts of {type(self).__name__} ({', '.join(self.parts())})")
            # "lora": the adapters inside the language model, not the base weights around them
            state = {n: t for n, t in state.items() if n.split(".", 1)[0] in parts or (LORA_PART in parts and "lora_" in n)}
        directory.mkdir(parents=True, exist_ok=True)
        config = config_to_dict(self.saved_config())
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        _save_weights(state, directory, max_shard_size=max_shard_size)
        if base is not None:
            _write_base(directory, base=Path(base), parts=parts)
        else:
            (directory / BASE_FILE).unlink(missing_ok=True)
        self.tokenizer.save_pretrained(directory)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path):
        """Rebuild a model saved with ``save_pretrained``; outputs are bit-identical. The model
        is built without weights (meta device) and the saved tensors are put in place, so
        loading needs the checkpoint's memory once, not twice, and no random init (under ZeRO-3:
        built partitioned, see ``build_empty``)."""
        directory = Path(directory)
        data = read_config_json(directory)
        if data.get("model_type") != cls.MODEL_TYPE:
            raise ModelConfigError(
                f"{directory / CONFIG_FILE}: model_type is {data.get('model_type')!r}, expected {cls.MODEL_TYPE!r}"
            )
        config = config_from_dict(cls.CONFIG_CLASS, data, where=str(directory / CONFIG_FILE))
        tokenizer = load_saved_tokenizer(directory)
        model = cls.build_empty(config, tokenizer=tokenizer)
        load_weights(model, directory, renamed_prefixes={f"{old}.": f"{new}." for old, new in cls.RENAMED_PARTS.items()})
        model.eval()
        return model

    @classmethod
    def build_empty(cls, config, *, tokenizer):
        """The model with its parameters on the meta device (no memory, no random init) and its
        buffers real (they are small, and some are computed, not saved), ready for weights
        to be assigned. accelerate's ``init_empty_weights`` re-registers each parameter, which
        unties tied ones (BART's shared embeddings, a tied LM head): transformers ties them again.

        Under ZeRO-3 (``videovlm.models.partitioned.zero3_enabled``) the model is built for real
        instead: transformers builds its parts inside ``deepspeed.zero.Init``, partitioned
        across the ranks, and ``load_weights`` fills them in gathered one module at a time."""
        from accelerate import init_empty_weights

        from videovlm.models.partitioned import zero3_enabled

        if zero3_enabled():
            return cls(config, tokenizer=tokenizer)
        with init_empty_weights():
            model = cls(config, tokenizer=tokenizer)
        for module in model.modules():
            if isinstance(module, PreTrainedModel):
                module.tie_weights()
        return model

    def saved_config(self) -> Any:
        """A config that rebuilds the model offline: the vision tower and the language model
        (``LANGUAGE_FIELD``) with their checkpoint names replaced by their transformers config
        dicts, no tokenizer source (the tokenizer is saved beside it), plus ``saved_fields()``."""
        from videovlm.models.language import saved_language_config, unwrap_lora

        language = saved_language_config(getattr(self.config, self.LANGUAGE_FIELD), unwrap_lora(self.language_model()))
        return dataclasses.replace(
            self.config,
            vision=self.vision.saved_config(self.config.vision),
            tokenizer=None,
            **{self.LANGUAGE_FIELD: language},
            **self.saved_fields(),
        )

    def saved_fields(self) -> dict[str, Any]:
        """Family config fields whose saved value differs from the built one (none by default)."""
        return {}


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def load_saved_tokenizer(directory: Path):
    """``AutoTokenizer.from_pretrained`` on a model folder. Its config.json is ours, not a
    transformers config; the tokenizer files name their class, so transformers' warning
    about the unknown model type is noise and is silenced here. Tokenizer files that ask for
    remote code (``auto_map``) or cannot be parsed are refused by name."""
    directory = Path(directory)
    for name in TOKENIZER_FILES:
        path = directory / name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ModelConfigError(f"{path}: not valid JSON ({e})") from None
            refuse_remote_code(data, source=path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
    except Exception as e:  # the Rust tokenizer raises a bare Exception on a corrupt tokenizer.json
        raise ModelConfigError(f"{directory}: cannot load the tokenizer ({type(e).__name__}: {e})") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def refuse_remote_code(data: Any, *, source: Path) -> None:
    """Refuse a config that asks for code shipped with the checkpoint: ``trust_remote_code``
    anywhere, or transformers' ``auto_map`` (classes to import from the checkpoint folder)."""
    found = list(find_forbidden_keys(data)) + [path for path in _key_paths(data, "auto_map")]
    if found:
        raise ModelConfigError(f"{source}: {found[0]}: refused; videovlm never runs code shipped with a checkpoint")


def _key_paths(data: Any, key: str, path: str = "") -> list[str]:
    found = []
    if isinstance(data, dict):
        for k, v in data.items():
            here = f"{path}.{k}" if path else str(k)
            if k == key:
                found.append(here)
            found.extend(_key_paths(v, key, here))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found.extend(_key_paths(v, key, f"{path}[{i}]"))
    return found


def to_module_dtype(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """Cast a float input to the dtype of the module that reads it: parts may differ (a bf16
    vision tower before an fp32 temporal encoder, or everything bf16 under DeepSpeed)."""
    param = next(module.parameters(), None)
    return x if param is None or not x.is_floating_point() else x.to(param.dtype)


def check_video_inputs(pixel_values: torch.Tensor, frame_mask: torch.Tensor | None, *, max_frames: int) -> torch.Tensor:
    """Validate ``pixel_values (B, T, C, H, W)`` against max_frames and return a bool (B, T)
    frame mask (all True when None)."""
    return _checked_frames(pixel_values, frame_mask, max_frames=max_frames, name="pixel_values", layout="(B, T, C, H, W)", ndim=5)


def check_frame_features(
    frame_features: torch.Tensor, frame_mask: torch.Tensor | None, *, max_frames: int, name: str = "frame_features"
) -> torch.Tensor:
    """Validate per-frame features ``(B, T, N, D)`` (a frozen front's output, e.g. from the
    feature cache) the way ``check_video_inputs`` validates pixels, and return the bool (B, T)
    frame mask. ``name``: the argument's name in error messages."""
    return _checked_frames(frame_features, frame_mask, max_frames=max_frames, name=name, layout="(B, T, N, D)", ndim=4)


def frame_tokens_from(vision: nn.Module, *, pixel_values=None, frame_features=None, frame_mask=None, max_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame tokens (B, T, N, D) and the validated bool (B, T) frame mask from exactly one of
    ``pixel_values (B, T, C, H, W)`` (through the ``vision`` tower) and ``frame_features
    (B, T, N, D)`` (the tower's output, e.g. from the feature cache, used as given)."""
    if (pixel_values is None) == (frame_features is None):
        got = "both" if pixel_values is not None else "none"
        raise ValueError(f"give exactly one of pixel_values (B, T, C, H, W) / frame_features (B, T, N, D); got {got}")
    if frame_features is None:
        frame_mask = check_video_inputs(pixel_values, frame_mask, max_frames=max_frames)
        return vision(pixel_values), frame_mask  # (B, T, N, D), (B, T)
    return frame_features, check_frame_features(frame_features, frame_mask, max_frames=max_frames)


def _checked_frames(video: torch.Tensor, frame_mask: torch.Tensor | None, *, max_frames: int, name: str, layout: str, ndim: int) -> torch.Tensor:
    if not isinstance(video, torch.Tensor) or video.ndim != ndim:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"{name}: expected {layout}, got {shape}")
    batch, num_frames = video.shape[:2]
    if num_frames > max_frames:
        raise ValueError(f"{name}: {num_frames} frames but max_frames is {max_frames}")
    if frame_mask is None:
        return torch.ones(batch, num_frames, dtype=torch.bool, device=video.device)
    if frame_mask.dtype != torch.bool or tuple(frame_mask.shape) != (batch, num_frames):
        raise ValueError(
            f"frame_mask: expected bool (B, T) = {(batch, num_frames)}, got {frame_mask.dtype} {tuple(frame_mask.shape)}"
        )
    return frame_mask


def check_sequence_length(length: int, config, *, what: str) -> None:
    """Learned position tables (BERT, BART) cannot go past ``max_position_embeddings``."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and length > limit:
        raise ValueError(
            f"{what}: {length} positions but the language model has max_position_embeddings={limit} "
            "(use fewer frames, fewer tokens per frame or shorter text)"
        )


def check_family_config(
    *, family: str, lm_field: str, lm_kind: str, expected_kind: str, max_frames: int, beyond_max_frames: str = "error"
) -> None:
    """The checks every family config makes: the right kind of language model, max_frames >= 1,
    a known ``beyond_max_frames`` policy."""
    if lm_kind != expected_kind:
        raise ModelConfigError(f"{lm_field}.kind: {family} needs a {expected_kind} language model, got {lm_kind!r}")
    if max_frames < 1:
        raise ModelConfigError(f"max_frames: must be >= 1, got {max_frames}")
    if beyond_max_frames not in BEYOND_MAX_FRAMES:
        raise ModelConfigError(f"beyond_max_frames: must be one of {BEYOND_MAX_FRAMES}, got {beyond_max_frames!r}")


BEYOND_MAX_FRAMES = ("error", "interpolate")


def frame_limit(config) -> int:
    """The most frames the family accepts: ``max_frames``, or no limit when the config's
    ``beyond_max_frames`` is ``interpolate`` (the temporal encoder resamples its positions)."""
    return sys.maxsize if getattr(config, "beyond_max_frames", "error") == "interpolate" else config.max_frames


def temporal_defaults(config) -> dict[str, str]:
    """What the family config decides for its temporal encoder's config: ``beyond_max_frames:
    interpolate`` reaches the encoder; an encoder spec that says otherwise is a contradiction."""
    if getattr(config, "beyond_max_frames", "error") != "interpolate":
        return {}
    if config.temporal.get("beyond_max_frames", "interpolate") != "interpolate":
        raise ModelConfigError("temporal.beyond_max_frames: 'error' contradicts the model's beyond_max_frames: interpolate; drop one")
    return {"beyond_max_frames": "interpolate"}


def require_pixel_settings(vision_config) -> Any:
    """The pixel settings a processor needs; a saved config always has them."""
    if vision_config.pixel is None:
        raise ModelConfigError("vision.pixel: not set in this config; build the model to read it from the checkpoint")
    return vision_config.pixel


def read_config_json(directory: Path) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config.json (not a folder written by save_pretrained)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelConfigError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from e
    except UnicodeDecodeError as e:
        raise ModelConfigError(f"{path}: not UTF-8 text ({e.reason})") from None
    if not isinstance(data, dict):
        raise ModelConfigError(f"{path}: expected a JSON object")
    refuse_remote_code(data, source=path)
    return data


def set_trainable(model: VideoFamilyModel, parts: Sequence[str]) -> list[str]:
    """Make exactly the named parts trainable and freeze everything else.

    ``parts`` are the family's ``PART_NAMES`` plus ``"lora"`` (the LoRA adapters inside the
    LM, when the model has them). Unknown names, renamed names (``RENAMED_PARTS``) and parts
    this instance lacks (an ``image_qformer`` not configured, the ``frame_position`` of a
    temporal encoder without one) raise ``ValueError``. Frozen parts are put (and kept) in
    eval mode. Returns the part names that are trainable now.
    """
    if isinstance(parts, str):
        raise TypeError(f"parts: expected a sequence of part names, got the string {parts!r}")
    present = model.parts()
    _check_part_names(model, parts, present)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in parts:
        params = [p for n, p in model.named_parameters() if "lora_" in n] if name == LORA_PART else list(present[name].parameters())
        for p in params:
            p.requires_grad_(True)
    model._frozen_parts = tuple(n for n in present if n not in parts)
    model.train(model.training)
    return list(parts)


def _check_part_names(model: VideoFamilyModel, parts: Sequence[str], present: dict[str, nn.Module]) -> None:
    """Every name is a part this instance has; the error names the first that is not, and why."""
    family = type(model).__name__
    known = (*model.PART_NAMES, LORA_PART)
    for name in parts:
        if name in model.RENAMED_PARTS:
            raise ValueError(f"parts: {name!r} is now called {model.RENAMED_PARTS[name]!r} for {family}; rename it in the trainable list")
        if name not in known:
            raise ValueError(f"parts: unknown part {name!r} for {family} (known: {', '.join(known)})")
        if name == LORA_PART:
            if not any("lora_" in n for n, _ in model.named_parameters()):
                raise ValueError(f"parts: 'lora' named but {family} has no LoRA adapters (config.lora is None)")
        elif name not in present:
            raise ValueError(f"parts: {name!r} named but this {family} has no such part (it has: {', '.join(present)}); drop it from the list")


def splice_visual_tokens(
    *,
    text_embeds: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None,
    visual_tokens: torch.Tensor,
    visual_mask: torch.Tensor,
    placeholder_ids: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Replace the one placeholder token of each row by the row's M visual tokens.

    text_embeds (B, L, D), input_ids/attention_mask/labels (B, L), visual_tokens (B, M, D),
    visual_mask (B, M) bool -> embeds (B, L+M-1, D), mask and labels (B, L+M-1). Visual
    positions get label -100 and the visual mask (tokens of padded frames are not attended).
    """
    # A model placed across devices (accelerate's device map) may run the embeddings on another
    # device than the projection: everything meets where the embeddings are.
    device = text_embeds.device
    input_ids, attention_mask, visual_tokens, visual_mask = (t.to(device) for t in (input_ids, attention_mask, visual_tokens, visual_mask))
    labels = None if labels is None else labels.to(device)
    batch, length = input_ids.shape
    m = visual_tokens.shape[1]
    is_placeholder = torch.isin(input_ids, torch.tensor(list(placeholder_ids), device=input_ids.device))
    counts = is_placeholder.sum(1)
    bad = (counts != 1).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"input_ids: row {bad[0]} has {int(counts[bad[0]])} media placeholder tokens; each row needs exactly one "
            f"(<video> or <image>) where the visual tokens go"
        )
    place = is_placeholder.float().argmax(1, keepdim=True)  # (B, 1)
    out_pos = torch.arange(length + m - 1, device=input_ids.device).unsqueeze(0)  # (1, L')
    in_visual = (out_pos >= place) & (out_pos < place + m)  # (B, L')
    # Text index for each output position: before the placeholder j, after it j - (M - 1).
    text_index = torch.where(out_pos < place, out_pos, out_pos - (m - 1)).clamp(0, length - 1)  # (B, L')
    visual_index = (out_pos - place).clamp(0, m - 1)  # (B, L')
    d = text_embeds.shape[-1]
    gathered_text = text_embeds.gather(1, text_index.unsqueeze(-1).expand(-1, -1, d))  # (B, L', D)
    gathered_visual = visual_tokens.to(text_embeds.dtype).gather(1, visual_index.unsqueeze(-1).expand(-1, -1, d))
    embeds = torch.where(in_visual.unsqueeze(-1), gathered_visual, gathered_text)
    mask = torch.where(in_visual, visual_mask.gather(1, visual_index), attention_mask.gather(1, text_index).bool())
    new_labels = None
    if labels is not None:
        new_labels = torch.where(in_visual, torch.full_like(text_index, IGNORE_INDEX), labels.gather(1, text_index))
    return embeds, mask.to(attention_mask.dtype), new_labels
