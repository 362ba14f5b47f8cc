"""The VideoBERT recipe's library side: a model builder that fits the hierarchical visual
vocabulary on clip features of the frozen tower, and the two zero-shot evaluations.

Tokenisation: each sampled clip's feature (the frozen tower's pooled output, averaged over
the clip's frames) is a point; ``VisualVocabulary.fit`` builds the tree and its k^levels leaves
become the model's codebook (``VideoBertModel.visual_words``). The model then turns every
frame of a video into the id of its nearest leaf, so fitting uses the same unit as the model
sees: the tiny recipe samples clips of one frame (its videos are 2 s long; the paper's 1.5 s
clips would leave one or two words per video).

Evaluations (``python -m videovlm.recipes.videobert --model DIR --data SPLIT_DIR``):
- alignment accuracy: every test video with its own caption (should score > 0.5) and with
  another video's caption (should score < 0.5), balanced;
- template filling, the synthetic analogue of "now let me show you how to [MASK] the [MASK]":
  for each object of a test video, ``a [MASK] {shape}`` is filled from the colour words and
  ``a {colour} [MASK]`` from the shape words (captions say "a green triangle goes left"); the
  model never trains on these templates or on QA, only on captions (zero-shot).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from videovlm.models.videobert import VideoBertModel
from videovlm.recipes.builders import tiny_videobert_model
from videovlm.recipes.visual_vocabulary import VisualVocabulary, VocabularySettings


def clip_features(model: VideoBertModel, videos: Sequence[Path], *, sampler: str, batch_size: int = 16) -> torch.Tensor:
    """(P, D) features of every sampled clip of ``videos`` (frozen tower, clip = mean of its frames)."""
    from videovlm.video import open_video
    from videovlm.video.samplers import parse_sampler

    sample_frames = parse_sampler(sampler)
    features = []
    model.eval()
    for start in range(0, len(videos), batch_size):
        frames, groups = [], []
        for path in videos[start : start + batch_size]:
            with open_video(path) as reader:
                sample = sample_frames(reader.metadata, None)
                frames.append(reader.get_frames(list(sample.indices)).frames)  # (T, H, W, 3)
            groups.append(_clip_slices(sample))
        with torch.no_grad():
            per_frame, _ = model.frame_vectors(model.processor.frames_to_pixel_values(torch.stack(frames)))  # (B, T, D)
        for row, slices in zip(per_frame, groups):
            features.extend(row[s].mean(0) for s in slices)
    return torch.stack(features)


def _clip_slices(sample) -> list[slice]:
    if sample.clips is None:
        return [slice(i, i + 1) for i in range(len(sample.indices))]
    slices, start = [], 0
    for clip in sample.clips:
        slices.append(slice(start, start + len(clip)))
        start += len(clip)
    return slices


def fit_visual_vocabulary(model: VideoBertModel, videos: Sequence[Path], *, sampler: str, settings: VocabularySettings) -> VisualVocabulary:
    """Fit the tree on the clips of ``videos`` and store its leaves as the model's codebook."""
    if model.config.num_visual_words != settings.size:
        raise ValueError(
            f"num_visual_words: the model has {model.config.num_visual_words} visual words but levels x k gives "
            f"{settings.k}^{settings.levels} = {settings.size}"
        )
    vocabulary = VisualVocabulary.fit(clip_features(model, videos, sampler=sampler), settings)
    model.visual_words.copy_(vocabulary.leaves.to(model.visual_words.dtype))
    return vocabulary


def tiny_videobert_with_vocabulary(
    *,
    tokenizer: Path,
    captions: Path,
    vision: Path | None = None,
    bert: Path | None = None,
    levels: int = 2,
    k: int = 8,
    iterations: int = 20,
    seed: int = 0,
    sampler: str = "uniform:8",
    max_videos: int | None = None,
    max_frames: int = 16,
) -> VideoBertModel:
    """Tiny VideoBERT whose k^levels visual words are fitted on the videos of ``captions``
    (a WebVid CSV; the first ``max_videos`` videos, all when None)."""
    settings = VocabularySettings(levels=levels, k=k, iterations=iterations, seed=seed)
    model = tiny_videobert_model(tokenizer=tokenizer, vision=vision, bert=bert, num_visual_words=settings.size, max_frames=max_frames)
    return _fitted(model, captions=captions, sampler=sampler, settings=settings, max_videos=max_videos)


def _fitted(model: VideoBertModel, *, captions: Path, sampler: str, settings: VocabularySettings, max_videos: int | None) -> VideoBertModel:
    from videovlm.data.formats import read_webvid_csv

    videos = [record.video for record in read_webvid_csv(captions)][:max_videos]
    fit_visual_vocabulary(model, videos, sampler=sampler, settings=settings)
    return model


def videobert_base_with_vocabulary(
    *,
    captions: Path,
    bert: str = "bert-base-uncased",
    vision: str = "openai/clip-vit-base-patch32",
    levels: int = 4,
    k: int = 12,
    iterations: int = 20,
    seed: int = 0,
    sampler: str = "clips:1,num=32",
    max_videos: int | None = None,
) -> VideoBertModel:
    """VideoBERT with public checkpoints and a k^levels visual vocabulary (the paper: 12^4)
    fitted on the videos of ``captions``; downloads the checkpoints when built."""
    from videovlm.recipes.builders import videobert_base_model

    settings = VocabularySettings(levels=levels, k=k, iterations=iterations, seed=seed)
    model = videobert_base_model(bert=bert, vision=vision, num_visual_words=settings.size)
    return _fitted(model, captions=captions, sampler=sampler, settings=settings, max_videos=max_videos)


# --------------------------------------------------------------------------------------
# Evaluation


def _frames(paths: Sequence[Path], sampler: str) -> torch.Tensor:
    from videovlm.video import open_video
    from videovlm.video.samplers import parse_sampler

    sample_frames = parse_sampler(sampler)
    out = []
    for path in paths:
        with open_video(path) as reader:
            out.append(reader.get_frames(list(sample_frames(reader.metadata, None).indices)).frames)
    return torch.stack(out)  # (B, T, H, W, 3)


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
    report = {kind: {"accuracy": c / t if t else 0.0, "correct": c, "total": t} for kind, (c, t) in results.items()}
    correct, total = sum(c for c, _ in results.values()), sum(t for _, t in results.values())
    report["overall"] = {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m videovlm.recipes.videobert", description="zero-shot evaluation of a trained VideoBERT")
    parser.add_argument("--model", required=True, type=Path, help="folder written by the recipe (e.g. runs/videobert/tiny/pretrain/final)")
    parser.add_argument("--data", required=True, type=Path, help="synthetic split folder (captions.csv, annotations.jsonl, videos/)")
    parser.add_argument("--sampler", default="uniform:8")
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

    model = load_pretrained(args.model)
    if not isinstance(model, VideoBertModel):
        print(f"--model: {args.model} holds a {type(model).__name__}, not a VideoBERT model", file=sys.stderr)
        return 2
    torch.set_grad_enabled(False)
    report = {
        "alignment": alignment_accuracy(model, args.data, sampler=args.sampler),
        "template_filling": template_filling_accuracy(model, args.data, sampler=args.sampler),
    }
    for name, value in [("alignment", report["alignment"])] + [(f"template {k}", v) for k, v in report["template_filling"].items()]:
        print(f"{name:>22}: {100 * value['accuracy']:5.1f}%  ({value['correct']}/{value['total']})")
    if args.output:
        write_atomic(args.output, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
