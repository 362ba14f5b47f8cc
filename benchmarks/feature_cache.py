"""Frozen-feature cache benchmark: tiny Video-LLaMA stage 1 steps/s with and without the cache.

    python benchmarks/feature_cache.py [--workdir .cache/bench_feature_cache] [--videos 32] [--steps 20]

Stage 1 of Video-LLaMA: video-caption pretraining with the vision tower, the BLIP-2 image
Q-Former and the LLM frozen (trainable: frame positions, video Q-Former, projector); the
cache stores the output of the frozen vision tower + image Q-Former per frame. Same data, sampler (``segment:8``
with train-time jitter), per-item seeds, model init and batch order in both runs:

- on the fly: decode the sampled frames, preprocess, run the frozen vision tower, train;
- cached: ``videovlm.train.feature_cache`` features read from safetensors shards (computed
  once per distinct frame beforehand; that one-off cost is reported separately).

A step is the whole data + forward + backward + optimizer step (DataLoader with
``num_workers=0``, as on a 2-core machine). Steps/s (wall) and steps per CPU-second of the
process (robust to other jobs on shared cores) are measured after one warm-up step, and
the per-step losses of the two runs are compared (they differ only by float rounding of the
vision tower's batched vs per-frame matmuls).
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLER = "segment:8"
STAGE1_TRAINABLE = ["frame_position", "temporal", "projector"]


def _encode(processor, record, frames, valid):
    item = processor(record, frames=frames)
    item["frame_mask"] = valid
    return item


def make_data(workdir: Path, videos: int) -> Path:
    from videovlm.data.synthetic import generate

    root = workdir / "synthetic"
    if not (root / "train" / "captions.csv").is_file():
        generate(root, train=videos, val=1, test=1, seed=0, size=112, frames=16, fps=8)
    return root


def build_model(tokenizer, seed: int):
    from videovlm.models import set_trainable
    from videovlm.models.presets import tiny_videollama

    torch.manual_seed(seed)
    model = tiny_videollama(tokenizer=tokenizer, max_frames=8, image_qformer=True)
    set_trainable(model, STAGE1_TRAINABLE)
    return model


def run(model, dataset, *, steps: int, batch_size: int, seed: int) -> tuple[list[float], float, float]:
    """Per-step losses, steps/s of wall time and steps per CPU-second of this process (both
    after the first step) of a plain training loop. CPU time is what the cache saves; it is
    also the number that stays put when other jobs share the cores."""
    from torch.utils.data import DataLoader

    from videovlm.train.data import PadCollator, StepBatchSampler

    batches = StepBatchSampler(
        sizes=[len(dataset)], weights=None, seed=seed, micro_batch_size=batch_size, gradient_accumulation_steps=1,
        rank=0, world_size=1, start_step=0, total_steps=steps,
    )
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=PadCollator({"input_ids": model.tokenizer.pad_token_id}), num_workers=0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    losses, start, cpu_start = [], None, None
    for step, batch in enumerate(loader):
        if step == 1:
            start, cpu_start = time.perf_counter(), time.process_time()
        loss = model(**batch.inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses, (steps - 1) / (time.perf_counter() - start), (steps - 1) / (time.process_time() - cpu_start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".cache" / "bench_feature_cache")
    parser.add_argument("--videos", type=int, default=32, help="training videos to generate (default 32)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per run (default 20)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, the CI machine)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from videovlm.data.formats import read_webvid_csv
    from videovlm.models import train_tokenizer
    from videovlm.train.data import MediaTextDataset
    from videovlm.train.feature_cache import FeatureCache, FrozenFront, cached_parts, model_namespace, precompute
    from videovlm.train.feature_cache_data import use_cached_features
    from videovlm.video.samplers import parse_sampler

    data = make_data(args.workdir, args.videos)
    records = read_webvid_csv(data / "train" / "captions.csv")
    tokenizer = train_tokenizer([r.caption for r in records] + ["describe the video briefly."], vocab_size=500)

    def dataset(model):
        return MediaTextDataset(records=records, media_path=lambda r: (r.video, True), encode=functools.partial(_encode, model.processor),
                                sampler=SAMPLER, train=True, seed=args.seed)

    online_model = build_model(tokenizer, args.seed)
    online_losses, online_rate, online_cpu_rate = run(online_model, dataset(online_model), steps=args.steps, batch_size=args.batch_size, seed=args.seed)

    model = build_model(tokenizer, args.seed)
    cache_dir = args.workdir / "cache"
    parts = cached_parts(model, STAGE1_TRAINABLE)  # vision + image Q-Former: both frozen in stage 1
    namespace = model_namespace(model, parts)
    started = time.perf_counter()
    report = precompute(cache=FeatureCache(cache_dir), namespace=namespace, front=FrozenFront(model, parts), processor=model.processor,
                        videos=[r.video for r in records], sampler=parse_sampler(SAMPLER), sampler_spec=SAMPLER)
    precompute_s = time.perf_counter() - started
    (cached,) = use_cached_features(model=model, datasets=[dataset(model)], cache_dir=cache_dir, trainable=STAGE1_TRAINABLE, on_miss="error")
    cached_losses, cached_rate, cached_cpu_rate = run(model, cached, steps=args.steps, batch_size=args.batch_size, seed=args.seed)

    diff = max(abs(a - b) for a, b in zip(online_losses, cached_losses))
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "model": "tiny Video-LLaMA (CLIP 128-d x4 @112px -> image Q-Former 8 queries x2 -> video Q-Former 8 queries x2 -> Llama 256-d x4), stage 1",
        "batch": f"{args.batch_size} x {SAMPLER}",
        "steps": args.steps,
        "online_steps_per_s": round(online_rate, 3),
        "cached_steps_per_s": round(cached_rate, 3),
        "speedup": round(cached_rate / online_rate, 2),
        "online_steps_per_cpu_s": round(online_cpu_rate, 3),
        "cached_steps_per_cpu_s": round(cached_cpu_rate, 3),
        "cpu_speedup": round(cached_cpu_rate / online_cpu_rate, 2),
        "precompute_s": round(precompute_s, 2),
        "precomputed_frames": report.computed + report.reused,
        "cache_hits": cached.hits,
        "cache_misses": cached.misses,
        "max_loss_abs_diff": diff,
        "first_losses": {"online": online_losses[:3], "cached": cached_losses[:3]},
    }
    print(json.dumps(result, indent=1))
    (args.workdir / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
