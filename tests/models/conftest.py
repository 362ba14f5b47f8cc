"""Fixtures for the model tests: a tokenizer trained on sentences written here, uint8 frames."""

from __future__ import annotations

import itertools

import pytest
import torch

COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "star")
MOTIONS = ("left", "right", "up", "down")


def synthetic_sentences() -> list[str]:
    """A few hundred sentences in the style of the synthetic data set's text."""
    out = []
    for colour, shape, motion in itertools.product(COLOURS, SHAPES, MOTIONS):
        out.append(f"a {colour} {shape} moves to the {motion}.")
        out.append(f"which way does the {colour} {shape} move? {motion}")
        out.append(f"what colour is the {shape}? {colour}")
    out += [f"is there a {c} {s} in the video? yes no" for c, s in itertools.product(COLOURS, SHAPES)]
    out += ["how many objects are there? one two three", "which happened first? the circle appeared"]
    return out


@pytest.fixture(scope="session")
def tokenizer():
    from videovlm.models.tokenizer import train_tokenizer

    return train_tokenizer(synthetic_sentences(), vocab_size=400)


@pytest.fixture(scope="session")
def frames() -> torch.Tensor:
    """8 random uint8 RGB frames (T, H, W, 3) of 120 x 160 (resized + cropped to 112)."""
    generator = torch.Generator().manual_seed(7)
    return torch.randint(0, 256, (8, 120, 160, 3), dtype=torch.uint8, generator=generator)


def qa_and_caption_batch(model, frames):
    """A 2-sample batch: a VideoQA item on 6 frames and a VideoCaption item on 8 (padded frames)."""
    from pathlib import Path

    from videovlm.data.formats import VideoCaption, VideoQA

    items = [
        model.processor(VideoQA("v0", Path("v0.mp4"), "what colour is the circle?", "red", "color"), frames=frames[:6]),
        model.processor(VideoCaption("v1", Path("v1.mp4"), "a red circle moves to the left.", 2.0), frames=frames),
    ]
    return model.processor.collate(items)


def tiny_conv_config(kind: str, **overrides):
    """A tiny ConvNeXt / ConvNeXt V2 / ResNet: 2 stages of 16 and 32 channels, total stride 8
    (a 64 px frame gives an 8x8 last feature map: 1 pooled + 64 tokens of 32 channels)."""
    from transformers import ConvNextConfig, ConvNextV2Config, ResNetConfig

    if kind == "resnet":
        return ResNetConfig(**{"depths": [1, 1], "hidden_sizes": [16, 32], "embedding_size": 8, **overrides})
    config_class = {"convnext": ConvNextConfig, "convnextv2": ConvNextV2Config}[kind]
    return config_class(**{"num_stages": 2, "depths": [1, 1], "hidden_sizes": [16, 32], **overrides})


def conv_vision(kind: str = "convnext", *, image_size: int = 32, select: str = "all", feature_layer: int = -1):
    """A conv tower config built from ``tiny_conv_config(kind)`` at ``image_size`` px, ImageNet mean/std."""
    from videovlm.models import PixelConfig, VisionTowerConfig
    from videovlm.models.pixels import IMAGENET_MEAN, IMAGENET_STD

    pixel = PixelConfig(image_size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return VisionTowerConfig(hf_config=tiny_conv_config(kind).to_dict(), pixel=pixel, select=select, feature_layer=feature_layer)
