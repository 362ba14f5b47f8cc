"""Vision tower: a Hugging Face vision model -> frame tokens (B, T, N, D).

ViT-style towers (CLIP, SigLIP, ViT) and convolutional ones (ConvNeXt, ConvNeXt V2, ResNet)
load the same two ways, ``from_pretrained`` on a hub id or folder, or built from a config
dict. An image is a 1-frame video. A full CLIP/SigLIP checkpoint
(``openai/clip-vit-large-patch14``) loads only its vision half, the way LLaVA does: the
vision model class of the checkpoint's ``vision_config`` is called with ``from_pretrained``
on the whole checkpoint; an image-classification checkpoint (``facebook/convnext-large-224``,
``microsoft/resnet-50``) loads its backbone the same way, without the classifier.

Token layout per frame (``select="all"``): CLIP / ViT: CLS + the h*w patch grid; SigLIP:
the grid alone; a conv tower: its pooled vector + the h*w cells of the last feature map
(row-major), so grid encoders read it as CLIP's layout (``has_cls_token=True``). See
``vision_backbones`` for ``feature_layer`` on conv towers and the grid size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from torch import nn
from transformers import PretrainedConfig
from transformers.image_processing_base import ImageProcessingMixin
from transformers import Blip2VisionConfig, Blip2VisionModel
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from videovlm.models.configs import ModelConfigError
from videovlm.models.hf import build_hf_model, load_hf_config
from videovlm.models.pixels import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PixelConfig,
    PixelShapeError,
    pixel_config_from_processor_dict,
)
from videovlm.models.vision_backbones import (
    TokenLayout,
    check_backbone_kind,
    conv_layout,
    is_conv_backbone,
    select_tokens,
    vit_layout,
)


@dataclass
class VisionTowerConfig:
    """Which vision model and which of its tokens.

    Fields:
        pretrained: hub id or local folder of a checkpoint: CLIP / SigLIP / ViT (vision-only or
            full image-text model) or ConvNeXt / ConvNeXt V2 / ResNet (backbone or image
            classifier). Exactly one of ``pretrained`` and ``hf_config``.
        hf_config: a transformers config dict (``model_type`` plus fields) to build fresh weights.
        feature_layer: hidden state to use (-1 = last; LLaVA uses -2). For a conv tower it
            indexes (stem, stage1, ..., stageK): -1 = the last stage, -2 the one before.
        select: ``all`` tokens, ``patch`` tokens only (drop CLS, or a conv tower's pooled
            first token), or ``pooled`` (one token per frame, the tower's pooler output).
        pixel: preprocessing settings; None = read from the checkpoint's preprocessor config
            (else CLIP mean/std for ViT-style towers, ImageNet's for conv towers, at the
            config's ``image_size``). A conv tower's input size is ``pixel.image_size``.
        dtype: ``float32`` / ``bfloat16`` / ``float16`` or None for the checkpoint's default.
    """

    pretrained: str | None = None
    hf_config: dict | None = None
    feature_layer: int = -1
    select: Literal["all", "patch", "pooled"] = "all"
    pixel: PixelConfig | None = None
    dtype: str | None = None


# Vision configs whose model class transformers' auto mapping does not list: BLIP-2's vision
# tower (EVA ViT-g in the released checkpoints, what Video-LLaMA freezes), read from a full
# BLIP-2 checkpoint's ``vision_config``; its output is after ``post_layernorm`` (their ``ln_vision``).
VISION_ONLY_MODELS = {Blip2VisionConfig: Blip2VisionModel}


class VisionTower(nn.Module):
    """Runs the image model on every frame: pixels (B, T, 3, S, S) -> tokens (B, T, N, D).

    ``hidden_size`` is D (a conv tower: the channels of the chosen stage), ``num_patches`` the
    h*w grid, ``has_cls`` whether a summary token (CLS, or a conv tower's pooled vector) can
    come first, and ``tokens_per_frame`` N for the configured ``select``.
    """

    def __init__(self, config: VisionTowerConfig):
        super().__init__()
        hf_config = load_hf_config(pretrained=config.pretrained, hf_config=config.hf_config, where="vision")
        # Full image-text checkpoints (model_type "clip", "siglip") carry a vision_config:
        # load only the vision model class, from the same checkpoint.
        vision_config = getattr(hf_config, "vision_config", None) or hf_config
        check_backbone_kind(vision_config)
        model_class = MODEL_MAPPING.get(type(vision_config), None) or VISION_ONLY_MODELS.get(type(vision_config))
        if model_class is None:
            raise ModelConfigError(f"vision: no vision model class for config type {type(vision_config).__name__}")
        # A sub-model of a larger checkpoint whose class has no wrapper attribute for it (BLIP-2's
        # Blip2VisionModel): its tensors are named vision_model.* in the file.
        mapping = {r"^vision_model\.": ""} if model_class in VISION_ONLY_MODELS.values() and vision_config is not hf_config else None
        self.model = build_hf_model(
            model_class=model_class, pretrained=config.pretrained, config=vision_config, dtype=config.dtype, where="vision", key_mapping=mapping
        )
        self.select = config.select
        self.feature_layer = config.feature_layer
        self.pixel, self.layout = _pixels_and_layout(self.model, config)

    @property
    def image_size(self) -> int:
        return self.layout.image_size

    @property
    def hidden_size(self) -> int:
        """Width of the tokens this tower returns."""
        return self.layout.pooled_width if self.select == "pooled" else self.layout.width

    @property
    def has_cls(self) -> bool:
        return self.layout.has_cls

    @property
    def num_patches(self) -> int:
        return self.layout.grid_side**2

    @property
    def tokens_per_frame(self) -> int:
        if self.select == "pooled":
            return 1
        return self.num_patches + (1 if self.has_cls and self.select == "all" else 0)

    def saved_config(self, config: VisionTowerConfig) -> VisionTowerConfig:
        """The config that rebuilds this tower offline (weights come from the family's safetensors)."""
        return VisionTowerConfig(
            pretrained=None,
            hf_config=self.model.config.to_dict(),
            feature_layer=config.feature_layer,
            select=config.select,
            pixel=self.pixel,
            dtype=config.dtype,
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.ndim != 5 or pixel_values.shape[2] != 3 or tuple(pixel_values.shape[-2:]) != (self.image_size,) * 2:
            raise PixelShapeError(
                f"pixel_values: expected (B, T, 3, {self.image_size}, {self.image_size}), got {tuple(pixel_values.shape)}"
            )
        batch = pixel_values.shape[0]
        flat = rearrange(pixel_values, "b t c h w -> (b t) c h w").to(self.model.dtype)  # (B*T, 3, S, S)
        # A frozen tower needs no graph: this keeps frozen-vision training cheap in memory.
        with torch.set_grad_enabled(torch.is_grad_enabled() and any(p.requires_grad for p in self.model.parameters())):
            out = self.model(pixel_values=flat, output_hidden_states=self.feature_layer != -1)
        owner = type(self.model).__name__
        tokens = select_tokens(
            out, layout=self.layout, feature_layer=self.feature_layer, select=self.select, owner=owner
        )  # (B*T, N, D)
        if tokens.shape[1] != self.tokens_per_frame:
            raise ModelConfigError(
                f"vision: {owner} gave {tokens.shape[1]} tokens per frame, its layout says "
                f"{self.tokens_per_frame} (grid {self.layout.grid_side}x{self.layout.grid_side})"
            )
        return rearrange(tokens, "(b t) n d -> b t n d", b=batch)  # (B, T, N, D)


def _pixels_and_layout(model: nn.Module, config: VisionTowerConfig) -> tuple[PixelConfig, TokenLayout]:
    """The pixel settings and token layout of a built backbone.

    A ViT's input size is fixed by its config and the pixel settings must agree; a conv
    tower takes the size from the pixel settings (given, or the checkpoint's processor)."""
    cfg = model.config
    if is_conv_backbone(cfg):
        pixel = config.pixel or _pixel_settings(config.pretrained, cfg=cfg, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        return pixel, conv_layout(cfg, image_size=pixel.image_size, feature_layer=config.feature_layer)
    # CLIP (class_embedding) and ViT (cls_token) prepend a CLS token; SigLIP has none.
    embeddings = next((m for name, m in model.named_modules() if name.endswith("embeddings")), None)
    has_cls = any(hasattr(embeddings, attr) for attr in ("class_embedding", "cls_token"))
    layout = vit_layout(cfg, feature_layer=config.feature_layer, has_cls=has_cls)
    pixel = config.pixel or _pixel_settings(config.pretrained, cfg=cfg, mean=CLIP_MEAN, std=CLIP_STD)
    if pixel.image_size != layout.image_size:
        raise ModelConfigError(
            f"vision.pixel.image_size: {pixel.image_size} does not match the tower's image_size {layout.image_size}"
        )
    return pixel, layout


def _pixel_settings(pretrained: str | None, *, cfg: PretrainedConfig, mean: tuple, std: tuple) -> PixelConfig:
    """The checkpoint's preprocessor_config.json settings, else ``mean``/``std`` at the config's
    ``image_size`` (ResNet configs have none: then the pixel settings must be given)."""
    image_size = getattr(cfg, "image_size", None)
    processor = _processor_dict(pretrained) if pretrained is not None else None
    if processor and (processor.get("size") or isinstance(image_size, int)):
        return pixel_config_from_processor_dict(processor, image_size=image_size, mean=mean, std=std)
    if not isinstance(image_size, int):
        raise ModelConfigError(
            f"vision.pixel: {type(cfg).__name__} does not say its input size and "
            f"{'the checkpoint has no preprocessor_config.json' if pretrained else 'no checkpoint was named'}; "
            "set vision.pixel (image_size, mean, std)"
        )
    return PixelConfig(image_size=image_size, mean=mean, std=std)


def _processor_dict(pretrained: str) -> dict | None:
    """The checkpoint's preprocessor_config.json as a dict (None when it has none)."""
    try:
        processor, _ = ImageProcessingMixin.get_image_processor_dict(pretrained)
    except OSError:
        return None
    return processor or None
