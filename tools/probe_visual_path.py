"""What does a frozen vision tower carry? Linear and Q-Former probes on the synthetic videos.

    python tools/probe_visual_path.py --tower runs/backbones/conv_tower/labels/final --data data/synth
    python tools/probe_visual_path.py --tower runs/backbones/clip/contrastive/final --data data/synth

The tower folder is anything ``VisionTowerConfig(pretrained=DIR)`` loads: a CLIP / ViT
checkpoint (the clip backbone recipe's output) or a convolutional one (ResNet / ConvNeXt, the
conv tower recipe's output). Features are the tower's frame tokens exactly as the video
recipes see them (``select: all``: the CLS or pooled token first, then the grid).

1. Sets, per layer: a linear probe (trained on one frame of N train videos, scored on every val
   video) predicts the *set* of colours and the set of shapes on screen in that frame, from the
   first token (last layer only: CLS or pooled vector) and from the mean grid token of every
   hidden state. Exact-set accuracy is reported (all 6 colour bits, resp. all 4 shape bits, right).
2. Direction of a named object: for every object that moves in a val video, from the first tokens
   of the 8 frames the recipes sample (uniform:8): a linear map of each frame's first token to
   every shape's presence and centre (trained on the train videos' frames), then the larger move
   between the first and last frame it is seen in (chance 25%; the questions' order-blind
   ceiling is 50%). It asks whether position is in the frozen features, linearly, per frame.
3. Video Q-Former: a fresh 2-layer video Q-Former (the tiny recipe's, 8 queries) over 8 frames of
   last-layer tokens, trained directly on the sets of colours and shapes seen anywhere in the
   video, to show what the temporal encoder can extract when no language model is in the way.

Diagnostic only (docs/results.md cites its output); prints a table, writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from videovlm.data.formats import read_annotations_jsonl
from videovlm.data.synthetic import COLOR_NAMES, SHAPES
from videovlm.data.synthetic.scene import VideoAnnotation
from videovlm.models.pixels import frames_to_pixel_values
from videovlm.models.temporal import VideoQFormer, VideoQFormerConfig
from videovlm.models.vision import VisionTower, VisionTowerConfig
from videovlm.models.vision_backbones import is_conv_backbone
from videovlm.video import open_video

FRAMES = list(range(1, 16, 2))  # uniform:8 of a 16-frame synthetic video
DIRECTIONS = ("left", "right", "up", "down")


def set_labels(ann: VideoAnnotation, frame: int | None) -> torch.Tensor:
    """(6 + 4,) multi-hot colours and shapes on screen in ``frame`` (seen anywhere if None)."""
    y = torch.zeros(len(COLOR_NAMES) + len(SHAPES))
    for obj in ann.objects:
        frames = range(ann.num_frames) if frame is None else [frame]
        shown = [t for t in frames if obj.visible(t)]
        for t in shown:
            y[COLOR_NAMES.index(obj.color_at(t))] = 1
        if shown:
            y[len(COLOR_NAMES) + SHAPES.index(obj.shape)] = 1
    return y


def load_tower(directory: Path) -> VisionTower:
    return VisionTower(VisionTowerConfig(pretrained=str(directory), select="all")).eval()


@torch.no_grad()
def tower_states(tower: VisionTower, split_dir: Path, limit: int) -> tuple[list[torch.Tensor], torch.Tensor, list[VideoAnnotation]]:
    """Per hidden state h: (V, T, N_h, D_h) tokens of the 8 sampled frames (the last one with the
    first token), for the first ``limit`` videos; plus (V, T, N, D) recipe tokens and the annotations."""
    annotations = read_annotations_jsonl(split_dir / "annotations.jsonl")[:limit]
    per_layer: list[list[torch.Tensor]] = []
    tokens = []
    for ann in annotations:
        with open_video(split_dir / ann.video) as reader:
            pixels = frames_to_pixel_values(reader.get_frames(FRAMES).frames[None], tower.pixel)  # (1, T, 3, S, S)
        tokens.append(tower(pixels)[0])  # (T, N, D)
        hidden = tower.model(pixel_values=pixels[0], output_hidden_states=True).hidden_states
        means = [h.mean((2, 3)) if h.ndim == 4 else h[:, 1 if tower.has_cls else 0 :].mean(1) for h in hidden]  # (T, D_h)
        per_layer.append(means)
    layers = [torch.stack([video[h] for video in per_layer]) for h in range(len(per_layer[0]))]  # (V, T, D_h)
    return layers, torch.stack(tokens), annotations


def exact_set_accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    p = (logits > 0).float()
    c = len(COLOR_NAMES)
    return (p[:, :c] == y[:, :c]).all(1).float().mean().item(), (p[:, c:] == y[:, c:]).all(1).float().mean().item()


def _standardise(x_train: torch.Tensor, x_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-5
    return (x_train - mu) / sd, (x_val - mu) / sd


def linear_probe(x_train, y_train, x_val, y_val, *, steps: int = 400) -> tuple[float, float]:
    x_train, x_val = _standardise(x_train, x_val)
    head = torch.nn.Linear(x_train.shape[1], y_train.shape[1])
    opt = torch.optim.Adam(head.parameters(), 1e-2, weight_decay=1e-4)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(head(x_train), y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return exact_set_accuracy(head(x_val), y_val)


def position_labels(ann: VideoAnnotation, frames: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, 4) shape on screen, (T, 4, 2) its centre as a fraction of the frame, for ``frames``."""
    present, centre = torch.zeros(len(frames), len(SHAPES)), torch.zeros(len(frames), len(SHAPES), 2)
    for obj in ann.objects:
        s = SHAPES.index(obj.shape)
        for i, t in enumerate(frames):
            if obj.visible(t):
                present[i, s] = 1
                centre[i, s] = torch.tensor(obj.positions[t]) / torch.tensor([ann.width, ann.height])
    return present, centre


def direction_probe(train_tokens, train_ann, val_tokens, val_ann, *, steps: int = 600) -> tuple[float, int]:
    """Direction of every moving object of the val videos, read from the first token of each of
    the 8 frames: one linear map (shared by all frames, trained on the train videos' frames)
    gives each shape's presence and centre; the direction is the larger of the x / y moves
    between the first and the last frame where the object is predicted present. Returns
    (accuracy, number of objects)."""
    x_train, x_val = _standardise(train_tokens[:, :, 0].flatten(0, 1), val_tokens[:, :, 0].flatten(0, 1))  # (V*T, D)
    labels = [position_labels(a, FRAMES) for a in train_ann]
    present, centre = torch.cat([p for p, _ in labels]), torch.cat([c for _, c in labels])
    head = torch.nn.Linear(x_train.shape[1], len(SHAPES) * 3)
    opt = torch.optim.Adam(head.parameters(), 1e-2)
    for _ in range(steps):
        out = head(x_train).view(-1, len(SHAPES), 3)
        shown = present.bool()
        loss = F.binary_cross_entropy_with_logits(out[..., 0], present) + 10 * F.mse_loss(out[..., 1:][shown], centre[shown])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = head(x_val).view(len(val_ann), len(FRAMES), len(SHAPES), 3)
    correct = total = 0
    for video, ann in zip(out, val_ann):
        for obj in ann.objects:
            if obj.motion not in DIRECTIONS:
                continue
            s = SHAPES.index(obj.shape)
            seen = video[:, s, 0] > 0
            total += 1
            if seen.sum() >= 2:
                dx, dy = (video[seen, s, 1:][-1] - video[seen, s, 1:][0]).tolist()
                guess = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
                correct += guess == obj.motion
    return correct / max(total, 1), total


def qformer_probe(tokens_train, y_train, tokens_val, y_val, *, steps: int, seed: int = 0) -> tuple[float, float]:
    torch.manual_seed(seed)
    batch, frames, _, dim = tokens_train.shape
    qformer = VideoQFormer(VideoQFormerConfig(input_dim=dim, num_queries=8, max_frames=16, num_layers=2, num_heads=4))
    head = torch.nn.Linear(8 * dim, y_train.shape[1])
    opt = torch.optim.AdamW([*qformer.parameters(), *head.parameters()], 2e-3)
    for _ in range(steps):
        rows = torch.randint(0, batch, (16,))
        out = qformer(tokens_train[rows], torch.ones(16, frames, dtype=torch.bool)).tokens.flatten(1)  # (16, 8*D)
        loss = F.binary_cross_entropy_with_logits(head(out), y_train[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = qformer(tokens_val, torch.ones(len(tokens_val), frames, dtype=torch.bool)).tokens.flatten(1)
        return exact_set_accuracy(head(out), y_val)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tower", "--clip", dest="tower", type=Path, required=True, help="a vision tower folder (CLIP / ViT / ResNet / ConvNeXt)")
    parser.add_argument("--data", type=Path, required=True, help="the synthetic data folder (train/ and val/)")
    parser.add_argument("--train-videos", type=int, default=1000)
    parser.add_argument("--qformer-steps", type=int, default=300)
    args = parser.parse_args(argv)

    tower = load_tower(args.tower)
    train_layers, train_tokens, train_ann = tower_states(tower, args.data / "train", args.train_videos)
    val_layers, val_tokens, val_ann = tower_states(tower, args.data / "val", 10**9)
    first = FRAMES[0]
    y_train = torch.stack([set_labels(a, first) for a in train_ann])
    y_val = torch.stack([set_labels(a, first) for a in val_ann])

    print(f"tower {args.tower} ({type(tower.model).__name__}): {len(train_ann)} train / {len(val_ann)} val videos; accuracy on val")
    print(f"{'probe':<44} {'colours':>8} {'shapes':>8}")
    summary = "pooled" if is_conv_backbone(tower.model.config) else "CLS"
    colours, shapes = linear_probe(train_tokens[:, 0, 0], y_train, val_tokens[:, 0, 0], y_val)
    print(f"{f'linear, last layer, first token ({summary}), frame {first}':<44} {100 * colours:7.1f}% {100 * shapes:7.1f}%")
    for layer, (x_train, x_val) in enumerate(zip(train_layers, val_layers)):
        colours, shapes = linear_probe(x_train[:, 0], y_train, x_val[:, 0], y_val)
        print(f"{f'linear, hidden state {layer}, mean grid token, frame {first}':<44} {100 * colours:7.1f}% {100 * shapes:7.1f}%")
    y_train_any = torch.stack([set_labels(a, None) for a in train_ann])
    y_val_any = torch.stack([set_labels(a, None) for a in val_ann])
    colours, shapes = qformer_probe(train_tokens, y_train_any, val_tokens, y_val_any, steps=args.qformer_steps)
    print(f"{f'video Q-Former, 8 frames, {args.qformer_steps} steps':<44} {100 * colours:7.1f}% {100 * shapes:7.1f}%")
    accuracy, objects = direction_probe(train_tokens, train_ann, val_tokens, val_ann)
    print(f"{'direction of a named object, 8 frames':<44} {100 * accuracy:7.1f}% ({objects} moving objects; chance 25%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
