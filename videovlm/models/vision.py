"""Vision tower: any Hugging Face vision model (CLIP, SigLIP, ViT) -> frame tokens (B, T, N, D).

An image is a 1-frame video. A full CLIP/SigLIP checkpoint (``openai/clip-vit-large-patch14``)
loads only its vision half, the way LLaVA does: the vision model class of the checkpoint's
``vision_config`` is called with ``from_pretrained`` on the whole checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from torch import nn
from transformers.image_processing_base import ImageProcessingMixin
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from videovlm.models.configs import ModelConfigError
from videovlm.models.hf import build_hf_model, load_hf_config
from videovlm.models.pixels import PixelConfig, PixelShapeError, pixel_config_from_processor_dict


@dataclass
class VisionTowerConfig:
    """Which vision model and which of its tokens.

    Fields:
        pretrained: hub id or local folder of a CLIP / SigLIP / ViT checkpoint (vision-only or
            full image-text model). Exactly one of ``pretrained`` and ``hf_config``.
        hf_config: a transformers config dict (``model_type`` plus fields) to build fresh weights.
        feature_layer: hidden state to use (-1 = last; LLaVA uses -2).
        select: ``all`` tokens, ``patch`` tokens only (drop CLS if the tower has one), or
            ``pooled`` (one token per frame, the tower's pooler output).
        pixel: preprocessing settings; None = read from the checkpoint (or CLIP defaults).
        dtype: ``float32`` / ``bfloat16`` / ``float16`` or None for the checkpoint's default.
    """

    pretrained: str | None = None
    hf_config: dict | None = None
    feature_layer: int = -1
    select: Literal["all", "patch", "pooled"] = "all"
    pixel: PixelConfig | None = None
    dtype: str | None = None


class VisionTower(nn.Module):
    """Runs the image model on every frame: pixels (B, T, 3, S, S) -> tokens (B, T, N, D)."""

    def __init__(self, config: VisionTowerConfig):
        super().__init__()
        hf_config = load_hf_config(pretrained=config.pretrained, hf_config=config.hf_config, where="vision")
        # Full image-text checkpoints (model_type "clip", "siglip") carry a vision_config:
        # load only the vision model class, from the same checkpoint.
        vision_config = getattr(hf_config, "vision_config", None) or hf_config
        model_class = MODEL_MAPPING.get(type(vision_config), None)
        if model_class is None:
            raise ModelConfigError(f"vision: no vision model class for config type {type(vision_config).__name__}")
        self.model = build_hf_model(
            model_class=model_class, pretrained=config.pretrained, config=vision_config, dtype=config.dtype, where="vision"
        )
        cfg = self.model.config
        self.image_size = int(cfg.image_size)
        self.hidden_size = int(cfg.hidden_size)
        grid = (self.image_size // int(cfg.patch_size)) ** 2
        # CLIP (class_embedding) and ViT (cls_token) prepend a CLS token; SigLIP has none.
        embeddings = next((m for name, m in self.model.named_modules() if name.endswith("embeddings")), None)
        self.has_cls = any(hasattr(embeddings, attr) for attr in ("class_embedding", "cls_token"))
        self.num_patches = grid
        self.select = config.select
        self.feature_layer = config.feature_layer
        self.pixel = config.pixel or _pixel_settings(config.pretrained, image_size=self.image_size)
        if self.pixel.image_size != self.image_size:
            raise ModelConfigError(
                f"vision.pixel.image_size: {self.pixel.image_size} does not match the tower's image_size {self.image_size}"
            )

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
        if self.select == "pooled":
            if out.pooler_output is None:
                raise ModelConfigError(f"vision.select: {type(self.model).__name__} has no pooled output")
            tokens = out.pooler_output.unsqueeze(1)  # (B*T, 1, D)
        else:
            tokens = out.last_hidden_state if self.feature_layer == -1 else out.hidden_states[self.feature_layer]
            if self.select == "patch" and self.has_cls:
                tokens = tokens[:, 1:]
        return rearrange(tokens, "(b t) n d -> b t n d", b=batch)  # (B, T, N, D)


def _pixel_settings(pretrained: str | None, *, image_size: int) -> PixelConfig:
    """The checkpoint's preprocessor_config.json settings, else CLIP mean/std at the tower's size."""
    if pretrained is not None:
        try:
            processor, _ = ImageProcessingMixin.get_image_processor_dict(pretrained)
        except OSError:
            processor = None
        if processor:
            return pixel_config_from_processor_dict(processor, image_size=image_size)
    return PixelConfig(image_size=image_size)
