"""VideoBERT's zero-shot evaluations on a synthetic split, and what its visual words mean.

``python -m videovlm.recipes.videobert_eval --model DIR --data SPLIT_DIR`` prints and writes:
- alignment accuracy: every video with its own caption (should score > 0.5) and with
  another video's caption (should score < 0.5), balanced;
- template filling, the synthetic analogue of "now let me show you how to [MASK] the [MASK]":
  for each object of a video, ``a [MASK] {shape}`` is filled from the colour words and
  ``a {colour} [MASK]`` from the shape words (captions say "a green triangle goes left"); the
  model never trains on these templates or on QA, only on captions (zero-shot);
- forecasting, the paper's second zero-shot use: from the visual words of a video's first
  half alone, the next clip's word (top-1 / top-5), against the training split's most
  frequent words and against repeating the last word seen;
- the vocabulary's purity: how often a visual word holds one set of objects (colour+shape),
  one colour set, one shape set, from the split's ground truth (``annotations.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from videovlm.models.videobert import VideoBertModel


def _sampled(paths: Sequence[Path], sampler: str) -> tuple[torch.Tensor, list[list[int]]]:
    """Frames (B, T, H, W, 3) of ``paths`` and the frame indices the sampler chose."""
    from videovlm.video import open_video
    from videovlm.video.samplers import parse_sampler

    sample_frames = parse_sampler(sampler)
    frames, indices = [], []
    for path in paths:
        with open_video(path) as reader:
            chosen = list(sample_frames(reader.metadata, None).indices)
            frames.append(reader.get_frames(chosen).frames)
        indices.append(chosen)
    return torch.stack(frames), indices


def _frames(paths: Sequence[Path], sampler: str) -> torch.Tensor:
    return _sampled(paths, sampler)[0]  # (B, T, H, W, 3)


@torch.no_grad()
def alignment_accuracy(model: VideoBertModel, split_dir: Path, *, sampler: str = "uniform:8", batch_size: int = 16, seed: int = 0) -> dict:
    """Balanced accuracy of the alignment head on (video, own caption) vs (video, another caption)."""
    from videovlm.data.formats import read_webvid_csv

    records = read_webvid_csv(Path(split_dir) / "captions.csv")
    if len(records) < 2:
        raise ValueError(f"{split_dir}/captions.csv: alignment needs at least 2 captions, got {len(records)}")
    generator = torch.Generator().manual_seed(seed)
    # Another video's caption for every video: a random non-zero shift keeps it different.
    shift = 1 + torch.randint(len(records) - 1, (len(records),), generator=generator)
    other = (torch.arange(len(records)) + shift) % len(records)
    correct = total = 0
    model.eval()
    for start in range(0, len(records), batch_size):
        chunk = list(range(start, min(start + batch_size, len(records))))
        pixels = model.processor.frames_to_pixel_values(_frames([records[i].video for i in chunk], sampler))
        for captions, expect in (([records[i].caption for i in chunk], True), ([records[int(other[i])].caption for i in chunk], False)):
            batch = model.processor.collate([model.processor.text(c) for c in captions])
            scores = model.alignment_score(pixel_values=pixels, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            correct += int(((scores > 0.5) == expect).sum())
            total += len(chunk)
    return {"accuracy": correct / total, "correct": correct, "total": total}


def template_items(split_dir: Path) -> list[tuple[Path, str, str, str]]:
    """(video, template, answer, kind) for every object that keeps its colour, both kinds."""
    from videovlm.data.formats import read_annotations_jsonl

    items = []
    for annotation in read_annotations_jsonl(Path(split_dir) / "annotations.jsonl"):
        video = Path(split_dir) / annotation.video
        for obj in annotation.objects:
            if obj.color_after is None:
                items.append((video, f"a [MASK] {obj.shape}", obj.color, "color"))
            items.append((video, f"a {obj.color} [MASK]", obj.shape, "shape"))
    return items


def _rate(correct: int, total: int) -> dict:
    return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total}


@torch.no_grad()
def template_filling_accuracy(model: VideoBertModel, split_dir: Path, *, sampler: str = "uniform:8", batch_size: int = 16) -> dict:
    """Accuracy of filling colour / shape templates with the best-scoring candidate word."""
    from videovlm.data.synthetic import COLOR_NAMES, SHAPES

    candidates = {"color": list(COLOR_NAMES), "shape": list(SHAPES)}
    results = {kind: [0, 0] for kind in candidates}
    items = template_items(split_dir)
    model.eval()
    for kind, words in candidates.items():
        chosen = [it for it in items if it[3] == kind]
        for start in range(0, len(chosen), batch_size):
            chunk = chosen[start : start + batch_size]
            pixels = model.processor.frames_to_pixel_values(_frames([it[0] for it in chunk], sampler))
            scores = model.score_candidates(pixel_values=pixels, templates=[it[1] for it in chunk], candidates=words)  # (B, C)
            for it, best in zip(chunk, scores.argmax(1).tolist()):
                results[kind][0] += words[best] == it[2]
                results[kind][1] += 1
    report = {kind: _rate(c, t) for kind, (c, t) in results.items()}
    report["overall"] = _rate(sum(c for c, _ in results.values()), sum(t for _, t in results.values()))
    return report


def _word_batches(model: VideoBertModel, split_dir: Path, *, sampler: str, batch_size: int, limit: int | None = None) -> Iterator[tuple[list, list[list[int]], torch.Tensor]]:
    """(annotations, sampled frame indices, pixel values) of the split's videos, a batch at a time."""
    from videovlm.data.formats import read_annotations_jsonl

    annotations = read_annotations_jsonl(Path(split_dir) / "annotations.jsonl")[:limit]
    for start in range(0, len(annotations), batch_size):
        chunk = annotations[start : start + batch_size]
        frames, indices = _sampled([Path(split_dir) / a.video for a in chunk], sampler)
        yield chunk, indices, model.processor.frames_to_pixel_values(frames)


@torch.no_grad()
def visual_words_of(model: VideoBertModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """Visual-word index (B, T) in ``[0, K)`` of every frame."""
    vectors, _ = model.frame_vectors(pixel_values)
    return model.visual_word_ids(vectors) - model.visual_word_offset


def on_screen(annotation, frame: int) -> tuple[frozenset, frozenset, frozenset]:
    """Ground truth of one frame: the (colour, shape) objects visible, their colours, their shapes."""
    objects = set()
    for obj in annotation.objects:
        if obj.positions[frame] is not None:
            changed = obj.change_frame is not None and frame >= obj.change_frame
            objects.add((obj.color_after if changed else obj.color, obj.shape))
    return frozenset(objects), frozenset(c for c, _ in objects), frozenset(s for _, s in objects)


@torch.no_grad()
def vocabulary_purity(model: VideoBertModel, split_dir: Path, *, sampler: str = "uniform:8", batch_size: int = 16) -> dict:
    """Cluster purity of the visual words on the split's sampled frames: for each word, the
    share of its frames that show its most common set (objects as colour+shape, colours,
    shapes); ``baseline`` is the same with one word for every frame (the most common set)."""
    kinds = ("objects", "colours", "shapes")
    by_word = {kind: defaultdict(Counter) for kind in kinds}
    overall = {kind: Counter() for kind in kinds}
    model.eval()
    for batch_annotations, indices, pixels in _word_batches(model, split_dir, sampler=sampler, batch_size=batch_size):
        for annotation, chosen, words in zip(batch_annotations, indices, visual_words_of(model, pixels).tolist()):
            for frame, word in zip(chosen, words):
                for kind, truth in zip(kinds, on_screen(annotation, frame)):
                    by_word[kind][word][truth] += 1
                    overall[kind][truth] += 1
    frames = sum(overall["objects"].values())
    report = {"frames": frames, "words_used": len(by_word["objects"]), "num_visual_words": model.config.num_visual_words}
    for kind in kinds:
        majority = sum(counts.most_common(1)[0][1] for counts in by_word[kind].values())
        report[kind] = {"purity": majority / frames if frames else 0.0, "baseline": overall[kind].most_common(1)[0][1] / frames if frames else 0.0}
    return report


@torch.no_grad()
def forecast_accuracy(
    model: VideoBertModel,
    split_dir: Path,
    *,
    frequency_split: Path,
    sampler: str = "uniform:8",
    top_k: int = 5,
    batch_size: int = 16,
    frequency_videos: int = 500,
) -> dict:
    """Next-clip forecasting from the first half of each video's visual words (no text):
    top-1 and top-``top_k`` accuracy of ``next_word_logits`` against the true word, next to the
    ``top_k`` most frequent words of ``frequency_split`` (its first ``frequency_videos``
    videos; the training split, so nothing is read from the evaluated one) and to repeating
    the last word seen (a video changes slowly, so this is the strong baseline)."""
    frequency = Counter()
    for _, _, pixels in _word_batches(model, frequency_split, sampler=sampler, batch_size=batch_size, limit=frequency_videos):
        frequency.update(visual_words_of(model, pixels).flatten().tolist())
    frequent = torch.tensor([word for word, _ in frequency.most_common(top_k)])
    hits = Counter()
    total = 0
    model.eval()
    for _, _, pixels in _word_batches(model, split_dir, sampler=sampler, batch_size=batch_size):
        context = pixels.shape[1] // 2
        logits, truth = model.next_word_logits(context=context, pixel_values=pixels)  # (B, K), (B,)
        last = visual_words_of(model, pixels)[:, context - 1]
        valid = truth >= 0
        ranked = logits.topk(min(top_k, logits.shape[1]), dim=-1).indices  # (B, top_k)
        hits["top1"] += int((ranked[:, 0] == truth)[valid].sum())
        hits[f"top{top_k}"] += int((ranked == truth[:, None]).any(1)[valid].sum())
        hits[f"frequent_top{top_k}"] += int(torch.isin(truth, frequent)[valid].sum())
        hits["repeat_last_top1"] += int((last == truth)[valid].sum())
        total += int(valid.sum())
    return {name: _rate(count, total) for name, count in sorted(hits.items())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m videovlm.recipes.videobert_eval", description="zero-shot evaluation of a trained VideoBERT")
    parser.add_argument("--model", required=True, type=Path, help="folder written by the recipe (e.g. runs/videobert/tiny/pretrain/final)")
    parser.add_argument("--data", required=True, type=Path, help="synthetic split folder (captions.csv, annotations.jsonl, videos/)")
    parser.add_argument("--frequency-data", type=Path, help="split whose most frequent visual words are the forecasting baseline (default: train beside --data)")
    parser.add_argument("--sampler", default="clips:1,num=8")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    from videovlm.models import load_pretrained
    from videovlm.paths import OutputPathError, check_outputs, write_atomic

    if args.output is not None:
        try:  # before the model loads: the report must not land on what it reads
            check_outputs({"--output": args.output}, folders={"--model": args.model, "--data": args.data})
        except OutputPathError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    frequency_split = args.frequency_data or args.data.parent / "train"
    if not (frequency_split / "annotations.jsonl").is_file():
        print(f"--frequency-data: {frequency_split} has no annotations.jsonl (the forecasting baseline reads its visual words)", file=sys.stderr)
        return 2
    model = load_pretrained(args.model)
    if not isinstance(model, VideoBertModel):
        print(f"--model: {args.model} holds a {type(model).__name__}, not a VideoBERT model", file=sys.stderr)
        return 2
    torch.set_grad_enabled(False)
    report = {
        "alignment": alignment_accuracy(model, args.data, sampler=args.sampler),
        "template_filling": template_filling_accuracy(model, args.data, sampler=args.sampler),
        "forecast": forecast_accuracy(model, args.data, frequency_split=frequency_split, sampler=args.sampler),
        "purity": vocabulary_purity(model, args.data, sampler=args.sampler),
    }
    rows = [("alignment", report["alignment"])]
    rows += [(f"template {k}", v) for k, v in report["template_filling"].items()]
    rows += [(f"forecast {k}", v) for k, v in report["forecast"].items()]
    for name, value in rows:
        print(f"{name:>26}: {100 * value['accuracy']:5.1f}%  ({value['correct']}/{value['total']})")
    purity = report["purity"]
    for kind in ("objects", "colours", "shapes"):
        print(f"{'purity ' + kind:>26}: {100 * purity[kind]['purity']:5.1f}%  (one word for all: {100 * purity[kind]['baseline']:.1f}%; {purity['words_used']} of {purity['num_visual_words']} words used)")
    if args.output:
        write_atomic(args.output, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
