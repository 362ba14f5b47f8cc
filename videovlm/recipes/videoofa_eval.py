"""VideoOFA's stage-2 tasks measured: frame-order and video-text matching accuracy on a split.

``python -m videovlm.recipes.videoofa_eval --model DIR --data SPLIT_DIR`` builds the items of
``FrameOrderDataset`` and ``VideoTextMatchingDataset`` over the split's ``captions.csv`` (the
validation draws: half the items positive, fixed per index) and answers each by likelihood:
the answer ``yes`` or ``no`` whose target tokens the decoder finds more probable. A model that
cannot see frame order scores about 50% on frame order; one that ignores the video about 50%
on matching. Video QA accuracy per type is ``videovlm eval --task qa``'s job.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from videovlm.models.videoofa import VideoOFAModel
from videovlm.recipes.videoofa import FrameOrderDataset, VideoTextMatchingDataset
from videovlm.train.data import PadCollator, SkippedItem

TASKS = {"frame_order": FrameOrderDataset, "matching": VideoTextMatchingDataset}


def _answer_labels(model: VideoOFAModel, answer: str, batch: int) -> torch.Tensor:
    labels = model.processor.encode("", answer, where=f"answer {answer!r}")["labels"]  # (L,)
    return labels.repeat(batch, 1)  # (B, L)


@torch.no_grad()
def answer_log_likelihood(model: VideoOFAModel, inputs: dict[str, torch.Tensor], answer: str) -> torch.Tensor:
    """(B,) summed log-probability of ``answer``'s target tokens for each item of the batch."""
    video = {k: inputs[k] for k in ("pixel_values", "frame_features") if k in inputs}
    labels = _answer_labels(model, answer, inputs["input_ids"].shape[0])
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], frame_mask=inputs["frame_mask"], labels=labels, **video).logits
    return logits.float().log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1).sum(1)


@torch.no_grad()
def yes_no_accuracy(model: VideoOFAModel, dataset, *, batch_size: int = 16, limit: int | None = None) -> dict:
    """Accuracy of answering the dataset's yes/no items by likelihood; items that fail to
    decode are skipped and counted (``skipped``), never scored."""
    yes, no = model.processor.template.yes, model.processor.template.no
    yes_labels = _answer_labels(model, yes, 1)[0]
    collate = PadCollator(dataset.pad_values)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    correct = total = skipped = positives = 0
    model.eval()
    for start in range(0, count, batch_size):
        items = [dataset[(0, i)] for i in range(start, min(start + batch_size, count))]
        batch = collate(items)
        skipped += sum(isinstance(item, SkippedItem) for item in items)
        if batch.num_items == 0:
            continue
        inputs = batch.inputs
        truth = torch.tensor([torch.equal(labels[labels != -100], yes_labels) for labels in inputs["labels"]])
        said_yes = answer_log_likelihood(model, inputs, yes) > answer_log_likelihood(model, inputs, no)
        correct += int((said_yes == truth).sum())
        positives += int(truth.sum())
        total += len(truth)
    return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total, "positives": positives, "skipped": skipped}


def stage2_accuracy(model: VideoOFAModel, split_dir: Path, *, sampler: str = "uniform:8", limit: int | None = None) -> dict:
    """Frame-order and matching accuracy over ``split_dir/captions.csv`` (validation draws)."""
    captions = Path(split_dir) / "captions.csv"
    return {
        name: yes_no_accuracy(model, task(path=captions, processor=model.processor, sampler=sampler, train=False), limit=limit)
        for name, task in TASKS.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m videovlm.recipes.videoofa_eval", description="frame-order and matching accuracy of a trained VideoOFA")
    parser.add_argument("--model", required=True, type=Path, help="folder written by the recipe (e.g. runs/videoofa/tiny/video/final)")
    parser.add_argument("--data", required=True, type=Path, help="split folder with captions.csv (e.g. data/synth/val)")
    parser.add_argument("--sampler", default="uniform:8", help="frames per item (default: the recipe's uniform:8)")
    parser.add_argument("--limit", type=int, help="score only the first N videos")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    from videovlm.models import load_pretrained
    from videovlm.paths import OutputPathError, check_outputs, write_atomic

    if not (args.data / "captions.csv").is_file():
        print(f"--data: {args.data} has no captions.csv", file=sys.stderr)
        return 2
    if args.output is not None:
        try:  # before the model loads: the report must not land on what it reads
            check_outputs({"--output": args.output}, folders={"--model": args.model, "--data": args.data})
        except OutputPathError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    model = load_pretrained(args.model)
    if not isinstance(model, VideoOFAModel):
        print(f"--model: {args.model} holds a {type(model).__name__}, not a VideoOFA model", file=sys.stderr)
        return 2
    report = stage2_accuracy(model, args.data, sampler=args.sampler, limit=args.limit)
    for name, value in report.items():
        print(f"{name:>12}: {100 * value['accuracy']:5.1f}%  ({value['correct']}/{value['total']}; {value['positives']} positives, {value['skipped']} skipped)")
    if args.output:
        write_atomic(args.output, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
