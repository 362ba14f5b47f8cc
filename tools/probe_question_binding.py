"""Can a question-aware temporal encoder read the answers from a frozen tower, with no LLM?

    python tools/probe_question_binding.py --tower videovlm/assets/backbones/conv_tower --data data/synth
    python tools/probe_question_binding.py --tower videovlm/assets/backbones/conv_tower --data data/synth --no-film

A fresh ``InstructVideoQFormer`` (the tiny Video-LLaMA recipe's size: 8 queries, 2 layers) reads
the tower's frame tokens of the 8 frames the recipes sample (uniform:8) and the question's words
(a word-level vocabulary of the questions); a linear head on the mean of its output tokens
picks the answer among every answer of the data set. It is trained on the train split's QA
items and scored per question type on val every ``--eval-every`` steps. This separates the
two halves of the Video-LLaMA recipe: if this probe cannot answer a type, neither the frozen
LLM nor LoRA can, because the video tokens do not carry it; if it can, what remains is the
LLM reading the tokens. ``--no-film`` keeps the encoder's FiLM at its zero init (the
instruction then enters by self-attention only), ``--standardise`` z-scores every channel
of the frame tokens with the train split's statistics first.

Diagnostic only (docs/results.md cites its output); prints a table, writes nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from probe_visual_path import load_tower, tower_states  # tools/ is the script's folder
from safetensors.torch import save_file
from torch import nn

from videovlm.data.formats import read_qa_json
from videovlm.data.synthetic.vocabulary import ANSWER_VOCABULARY, QUESTION_TYPES
from videovlm.models.temporal import InstructVideoQFormer, InstructVideoQFormerConfig
from videovlm.models.tokenizer import load_tokenizer


class WordIds:
    """Word-level ids of the questions (0 = padding), or with ``tokenizer`` the ids a Video-LLaMA
    processor gives the instruction (``<s>`` + the question), so ``--save`` can be loaded into
    that model's video Q-Former."""

    def __init__(self, tokenizer=None):
        self.tokenizer = tokenizer
        self.ids: dict[str, int] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer) if self.tokenizer is not None else len(self.ids) + 1

    def __call__(self, text: str) -> list[int]:
        if self.tokenizer is not None:
            return [self.tokenizer.bos_token_id, *self.tokenizer(text, add_special_tokens=False)["input_ids"]]
        return [self.ids.setdefault(word, len(self.ids) + 1) for word in text.replace("?", " ?").split()]


class AnswerProbe(nn.Module):
    def __init__(self, *, dim: int, vocab_size: int, num_answers: int, film: bool, input_norm: bool = False, grid_positions: bool = False):
        super().__init__()
        self.encoder = InstructVideoQFormer(InstructVideoQFormerConfig(
            input_dim=dim, num_queries=8, max_frames=16, num_layers=2, num_heads=4, vocab_size=vocab_size,
            input_norm=input_norm, grid_positions=grid_positions, has_cls_token=True,  # the conv towers' pooled token leads
        ))
        for part in (self.encoder.instruction_film, self.encoder.instruction_words):
            part.requires_grad_(film)  # --no-film: the FiLM stays the identity
        self.head = nn.Linear(self.encoder.output_dim, num_answers)

    def forward(self, frames: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        frame_mask = torch.ones(frames.shape[:2], dtype=torch.bool)
        tokens = self.encoder(frames, frame_mask, instruction_ids=ids, instruction_mask=mask).tokens  # (B, M, D)
        return self.head(tokens.mean(1))  # (B, answers)


def split_items(split_dir: Path, tokens: torch.Tensor, annotations, words: WordIds) -> list[tuple[torch.Tensor, list[int], int, str]]:
    """(frame tokens (T, N, D), question ids, answer index, type) of every QA item of the split."""
    row = {ann.video_id: i for i, ann in enumerate(annotations)}
    answers = {a: i for i, a in enumerate(ANSWER_VOCABULARY)}
    return [(tokens[row[q.video_id]], words(q.question), answers[q.answer], q.type) for q in read_qa_json(split_dir / "qa.json") if q.video_id in row]


def collate(items) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    longest = max(len(ids) for _, ids, _, _ in items)
    ids = torch.zeros(len(items), longest, dtype=torch.long)
    for i, (_, words, _, _) in enumerate(items):
        ids[i, : len(words)] = torch.tensor(words)
    frames = torch.stack([frames for frames, _, _, _ in items])  # (B, T, N, D)
    return frames, ids, (ids > 0).long(), torch.tensor([answer for _, _, answer, _ in items])


@torch.no_grad()
def per_type_accuracy(probe: AnswerProbe, items, *, batch: int = 256) -> dict[str, float]:
    probe.eval()
    hits: dict[str, list[bool]] = {}
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        frames, ids, mask, answers = collate(chunk)
        correct = (probe(frames, ids, mask).argmax(-1) == answers).tolist()
        for (_, _, _, kind), ok in zip(chunk, correct):
            hits.setdefault(kind, []).append(ok)
    probe.train()
    return {kind: 100 * sum(hits[kind]) / len(hits[kind]) for kind in QUESTION_TYPES if kind in hits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tower", type=Path, required=True, help="a vision tower folder (what the recipe freezes)")
    parser.add_argument("--data", type=Path, required=True, help="the synthetic data folder (train/ and val/)")
    parser.add_argument("--train-videos", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--no-film", dest="film", action="store_false", help="keep the FiLM at its zero init")
    parser.add_argument("--standardise", action="store_true", help="z-score every channel of the frame tokens (train statistics)")
    parser.add_argument("--types", nargs="+", default=None, help="train and score only these question types")
    parser.add_argument("--spatial", action="store_true", help="the encoder adds its 2D sine code to the grid tokens (grid_positions, as DETR does for CNN maps)")
    parser.add_argument("--input-norm", action="store_true", help="the encoder's LayerNorm on the frame tokens first (input_norm, Video-LLaMA's ln_vision)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="use this tokenizer's ids (the recipe's LLM folder) instead of word ids")
    parser.add_argument("--save", type=Path, default=None, help="write the trained encoder's weights here (safetensors)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    tower = load_tower(args.tower)
    _, train_tokens, train_ann = tower_states(tower, args.data / "train", args.train_videos)  # (V, T, N, D)
    _, val_tokens, val_ann = tower_states(tower, args.data / "val", 10**9)
    if args.standardise:
        mean, std = train_tokens.mean((0, 1, 2)), train_tokens.std((0, 1, 2)).clamp(min=1e-3)
        train_tokens, val_tokens = (train_tokens - mean) / std, (val_tokens - mean) / std
    words = WordIds(load_tokenizer(None, source=str(args.tokenizer), where="--tokenizer") if args.tokenizer else None)
    train = split_items(args.data / "train", train_tokens, train_ann, words)
    val = split_items(args.data / "val", val_tokens, val_ann, words)
    if args.types:
        train, val = [i for i in train if i[3] in args.types], [i for i in val if i[3] in args.types]
    probe = AnswerProbe(dim=train_tokens.shape[-1], vocab_size=words.vocab_size, num_answers=len(ANSWER_VOCABULARY), film=args.film, input_norm=args.input_norm, grid_positions=args.spatial)
    optimizer = torch.optim.AdamW([p for p in probe.parameters() if p.requires_grad], args.lr)
    generator = torch.Generator().manual_seed(args.seed)

    print(f"tower {args.tower}; {len(train)} train / {len(val)} val questions; FiLM {'on' if args.film else 'off'}; grid code {'on' if args.spatial else 'off'}; input norm {'on' if args.input_norm else 'off'}; val accuracy (%)")
    kinds = [kind for kind in QUESTION_TYPES if any(item[3] == kind for item in val)]
    print(f"{'step':>6} {'cpu-s':>6} " + " ".join(f"{kind:>9}" for kind in kinds))
    start = time.process_time()
    for step in range(1, args.steps + 1):
        rows = torch.randint(0, len(train), (args.batch,), generator=generator).tolist()
        frames, ids, mask, answers = collate([train[r] for r in rows])
        loss = F.cross_entropy(probe(frames, ids, mask), answers)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            accuracy = per_type_accuracy(probe, val)
            print(f"{step:>6} {time.process_time() - start:>6.0f} " + " ".join(f"{accuracy[kind]:>9.1f}" for kind in kinds), flush=True)
    if args.save is not None:
        save_file(probe.encoder.state_dict(), str(args.save))
        print(f"wrote {args.save}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
