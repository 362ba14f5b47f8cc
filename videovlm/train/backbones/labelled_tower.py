"""Supervised pretraining of the tiny convolutional vision tower (``recipes/backbones/conv_tower.yaml``).

The tiny tower stands in for a tower pretrained elsewhere (ImageNet classification, detection):
what matters for the video recipes is that its frozen features carry what the questions need,
per frame — which shapes are on screen, each one's colour, and where it is. So it is trained
the way a detection-pretrained backbone is, on per-object labels, here the synthetic
renderer's own: for each of the 4 shapes, is it on screen, its colour (6-way) and its centre
``(x, y)``, plus the set of colours on screen. The labels are read by one linear layer from
the tower's pooled vector, so the frozen tower's pooled token carries them linearly.

Frames are rendered fresh for every item (``RenderedFrameDataset``: a new scene per (epoch,
index), from a random stream no split of the data set uses), so no frame is seen twice and
the data set's val and test videos are never seen; validation reads the val split's real h264
videos (``SplitFrameDataset``). The result is saved as a plain Hugging Face checkpoint
(``ResNetModel`` + ``preprocessor_config.json``): the video recipes load it by folder, exactly
as they would load ``microsoft/resnet-50``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.data import Dataset
from transformers import AutoModel, PreTrainedModel, ResNetConfig, ResNetModel

from videovlm.data.synthetic.render import render_background, render_frames
from videovlm.data.synthetic.scene import VideoAnnotation, sample_scene
from videovlm.data.synthetic.vocabulary import COLOR_NAMES, SHAPES
from videovlm.models.pixels import IMAGENET_MEAN, IMAGENET_STD, PixelConfig, frames_to_pixel_values
from videovlm.train.data import SkippedItem

PREPROCESSOR_FILE = "preprocessor_config.json"
# First entry of every rendering seed: the synthetic data set seeds its videos with
# [seed, split, index], so [RENDER_STREAM, seed, epoch, index] never draws one of its scenes.
RENDER_STREAM = 0x746F776572  # "tower"
NUM_SHAPES, NUM_COLORS = len(SHAPES), len(COLOR_NAMES)
IGNORE = -100


@dataclass
class FrameLabels:
    """What one frame shows, per shape (in ``SHAPES`` order).

    Fields:
        present: (4,) 1.0 where the shape is on screen.
        colour: (4,) colour index (``COLOR_NAMES``) of each shape on screen, -100 where absent.
        centre: (4, 2) centre ``(x, y)`` as a fraction of the frame width / height (0 where absent).
        colours: (6,) 1.0 for every colour on screen.
    """

    present: torch.Tensor
    colour: torch.Tensor
    centre: torch.Tensor
    colours: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"present": self.present, "colour": self.colour, "centre": self.centre, "colours": self.colours}


def frame_labels(ann: VideoAnnotation, frame: int) -> FrameLabels:
    present = torch.zeros(NUM_SHAPES)
    colour = torch.full((NUM_SHAPES,), IGNORE, dtype=torch.long)
    centre = torch.zeros(NUM_SHAPES, 2)
    colours = torch.zeros(NUM_COLORS)
    for obj in ann.objects:
        position = obj.positions[frame]
        if position is None:
            continue
        s = SHAPES.index(obj.shape)
        c = COLOR_NAMES.index(obj.color_at(frame))
        present[s], colour[s], colours[c] = 1.0, c, 1.0
        centre[s] = torch.tensor([position[0] / ann.width, position[1] / ann.height])
    return FrameLabels(present=present, colour=colour, centre=centre, colours=colours)


def yuv420_roundtrip(frame: np.ndarray) -> np.ndarray:
    """What storing an RGB frame as yuv420p video does to it, without the codec: FFmpeg's own
    RGB -> yuv420p -> RGB conversion (swscale, through PyAV). Chroma is kept at half
    resolution, so colour edges blur by a pixel or two; that matters for small shapes whose
    edge is mostly chroma (yellow on a pale background). The data set's h264 videos are yuv420p:
    on a rendered clip this round trip is 1.1 grey levels from the decoded h264 frames on
    average, against 2.0 without it."""
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    return rgb.reformat(format="yuv420p").reformat(format="rgb24").to_ndarray()


class FrameLabelProcessor:
    """uint8 frame ``(H, W, 3)`` + its labels -> ``pixel_values (3, S, S)`` and the label tensors."""

    def __init__(self, pixel: PixelConfig):
        self.pixel = pixel

    def __call__(self, frame: np.ndarray, labels: FrameLabels) -> dict[str, torch.Tensor]:
        pixels = frames_to_pixel_values(torch.from_numpy(np.ascontiguousarray(frame))[None], self.pixel)[0, 0]  # (3, S, S)
        return {"pixel_values": pixels, **labels.as_dict()}


class RenderedFrameDataset(Dataset):
    """One frame of a freshly drawn synthetic scene per item, never repeated.

    Item ``(epoch, index)`` draws scene ``[RENDER_STREAM, seed, epoch, index]`` and one of its
    frames uniformly (empty frames included), rendered at ``size`` px with the chroma loss of a
    yuv420p video (``yuv420_roundtrip``; no h264 coding, which costs ~20x more).
    ``length`` is only how many items an epoch has; with the default no run sees an epoch twice.
    """

    def __init__(self, *, processor: FrameLabelProcessor, size: int = 112, num_frames: int = 16, length: int = 10_000_000, seed: int = 0):
        self.processor = processor
        self.size = size
        self.num_frames = num_frames
        self.length = length
        self.seed = seed
        self.pad_values: dict[str, int] = {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        rng = np.random.default_rng([RENDER_STREAM, self.seed, epoch, index])
        ann = sample_scene(rng, video_id="rendered", size=self.size, num_frames=self.num_frames, fps=8.0)
        background = render_background(rng, height=self.size, width=self.size)
        frame = int(rng.integers(self.num_frames))
        pixels = yuv420_roundtrip(render_frames(ann, background, [frame])[0])
        return self.processor(pixels, frame_labels(ann, frame))


class SplitFrameDataset(Dataset):
    """Frames of a data set split's real videos (decoded from the h264 files) with labels from
    its ``annotations.jsonl``: ``frames`` of each video (default: 4 spread over the clip)."""

    def __init__(self, *, split_dir: Path, processor: FrameLabelProcessor, frames: tuple[int, ...] = (1, 5, 10, 14), limit: int | None = None):
        from videovlm.data.formats import read_annotations_jsonl

        self.split_dir = Path(split_dir)
        annotations = read_annotations_jsonl(self.split_dir / "annotations.jsonl")
        self.annotations = annotations if limit is None else annotations[:limit]
        self.frames = frames
        self.processor = processor
        self.pad_values: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.annotations) * len(self.frames)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, torch.Tensor] | SkippedItem:
        from videovlm.video import VideoDecodeError, open_video

        index = key[1] if isinstance(key, tuple) else key
        ann = self.annotations[index // len(self.frames)]
        frame = self.frames[index % len(self.frames)]
        path = self.split_dir / ann.video
        try:
            with open_video(path) as reader:
                pixels = reader.get_frames([frame]).frames[0].numpy()  # (H, W, 3) uint8
        except (VideoDecodeError, OSError, IndexError) as error:
            return SkippedItem(index, str(path), f"{type(error).__name__}: {error}")
        return self.processor(pixels, frame_labels(ann, frame))


@dataclass
class TowerOutput:
    loss: torch.Tensor
    logits: dict[str, torch.Tensor]


class LabelledTower(nn.Module):
    """An HF convolutional vision model + one linear layer from its pooled vector to the labels."""

    def __init__(self, model: PreTrainedModel, pixel: PixelConfig, *, centre_weight: float = 10.0):
        super().__init__()
        self.model = model
        self.pixel = pixel
        width = int(model.config.hidden_sizes[-1])
        self.head = nn.Linear(width, NUM_SHAPES + NUM_SHAPES * NUM_COLORS + NUM_SHAPES * 2 + NUM_COLORS)
        self.centre_weight = centre_weight
        self.processor = FrameLabelProcessor(pixel)

    def predict(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.model(pixel_values=pixel_values).pooler_output.flatten(1)  # (B, D)
        return split_head(self.head(pooled))

    def forward(self, pixel_values, present, colour, centre, colours) -> TowerOutput:
        logits = self.predict(pixel_values)
        shown = present.bool()
        loss = (
            F.binary_cross_entropy_with_logits(logits["present"], present)
            + F.cross_entropy(rearrange(logits["colour"], "b s c -> (b s) c"), colour.flatten(), ignore_index=IGNORE)
            + F.binary_cross_entropy_with_logits(logits["colours"], colours)
        )
        if shown.any():
            loss = loss + self.centre_weight * F.mse_loss(logits["centre"].sigmoid()[shown], centre[shown])
        return TowerOutput(loss=loss, logits=logits)

    def save_pretrained(self, directory: str | Path) -> Path:
        """The tower alone as a plain HF checkpoint + its preprocessor config (the head is for
        pretraining only)."""
        directory = Path(directory)
        self.model.save_pretrained(directory)
        (directory / PREPROCESSOR_FILE).write_text(json.dumps(preprocessor_dict(self.pixel), indent=2))
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(directory / "pretraining_head.safetensors"))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> LabelledTower:
        from safetensors.torch import load_file

        from videovlm.models.pixels import pixel_config_from_processor_dict

        directory = Path(directory)
        model = AutoModel.from_pretrained(str(directory), trust_remote_code=False)
        processor = json.loads((directory / PREPROCESSOR_FILE).read_text())
        tower = cls(model, pixel_config_from_processor_dict(processor, image_size=processor["size"]["shortest_edge"], mean=IMAGENET_MEAN, std=IMAGENET_STD))
        head = directory / "pretraining_head.safetensors"
        if head.is_file():
            tower.head.load_state_dict(load_file(str(head)))
        return tower


def split_head(out: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, 4 + 24 + 8 + 6) head output -> named logits."""
    present, colour, centre, colours = out.split([NUM_SHAPES, NUM_SHAPES * NUM_COLORS, NUM_SHAPES * 2, NUM_COLORS], dim=1)
    return {
        "present": present,
        "colour": rearrange(colour, "b (s c) -> b s c", s=NUM_SHAPES),
        "centre": rearrange(centre, "b (s xy) -> b s xy", s=NUM_SHAPES),
        "colours": colours,
    }


def preprocessor_dict(pixel: PixelConfig) -> dict[str, Any]:
    """What ``ConvNextImageProcessor`` (also ResNet's) writes, for these pixel settings."""
    return {
        "image_processor_type": "ConvNextImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": pixel.image_size},
        "crop_pct": pixel.crop_pct,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(pixel.mean),
        "image_std": list(pixel.std),
        "resample": 3 if pixel.interpolation == "bicubic" else 2,
    }


def tiny_resnet_tower(
    *,
    image_size: int = 112,
    embedding_size: int = 32,
    hidden_sizes: tuple[int, ...] = (32, 64, 128),
    depths: tuple[int, ...] = (1, 1, 1),
    centre_weight: float = 10.0,
) -> LabelledTower:
    """The tiny tower: an HF ``ResNetModel`` (basic blocks, total stride 16, so 112 px gives a
    7 x 7 map: 49 grid tokens + the pooled one, as many as the tiny ViT's 50) with its head."""
    config = ResNetConfig(
        num_channels=3,
        embedding_size=embedding_size,
        hidden_sizes=list(hidden_sizes),
        depths=list(depths),
        layer_type="basic",
        hidden_act="relu",
        downsample_in_first_stage=False,
    )
    pixel = PixelConfig(image_size=image_size, resize="shortest_edge", mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=1.0)
    return LabelledTower(ResNetModel(config), pixel, centre_weight=centre_weight)
