"""The two kinds of Hugging Face vision backbone a ``VisionTower`` runs, and their token layouts.

ViT-style (CLIP, SigLIP, ViT and any config with ``image_size``, ``patch_size`` and
``hidden_size``): every hidden state is a token sequence ``(B*T, N, D)``, optionally a CLS
token first; ``feature_layer`` indexes the transformer layers (0 = the embeddings).

Convolutional (``ConvNextModel``, ``ConvNextV2Model``, ``ResNetModel``): every hidden state is
a feature map ``(B*T, C, h, w)``. ``output_hidden_states`` gives one map per stage, the stem
first: ``(stem, stage1, ..., stageK)``, so ``feature_layer`` indexes that tuple (-1 = the
last stage = ``last_hidden_state``, -2 = the stage before it, 0 = the stem). A map becomes
``h * w`` tokens of width C in row-major order (``c h w -> (h w) c``, the same order as a
ViT's patch grid). With the last stage, the backbone's pooled vector (ConvNeXt: LayerNorm
of the global average; ResNet: the global average) goes first, where a ViT has its CLS token;
an earlier stage has no pooled vector of its own, so its tokens are the grid alone. The grid
side is ``image_size / total stride`` of the chosen stage (ConvNeXt at 224 px: 56, 56, 28,
14, 7 for stem, stage1 .. stage4), and the image size comes from the pixel settings (a
ConvNeXt accepts any size that its stride divides).

``select`` keeps its meaning for both kinds: ``all`` (first token + grid), ``patch`` (grid
only) or ``pooled`` (the pooler output alone: one token of the last stage's width, whatever
``feature_layer`` says).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from transformers import PretrainedConfig

from videovlm.models.configs import ModelConfigError

Select = Literal["all", "patch", "pooled"]


@dataclass(frozen=True)
class ConvStages:
    """Per hidden state (stem first): its channel count and its total stride on the image."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]


def _square(value, *, where: str) -> int:
    """An int, or a square (h, w) pair as one int (ConvNeXt's ``patch_size`` may be a pair)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ModelConfigError(f"{where}: only square sizes are supported, got {value!r}")
        value = value[0]
    return int(value)


def _convnext_stages(cfg: PretrainedConfig) -> ConvStages:
    # Stem: a patch_size x patch_size conv with that stride; stage 1 keeps the resolution,
    # every later stage starts with a stride-2 downsampling conv.
    stem = _square(cfg.patch_size, where=f"vision: {type(cfg).__name__}.patch_size")
    sizes = tuple(int(c) for c in cfg.hidden_sizes)
    strides = (stem, stem, *(stem * 2**i for i in range(1, len(sizes))))
    return ConvStages(channels=(sizes[0], *sizes), strides=strides)


def _resnet_stages(cfg: PretrainedConfig) -> ConvStages:
    # Embedder: 7x7 stride-2 conv + 3x3 stride-2 max pool; stage 1 downsamples only with
    # downsample_in_first_stage, every later stage by 2.
    sizes = tuple(int(c) for c in cfg.hidden_sizes)
    first = 4 * (2 if cfg.downsample_in_first_stage else 1)
    strides = (4, first, *(first * 2**i for i in range(1, len(sizes))))
    return ConvStages(channels=(int(cfg.embedding_size), *sizes), strides=strides)


# model_type -> its stage layout. Adding an architecture means adding its row here.
CONV_BACKBONES: dict[str, Callable[[PretrainedConfig], ConvStages]] = {
    "convnext": _convnext_stages,
    "convnextv2": _convnext_stages,
    "resnet": _resnet_stages,
}


def is_conv_backbone(cfg: PretrainedConfig) -> bool:
    return getattr(cfg, "model_type", None) in CONV_BACKBONES


def is_vit_backbone(cfg: PretrainedConfig) -> bool:
    return all(isinstance(getattr(cfg, name, None), int) for name in ("image_size", "patch_size", "hidden_size"))


def check_backbone_kind(cfg: PretrainedConfig) -> None:
    """Refuse a config that is neither kind, naming its model type."""
    if not (is_conv_backbone(cfg) or is_vit_backbone(cfg)):
        raise ModelConfigError(
            f"vision: model type {getattr(cfg, 'model_type', None)!r} ({type(cfg).__name__}) is neither a ViT-style "
            "vision model (a config with int image_size, patch_size and hidden_size: CLIP, SigLIP, ViT) nor a "
            f"supported convolutional backbone ({', '.join(sorted(CONV_BACKBONES))})"
        )


@dataclass(frozen=True)
class TokenLayout:
    """What the tower's frame tokens look like.

    Fields:
        image_size: side of the square input (pixels).
        grid_side: side of the square token grid (patches, or feature-map cells).
        has_cls: the tower can put a summary token first (CLIP / ViT CLS; a conv tower's
            pooled vector, last stage only). ``select="patch"`` drops it.
        width: D of the grid tokens (and of the first token).
        pooled_width: D of the ``select="pooled"`` token.
    """

    image_size: int
    grid_side: int
    has_cls: bool
    width: int
    pooled_width: int


def num_hidden_states(cfg: PretrainedConfig) -> int | None:
    """How many hidden states ``output_hidden_states`` returns (None when the config does not say)."""
    if is_conv_backbone(cfg):
        return len(CONV_BACKBONES[cfg.model_type](cfg).channels)
    layers = getattr(cfg, "num_hidden_layers", None)
    return None if layers is None else int(layers) + 1


def check_feature_layer(cfg: PretrainedConfig, feature_layer: int) -> None:
    count = num_hidden_states(cfg)
    if count is not None and not -count <= feature_layer < count:
        what = "stem + stages" if is_conv_backbone(cfg) else "embeddings + layers"
        raise ModelConfigError(
            f"vision.feature_layer: {type(cfg).__name__} has {count} hidden states ({what}), so it must be in "
            f"[{-count}, {count - 1}]; got {feature_layer}"
        )


def conv_layout(cfg: PretrainedConfig, *, image_size: int, feature_layer: int) -> TokenLayout:
    """The layout of a convolutional tower at ``image_size`` px, reading hidden state ``feature_layer``."""
    check_feature_layer(cfg, feature_layer)
    stages = CONV_BACKBONES[cfg.model_type](cfg)
    stride = stages.strides[feature_layer]
    if image_size % stages.strides[-1]:
        raise ModelConfigError(
            f"vision.pixel.image_size: {image_size} px is not a multiple of {type(cfg).__name__}'s total stride "
            f"{stages.strides[-1]}, so its feature maps would not tile the image"
        )
    last = feature_layer % len(stages.channels) == len(stages.channels) - 1
    return TokenLayout(
        image_size=image_size,
        grid_side=image_size // stride,
        has_cls=last,
        width=stages.channels[feature_layer],
        pooled_width=stages.channels[-1],
    )


def vit_layout(cfg: PretrainedConfig, *, feature_layer: int, has_cls: bool) -> TokenLayout:
    check_feature_layer(cfg, feature_layer)
    return TokenLayout(
        image_size=int(cfg.image_size),
        grid_side=int(cfg.image_size) // int(cfg.patch_size),
        has_cls=has_cls,
        width=int(cfg.hidden_size),
        pooled_width=int(cfg.hidden_size),
    )


def select_tokens(output, *, layout: TokenLayout, feature_layer: int, select: Select, owner: str) -> torch.Tensor:
    """One frame batch's tokens ``(B*T, N, D)`` from the output of backbone ``owner`` (either kind)."""
    if select == "pooled":
        if getattr(output, "pooler_output", None) is None:
            raise ModelConfigError(f"vision.select: {owner} has no pooled output; use 'all' or 'patch'")
        return rearrange(output.pooler_output.flatten(1), "n d -> n 1 d")  # (B*T, 1, D); ResNet pools to (C, 1, 1)
    hidden = output.last_hidden_state if feature_layer == -1 else output.hidden_states[feature_layer]
    if hidden.ndim == 3:  # ViT-style: (B*T, [CLS +] grid, D)
        return hidden[:, 1:] if select == "patch" and layout.has_cls else hidden
    tokens = rearrange(hidden, "n c h w -> n (h w) c")  # (B*T, h*w, C), row-major like a ViT's patches
    if select == "all" and layout.has_cls:
        pooled = rearrange(output.pooler_output.flatten(1), "n c -> n 1 c")  # (B*T, 1, C)
        tokens = torch.cat([pooled.to(tokens.dtype), tokens], dim=1)  # (B*T, 1 + h*w, C)
    return tokens
