"""Where does visual information get lost? Linear and Q-Former probes on a frozen tiny tower.

    python tools/probe_visual_path.py --clip runs/backbones/clip/contrastive/final --data data/synth

1. Layer probe: for every hidden layer of the frozen CLIP tower, a linear probe (trained on the
   first frame of N train videos, scored on the val videos) predicts the *set* of colours and
   the set of shapes on screen, from the CLS token and from the mean patch token. Exact-set
   accuracy is reported (all 6 colour bits, resp. all 4 shape bits, right).
2. Q-Former probe: a fresh 2-layer video Q-Former (8 queries, the tiny recipe's) over 8
   frames of last-layer tokens, trained *directly* on the colour/shape sets with a linear
   head, to show what the temporal encoder can extract when the signal is not routed through
   a language model.

Diagnostic only (docs/results.md cites its output); prints a table, writes nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPVisionModel

from videovlm.data.synthetic import COLOR_NAMES, SHAPES
from videovlm.models.pixels import frames_to_pixel_values, pixel_config_from_processor_dict
from videovlm.models.temporal import VideoQFormer
from videovlm.video import open_video

FRAMES = list(range(1, 16, 2))  # uniform:8 of a 16-frame synthetic video


def set_labels(annotation: dict, frame: int | None) -> torch.Tensor:
    """(6 + 4,) multi-hot colours and shapes of the objects on screen (any frame if None)."""
    y = torch.zeros(len(COLOR_NAMES) + len(SHAPES))
    for obj in annotation["objects"]:
        if frame is not None and obj["positions"][frame] is None:
            continue
        y[COLOR_NAMES.index(obj["color"])] = 1
        y[len(COLOR_NAMES) + SHAPES.index(obj["shape"])] = 1
    return y


@torch.no_grad()
def tower_states(tower, pixel, split_dir: Path, limit: int, frames: list[int]):
    """(V, L+1, T, N, D) hidden states of every layer for ``frames`` of the first ``limit`` videos."""
    states, labels_first, labels_any = [], [], []
    for line in list(open(split_dir / "annotations.jsonl"))[:limit]:
        annotation = json.loads(line)
        with open_video(split_dir / annotation["video"]) as reader:
            pixels = frames_to_pixel_values(reader.get_frames(frames).frames[None], pixel)[0]  # (T, 3, S, S)
        hidden = tower(pixel_values=pixels, output_hidden_states=True).hidden_states  # L+1 x (T, N, D)
        states.append(torch.stack(hidden))
        labels_first.append(set_labels(annotation, frames[0]))
        labels_any.append(set_labels(annotation, None))
    return torch.stack(states), torch.stack(labels_first), torch.stack(labels_any)


def exact_set_accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    p = (logits > 0).float()
    c = len(COLOR_NAMES)
    return (p[:, :c] == y[:, :c]).all(1).float().mean().item(), (p[:, c:] == y[:, c:]).all(1).float().mean().item()


def linear_probe(x_train, y_train, x_val, y_val, *, steps: int = 400) -> tuple[float, float]:
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-5
    head = torch.nn.Linear(x_train.shape[1], y_train.shape[1])
    opt = torch.optim.Adam(head.parameters(), 1e-2, weight_decay=1e-4)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(head((x_train - mu) / sd), y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return exact_set_accuracy(head((x_val - mu) / sd), y_val)


def qformer_probe(tokens_train, y_train, tokens_val, y_val, *, steps: int, seed: int = 0) -> tuple[float, float]:
    torch.manual_seed(seed)
    batch, frames, _, dim = tokens_train.shape
    qformer = VideoQFormer(input_dim=dim, num_queries=8, max_frames=16, num_layers=2, num_heads=4)
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
    parser.add_argument("--clip", type=Path, required=True, help="a CLIPModel / CLIPVisionModel folder (recipes/backbones/clip.yaml output)")
    parser.add_argument("--data", type=Path, required=True, help="the synthetic data folder (train/ and val/)")
    parser.add_argument("--train-videos", type=int, default=1000)
    parser.add_argument("--qformer-steps", type=int, default=300)
    args = parser.parse_args(argv)

    tower = CLIPVisionModel.from_pretrained(str(args.clip)).eval()
    config = json.loads((args.clip / "preprocessor_config.json").read_text())
    pixel = pixel_config_from_processor_dict(config, image_size=tower.config.image_size)
    train, y_train_first, y_train_any = tower_states(tower, pixel, args.data / "train", args.train_videos, FRAMES)
    val, y_val_first, y_val_any = tower_states(tower, pixel, args.data / "val", 10**9, FRAMES)

    print(f"tower {args.clip}: {args.train_videos} train / {len(val)} val videos; exact-set accuracy on val")
    print(f"{'probe':<34} {'colours':>8} {'shapes':>8}")
    for layer in range(train.shape[1]):
        for name, pool in (("CLS", lambda s: s[:, layer, 0, 0]), ("mean patch", lambda s: s[:, layer, 0, 1:].mean(1))):
            colours, shapes = linear_probe(pool(train), y_train_first, pool(val), y_val_first)
            print(f"{f'linear, layer {layer}, {name}, frame 1':<34} {100 * colours:7.1f}% {100 * shapes:7.1f}%")
    colours, shapes = qformer_probe(train[:, -1], y_train_any, val[:, -1], y_val_any, steps=args.qformer_steps)
    print(f"{f'video Q-Former, 8 frames, {args.qformer_steps} steps':<34} {100 * colours:7.1f}% {100 * shapes:7.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
