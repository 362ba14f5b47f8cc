"""uint8 frames -> normalised pixel values, with the vision tower's processor settings.

The settings come from the checkpoint's ``preprocessor_config.json`` when it has one (what
``AutoImageProcessor`` would read: CLIP / SigLIP / ViT processors, and the ConvNeXt processor
that ConvNeXt and ResNet checkpoints use, with its ``crop_pct``), otherwise from the tower's
config with CLIP's mean/std (ViT-style towers) or ImageNet's (convolutional towers). They are
saved with the model so a reloaded model preprocesses identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange

from videovlm.models.configs import ModelConfigError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# What torchvision / timm ImageNet models (ConvNeXt, ResNet) are trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ConvNextImageProcessor warps straight to the square at this size and above (no crop_pct crop).
CONVNEXT_WARP_SIZE = 384
# PIL resample codes used by Hugging Face image processors.
_PIL_RESAMPLE = {2: "bilinear", 3: "bicubic"}


class PixelShapeError(ValueError):
    """Frames given to the pixel preprocessing have the wrong shape or dtype."""


@dataclass
class PixelConfig:
    """How frames become pixel values.

    Fields:
        image_size: side of the square the model sees (after resize and crop).
        resize: ``shortest_edge`` resizes the short side to ``image_size / crop_pct`` and
            centre-crops ``image_size`` (CLIP, ConvNeXt and ResNet below 384 px); ``exact``
            resizes straight to ``image_size`` x ``image_size`` (SigLIP, ViT, ConvNeXt at 384 px+).
        mean, std: per-channel normalisation of values in [0, 1].
        interpolation: ``bicubic`` or ``bilinear`` (antialiased when downscaling).
        crop_pct: share of the resized short side the centre crop keeps, in (0, 1]: 1.0 for
            CLIP; ConvNeXt / ResNet checkpoints use 0.875 (resize to 256, crop 224). Only
            ``shortest_edge`` resizing reads it.
    """

    image_size: int = 224
    resize: Literal["shortest_edge", "exact"] = "shortest_edge"
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    crop_pct: float = 1.0

    def __post_init__(self):
        if self.image_size <= 0:
            raise ModelConfigError(f"image_size: must be positive, got {self.image_size}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ModelConfigError(f"crop_pct: must be in (0, 1], got {self.crop_pct}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ModelConfigError(f"mean/std: need 3 channels, got {len(self.mean)} and {len(self.std)}")


def pixel_config_from_processor_dict(
    processor: dict, *, image_size: int, mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD
) -> PixelConfig:
    """Settings from a Hugging Face ``preprocessor_config.json`` dict (CLIP, SigLIP, ViT, and the
    ConvNeXt processor of ConvNeXt / ResNet checkpoints). ``image_size``, ``mean`` and ``std``
    stand in for what the dict does not give."""
    size = processor.get("size") or {}
    crop = processor.get("crop_size") or {}
    if isinstance(size, int):  # older feature-extractor files: "size": 224
        size = {"shortest_edge": size}
    crop_pct = 1.0
    if "shortest_edge" in size and processor.get("crop_pct") is not None:
        side, resize, crop_pct = _crop_pct_settings(processor, shortest_edge=int(size["shortest_edge"]))
    elif "shortest_edge" in size:
        side = int(crop.get("height", size["shortest_edge"])) if processor.get("do_center_crop", True) else int(size["shortest_edge"])
        resize = "shortest_edge"
    else:
        side = int(size.get("height", image_size))
        resize = "exact"
    return PixelConfig(
        image_size=side,
        resize=resize,
        mean=tuple(float(v) for v in processor.get("image_mean", mean)),
        std=tuple(float(v) for v in processor.get("image_std", std)),
        interpolation=_PIL_RESAMPLE.get(int(processor.get("resample", 3)), "bicubic"),
        crop_pct=crop_pct,
    )


def _crop_pct_settings(processor: dict, *, shortest_edge: int) -> tuple[int, str, float]:
    """(side, resize, crop_pct) of a processor with ``crop_pct``: the short side is resized to
    ``shortest_edge / crop_pct`` and the centre ``shortest_edge`` square kept. The ConvNeXt
    processor (also ResNet's) instead warps to the square at 384 px and above."""
    kind = str(processor.get("image_processor_type") or processor.get("feature_extractor_type") or "")
    if kind.startswith("ConvNext") and shortest_edge >= CONVNEXT_WARP_SIZE:
        return shortest_edge, "exact", 1.0
    return shortest_edge, "shortest_edge", float(processor["crop_pct"])


def decode_target(config: PixelConfig) -> int | tuple[int, int]:
    """The size to decode frames at so this preprocessing only crops: the short side it
    resizes to (``shortest_edge``, aspect kept; ``open_video(resize=int)``) or the square
    (``exact``). Frames decoded so skip the second resize (the decoder scales, cheaper)."""
    if config.resize == "exact":
        return (config.image_size, config.image_size)
    return int(config.image_size / config.crop_pct)


def frames_to_pixel_values(frames: torch.Tensor, config: PixelConfig) -> torch.Tensor:
    """uint8 RGB frames ``(T, H, W, 3)`` or ``(B, T, H, W, 3)`` -> float ``(B, T, 3, S, S)``.

    Numpy arrays are accepted too. Raises ``PixelShapeError`` for any other layout or dtype.
    """
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8:
        raise PixelShapeError(f"frames: expected uint8 RGB, got dtype {frames.dtype}")
    if frames.ndim == 4:
        frames = frames.unsqueeze(0)
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise PixelShapeError(
            f"frames: expected (T, H, W, 3) or (B, T, H, W, 3) uint8 RGB, got shape {tuple(frames.shape)}"
        )
    batch = frames.shape[0]
    x = rearrange(frames, "b t h w c -> (b t) c h w").float() / 255.0  # (B*T, 3, H, W)
    x = _resize(x, config)
    mean = torch.tensor(config.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return rearrange(x, "(b t) c h w -> b t c h w", b=batch)  # (B, T, 3, S, S)


def _resize(x: torch.Tensor, config: PixelConfig) -> torch.Tensor:
    side = config.image_size
    h, w = x.shape[-2:]
    if config.resize == "exact":
        target = (side, side)
    else:
        short = int(side / config.crop_pct)  # int() as ConvNextImageProcessor does: 224 / 0.875 -> 256
        scale = short / min(h, w)
        target = (max(short, round(h * scale)), max(short, round(w * scale)))
    if (h, w) != target:
        x = F.interpolate(x, size=target, mode=config.interpolation, antialias=True, align_corners=False)
        # bicubic overshoots; clamp back to the valid range before normalising, like PIL does.
        x = x.clamp_(0.0, 1.0)
    if config.resize == "shortest_edge":
        top = (x.shape[-2] - side) // 2
        left = (x.shape[-1] - side) // 2
        x = x[..., top : top + side, left : left + side]
    return x
