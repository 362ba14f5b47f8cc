"""Released Video-LLaMA checkpoints (DAMO-NLP-SG/Video-LLaMA) as a videovlm Video-LLaMA model.

    videovlm convert video-llama finetune-vicuna7b-v2.pth --blip2 Salesforce/blip2-flan-t5-xxl \\
        --llm lmsys/vicuna-7b-v1.5 --out runs/video-llama-released

Their ``.pth`` holds ``{"model": state_dict}`` of the trained parts only: the video Q-Former
(``video_Qformer.bert.*``, BLIP-2's BERT code: 2 layers of BERT-base with cross-attention in
every layer, the text feed-forward removed), ``video_query_tokens`` (1, 32, 768),
``video_frame_position_embedding.weight`` (32, 768) and ``llama_proj.{weight,bias}``. The
frozen front end comes from a BLIP-2 checkpoint (EVA ViT-g with its ``ln_vision``, the image
Q-Former and its 32 query tokens; ``videollama_released``) and the LLM from its own checkpoint.
The file is read with ``torch.load(weights_only=True)`` only; a file that needs more (pickled
code) is refused with the reason. Audio-branch tensors (``audio_*``) are skipped and counted;
any other unknown tensor is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from videovlm.models.configs import ModelConfigError

# LAVIS BERT Q-Former names -> transformers' Blip2QFormerModel names, inside the video Q-Former.
_LAYER_RENAMES = ((".attention.self.", ".attention.attention."), (".crossattention.self.", ".crossattention.attention."))
# Constant buffers of their BERT embeddings (an arange), not weights: known, not loaded.
_CONSTANT_BUFFERS = ("video_Qformer.bert.embeddings.position_ids",)


class ReleasedCheckpointError(ModelConfigError):
    """A released Video-LLaMA file that cannot be converted (unsafe, malformed, wrong shapes)."""


@dataclass
class Conversion:
    """Our state-dict names -> tensors, and what was skipped (audio branch, constant buffers)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def released_name(key: str) -> str | None:
    """Our name for one of their keys (None: skipped, see ``convert_state_dict``)."""
    if key == "video_frame_position_embedding.weight":
        return "temporal.frame_position.weight"
    if key == "video_query_tokens":
        return "temporal.query_tokens"
    if key in ("llama_proj.weight", "llama_proj.bias"):
        return "projector.layers.0." + key.split(".")[-1]
    if key.startswith("video_Qformer.bert.embeddings.LayerNorm."):
        return "temporal.qformer.layernorm." + key.rsplit(".", 1)[-1]
    match = re.fullmatch(r"video_Qformer\.bert\.(encoder\.layer\.\d+\..+)", key)
    if match:
        name = "." + match.group(1)
        for old, new in _LAYER_RENAMES:
            name = name.replace(old, new)
        return "temporal.qformer" + name
    return None


def read_released(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a released ``.pth`` (``{"model": state_dict}``), weights only."""
    import pickle

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise ReleasedCheckpointError(
            f"{path}: refused: torch.load(weights_only=True) cannot read it ({type(e).__name__}: {str(e)[:200]}); "
            "videovlm never unpickles code from a checkpoint"
        ) from None
    state = data.get("model") if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ReleasedCheckpointError(f"{path}: expected {{'model': {{name: tensor}}}} (Video-LLaMA's layout)")
    return state


def convert_state_dict(state: dict[str, torch.Tensor], *, where: str = "checkpoint") -> Conversion:
    """Their tensors under our names; unknown names other than the audio branch are an error."""
    out = Conversion()
    unknown = []
    for key, tensor in state.items():
        name = released_name(key)
        if name is not None:
            out.tensors[name] = tensor
        elif key.startswith("audio_") or key in _CONSTANT_BUFFERS:
            out.skipped.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ReleasedCheckpointError(f"{where}: {len(unknown)} tensors videovlm cannot place: {sorted(unknown)[:5]}")
    return out


def load_released(model: torch.nn.Module, path: str | Path) -> Conversion:
    """Put a released checkpoint's video Q-Former, frame positions, queries and projection
    into ``model`` (a Video-LLaMA of ``videollama_released``'s shape). Every tensor of the file
    is used (or skipped by rule), every parameter of ``temporal`` and ``projector`` is set, and
    each shape must match."""
    conversion = convert_state_dict(read_released(path), where=str(path))
    own = model.state_dict()
    needed = {n for n in own if n.startswith(("temporal.", "projector."))}
    missing = sorted(needed - set(conversion.tensors))
    extra = sorted(set(conversion.tensors) - needed)
    if missing or extra:
        raise ReleasedCheckpointError(f"{path}: does not fit this model's temporal/projector parts (missing {missing[:5]}, not in the model {extra[:5]})")
    wrong = [f"{n}: {tuple(t.shape)} in the file, {tuple(own[n].shape)} here" for n, t in conversion.tensors.items() if t.shape != own[n].shape]
    if wrong:
        raise ReleasedCheckpointError(f"{path}: {len(wrong)} tensors have the wrong shape ({'; '.join(wrong[:3])})")
    with torch.no_grad():
        for name, tensor in conversion.tensors.items():
            own[name].copy_(tensor)
    return conversion
