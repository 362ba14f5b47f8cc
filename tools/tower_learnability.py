"""How fast can a from-scratch tiny tower learn the synthetic shapes, given the answer directly?

    python tools/tower_learnability.py --arch clip --patch-size 16 --steps 600
    python tools/tower_learnability.py --arch cnn --steps 300
    python tools/tower_learnability.py --arch cnn --objective contrastive --steps 800

An upper bound for the tiny recipes' vision side: instead of contrastive image-text
pretraining (recipes/backbones/clip.yaml), a fresh tower plus a linear head is trained
*directly* on the multi-hot set of colours (6) and shapes (4) on screen, on frames rendered
fresh every step by the synthetic renderer (never repeated, no h264 artefacts: easier than the
recipes' data). Every 100 steps it prints the exact-set accuracy on 400 held-out frames (chance
~1-5%). If the shapes are not learned here within minutes, no recipe that learns them through
captions or a language model can within the same budget.

With ``--objective contrastive`` the tower learns from the frames' captions instead (the clip
backbone recipe's InfoNCE with its 2-layer text tower, in-batch negatives), and every 200 steps
a linear probe on the frozen tower's features (1000 train / 400 held-out frames) reports the
same exact-set accuracies: does the caption signal teach this tower shape?

Architectures: ``clip`` (the tiny recipes' CLIP ViT, 128-d, 4 layers, 112 px, ``--patch-size``
px patches) and ``cnn`` (5 convolutions with batch norm, 4 of stride 2, global average pool,
128-d: the convolutional prior a ViT lacks). Diagnostic only: prints, writes nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videovlm.data.synthetic.captions import make_image_caption, pick_image_frame, visible_objects
from videovlm.data.synthetic.render import render_background, render_video
from videovlm.data.synthetic.scene import sample_scene
from videovlm.data.synthetic.vocabulary import COLOR_NAMES, SHAPES
from videovlm.models.pixels import CLIP_MEAN, CLIP_STD
from videovlm.models.presets import TINY_IMAGE_SIZE, tiny_clip_vision_config

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling tool, whatever the working directory
from probe_visual_path import exact_set_accuracy, linear_probe  # noqa: E402

BATCH = 64
VAL_FRAMES = 400
PROBE_TRAIN_FRAMES = 1000  # contrastive: the linear probe's training frames


def rendered_frame(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, str]:
    """One normalised frame (3, S, S) of a fresh synthetic scene, its (6 + 4,) multi-hot
    colours and shapes on screen, and its image caption."""
    scene = sample_scene(rng, video_id="probe", size=TINY_IMAGE_SIZE, num_frames=16, fps=8.0)
    frames = render_video(scene, render_background(rng, height=TINY_IMAGE_SIZE, width=TINY_IMAGE_SIZE))  # (T, S, S, 3)
    t = pick_image_frame(rng, scene)
    labels = torch.zeros(len(COLOR_NAMES) + len(SHAPES))
    for obj in visible_objects(scene, t):
        labels[COLOR_NAMES.index(obj.color_at(t))] = 1
        labels[len(COLOR_NAMES) + SHAPES.index(obj.shape)] = 1
    pixels = torch.from_numpy(frames[t]).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    return (pixels - mean) / std, labels, make_image_caption(rng, scene, t)


def rendered_batch(rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    pixels, labels, captions = zip(*(rendered_frame(rng) for _ in range(size)))
    return torch.stack(pixels), torch.stack(labels), list(captions)  # (B, 3, S, S), (B, 10), B captions


def build_encoder(arch: str, patch_size: int) -> tuple[nn.Module, int]:
    """(module: pixels (B, 3, S, S) -> features (B, D), D)."""
    if arch == "clip":
        from transformers import CLIPVisionModel

        tower = CLIPVisionModel(tiny_clip_vision_config(patch_size=patch_size))

        class Pooled(nn.Module):
            def __init__(self):
                super().__init__()
                self.tower = tower

            def forward(self, pixels):
                return self.tower(pixel_values=pixels).pooler_output  # (B, D): post-LN CLS

        return Pooled(), tower.config.hidden_size

    def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out), nn.GELU())

    cnn = nn.Sequential(block(3, 32, 2), block(32, 64, 2), block(64, 128, 2), block(128, 128, 2), nn.Conv2d(128, 128, 3, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return cnn, 128


class CaptionLoss(nn.Module):
    """The clip backbone recipe's objective around any image encoder: symmetric InfoNCE between
    projected image features and its tiny text tower's features, in-batch negatives."""

    def __init__(self, image_dim: int, captions: list[str]):
        super().__init__()
        from videovlm.models import train_tokenizer
        from videovlm.train.backbones import build_tiny_clip

        clip = build_tiny_clip(train_tokenizer(captions, vocab_size=200))
        self.processor = clip.processor
        # Only the text side of the recipe's model: the image side is the encoder under test.
        self.text_model, self.text_projection = clip.model.text_model, clip.model.text_projection
        self.image_projection = nn.Linear(image_dim, clip.model.config.projection_dim, bias=False)
        self.logit_scale = clip.logit_scale

    def forward(self, image_features: torch.Tensor, captions: list[str]) -> torch.Tensor:
        from videovlm.train.data import PadCollator

        batch = PadCollator({"input_ids": self.processor.tokenizer.pad_token_id})([self.processor.text(c) for c in captions]).inputs
        pooled = self.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output  # at the first </s>
        text = F.normalize(self.text_projection(pooled), dim=-1)
        image = F.normalize(self.image_projection(image_features), dim=-1)
        logits = text @ image.T * self.logit_scale.clamp(max=math.log(100.0)).exp()  # (B, B)
        targets = torch.arange(len(logits))
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


@torch.no_grad()
def features(encoder: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    encoder.eval()
    return torch.cat([encoder(chunk) for chunk in pixels.split(100)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=("clip", "cnn"), default="clip")
    parser.add_argument("--patch-size", type=int, default=16, help="clip only: 16 (49 patches) or 8 (196)")
    parser.add_argument("--objective", choices=("labels", "contrastive"), default="labels", help="train on the sets directly, or on the captions (then probe)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    encoder, dim = build_encoder(args.arch, args.patch_size)
    contrastive = args.objective == "contrastive"
    train_rng = np.random.default_rng(args.seed)
    val_pixels, val_labels, _ = rendered_batch(np.random.default_rng(10_000 + args.seed), VAL_FRAMES)
    if contrastive:
        probe_train = rendered_batch(np.random.default_rng(20_000 + args.seed), PROBE_TRAIN_FRAMES)
        head = CaptionLoss(dim, rendered_batch(np.random.default_rng(30_000 + args.seed), 500)[2])
    else:
        head = nn.Linear(dim, len(COLOR_NAMES) + len(SHAPES))
    params = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, args.lr, weight_decay=0.05)
    # 20 warmup steps, cosine to 5% (the clip backbone recipe's schedule).
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    )
    print(f"{args.arch} (patch {args.patch_size if args.arch == 'clip' else '-'}), {args.objective}: {sum(p.numel() for p in encoder.parameters()):,} parameters, batch {BATCH}, lr {args.lr}")
    print(f"{'step':>6} {'loss':>7} {'colours':>8} {'shapes':>7} {'seconds':>8}")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        encoder.train()
        pixels, labels, captions = rendered_batch(train_rng, BATCH)
        if contrastive:
            loss = head(encoder(pixels), captions)
        else:
            loss = F.binary_cross_entropy_with_logits(head(encoder(pixels)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % (200 if contrastive else 100) == 0 or step == args.steps:
            if contrastive:
                # probe_visual_path's linear probe, on the frozen encoder's features
                colours, shapes = linear_probe(features(encoder, probe_train[0]), probe_train[1], features(encoder, val_pixels), val_labels)
            else:
                with torch.no_grad():
                    colours, shapes = exact_set_accuracy(head(features(encoder, val_pixels)), val_labels)
            print(f"{step:>6} {loss.item():>7.3f} {100 * colours:>7.1f}% {100 * shapes:>6.1f}% {time.perf_counter() - start:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
