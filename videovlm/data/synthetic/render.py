"""Draw the frames of a synthetic video from its ground truth (numpy, vectorised per object)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from videovlm.data.synthetic.scene import VideoAnnotation
from videovlm.data.synthetic.vocabulary import COLORS

_SUPERSAMPLE = 4  # shapes are drawn 4x larger and averaged down: anti-aliased edges


@lru_cache(maxsize=None)
def shape_mask(shape: str, size: int) -> np.ndarray:
    """Coverage ``(size, size)`` float32 in [0, 1] of a shape filling a ``size`` px box."""
    big = size * _SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse((0, 0, big - 1, big - 1), fill=255)
    elif shape == "square":
        inset = big * 0.08  # a square filling its box looks larger than the circle; even them out
        draw.rectangle((inset, inset, big - 1 - inset, big - 1 - inset), fill=255)
    elif shape == "triangle":
        draw.polygon([(big / 2, 0), (big - 1, big - 1), (0, big - 1)], fill=255)
    elif shape == "star":
        outer, inner, c = big / 2, big / 2 * 0.45, big / 2
        points = []
        for k in range(10):
            radius = outer if k % 2 == 0 else inner
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((c + radius * math.cos(angle), c + radius * math.sin(angle)))
        draw.polygon(points, fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    small = np.asarray(canvas, dtype=np.float32).reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE)
    return small.mean(axis=(1, 3)) / 255.0


def render_background(rng: np.random.Generator, *, height: int, width: int) -> np.ndarray:
    """A light, low-saturation textured background ``(H, W, 3)`` float32 in [0, 255].

    Smooth blotches (upsampled coarse noise) plus fine grain, around a random pale tint; the
    same for every frame of a video, so only the objects change over time.
    """
    tint = rng.uniform(200, 235) + rng.uniform(-10, 10, size=3)
    coarse = rng.normal(0.0, 10.0, size=(height // 16 + 2, width // 16 + 2, 1))
    blotches = np.asarray(Image.fromarray(coarse[..., 0].astype(np.float32), mode="F").resize((width, height), Image.BICUBIC))[..., None]
    grain = rng.normal(0.0, 4.0, size=(height, width, 1))
    return np.clip(tint + blotches + grain, 0, 255).astype(np.float32)


def render_video(ann: VideoAnnotation, background: np.ndarray) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 RGB: each visible object alpha-blended over the background."""
    return render_frames(ann, background, range(ann.num_frames))


def render_frames(ann: VideoAnnotation, background: np.ndarray, frames: Sequence[int]) -> np.ndarray:
    """Only the frames ``frames`` of the video, ``(len(frames), H, W, 3)`` uint8 RGB (what
    ``render_video(...)[frames]`` gives, without drawing the others)."""
    out = np.repeat(background[None], len(frames), axis=0)  # (T', H, W, 3)
    for obj in ann.objects:
        mask = shape_mask(obj.shape, obj.size)[..., None]  # (S, S, 1)
        for i, t in enumerate(frames):
            centre = obj.positions[t]
            if centre is None:
                continue
            left = int(round(centre[0] - obj.size / 2))
            top = int(round(centre[1] - obj.size / 2))
            # Clip the box to the frame (centres keep objects inside, rounding may poke out 1 px).
            y0, y1 = max(top, 0), min(top + obj.size, ann.height)
            x0, x1 = max(left, 0), min(left + obj.size, ann.width)
            alpha = mask[y0 - top : y1 - top, x0 - left : x1 - left]
            colour = np.asarray(COLORS[obj.color_at(t)], dtype=np.float32)
            region = out[i, y0:y1, x0:x1]
            out[i, y0:y1, x0:x1] = region * (1.0 - alpha) + colour * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
