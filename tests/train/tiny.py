"""A tiny video classifier and its dataset, so the engine tests need no model family.

The model keeps the contracts the engine relies on: ``forward(**batch) -> .loss``, named
top-level parts (``encoder``, ``temporal``, ``head``), ``save_pretrained``/``from_pretrained``
(safetensors + JSON) and dropout (so RNG state matters for exact resume). Videos are real
files written with ``write_video`` and read through ``open_video`` + a sampler.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from einops import reduce
from safetensors.torch import load_file, save_file
from torch import nn

from videovlm.train.data import MediaTextDataset
from videovlm.video.writer import write_video

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 210, 40)]


@dataclass
class TinyConfig:
    num_classes: int = 4
    hidden: int = 16
    dropout: float = 0.1


@dataclass
class TinyOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor


class TinyVideoClassifier(nn.Module):
    def __init__(self, *, num_classes: int = 4, hidden: int = 16, dropout: float = 0.1):
        super().__init__()
        self.config = TinyConfig(num_classes=num_classes, hidden=hidden, dropout=dropout)
        self.encoder = nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Dropout(dropout))
        self.temporal = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, pixel_values: torch.Tensor, frame_mask: torch.Tensor, labels: torch.Tensor | None = None, loss_offset: float = 0.0) -> TinyOutput:
        """``loss_offset`` (a stage's ``forward_kwargs``) is added to the loss: same gradients,
        so a test can see the keyword arrive without changing what the stage learns."""
        colour = reduce(pixel_values, "b t c h w -> b t c", "mean")  # (B, T, 3)
        frames = self.encoder(colour)  # (B, T, D)
        weights = frame_mask.to(frames.dtype).unsqueeze(-1)  # (B, T, 1)
        pooled = (self.temporal(frames) * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, D)
        logits = self.head(pooled)  # (B, K)
        loss = nn.functional.cross_entropy(logits.float(), labels) + loss_offset if labels is not None else None
        return TinyOutput(loss=loss, logits=logits)

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(asdict(self.config)))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "model.safetensors"))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TinyVideoClassifier:
        directory = Path(directory)
        model = cls(**json.loads((directory / "config.json").read_text()))
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        return model


def make_video_set(root: Path, *, count: int, frames: int = 8, size: int = 24, seed: int = 0, corrupt: int = 0) -> Path:
    """``count`` short clips, each a colour block (class = colour) on noise; returns the
    manifest JSON path. The last ``corrupt`` entries point at files that are not videos."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(count):
        path = root / f"clip{i:03d}.mp4"
        label = i % len(COLOURS)
        if i >= count - corrupt:
            path.write_bytes(b"\x00not a video" * 50)
        else:
            clip = rng.integers(0, 60, size=(frames, size, size, 3), dtype=np.uint8)
            for t in range(frames):
                x = (t * 2) % (size - 8)
                clip[t, 8:16, x : x + 8] = COLOURS[label]
            write_video(path, list(clip), fps=8)
        entries.append({"video": path.name, "label": label})
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps(entries))
    return manifest


class ColourVideoDataset(MediaTextDataset):
    """Manifest of ``{"video", "label"}`` -> pixel_values (T, 3, H, W) in [0, 1] + label."""

    def __init__(self, *, manifest: Path, sampler: str = "segment:4", train: bool = True, seed: int = 0):
        manifest = Path(manifest)
        records = json.loads(manifest.read_text())
        super().__init__(
            records=records,
            media_path=lambda r: (manifest.parent / r["video"], True),
            encode=_encode,
            sampler=sampler,
            train=train,
            seed=seed,
        )


def _encode(record: dict, frames: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    pixels = frames.permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
    return {"pixel_values": pixels, "frame_mask": valid, "labels": torch.tensor(record["label"])}
