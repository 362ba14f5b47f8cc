"""Per-type accuracy of a Video-LLaMA stage trained with ``objective: answer_readout``, read out
the way that stage trains (the video tokens' logits under the frozen LLM's output embeddings,
against each question's first answer token), on the recipe's first-stage val QA file:

    python tools/readout_accuracy.py recipes/videollama/tiny.yaml runs/videollama/tiny/readout/final

It separates the Q-Former from the LLM: a type right here and wrong in `videovlm eval` is lost
through the LLM (docs/results.md). Reads the recipe's feature cache (``features: cached``).
Diagnostic only: prints one line, writes nothing.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from videovlm.data.formats import read_qa_json
from videovlm.models.base import IGNORE_INDEX
from videovlm.train.config import apply_overrides, load_yaml, validate
from videovlm.train.data import MixedDataset, PadCollator, ShardedEvalSampler
from videovlm.train.stages import build_datasets, stage_model_class
from videovlm.train.feature_cache_data import apply_feature_cache
from videovlm.train.instantiate import DEFAULT_ALLOWED_PACKAGES
from videovlm.train.parts import model_processor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("final", type=Path, help="the readout stage's final/ folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    config = validate(apply_overrides(load_yaml(args.recipe), args.overrides), source=str(args.recipe))
    stage = config.stages[0]
    model = stage_model_class(args.final, allowed_packages=DEFAULT_ALLOWED_PACKAGES).from_pretrained(args.final).eval()
    val = build_datasets(stage.data.val[:1], processor=model_processor(model), train=False, seed=config.seed, allowed_packages=DEFAULT_ALLOWED_PACKAGES)
    _, val = apply_feature_cache(config=config, stage=stage, model=model, train_sets=[], val_sets=val)
    records = read_qa_json(stage.data.val[0]["path"], check_files=False)
    data = MixedDataset(val)
    loader = DataLoader(data, batch_sampler=ShardedEvalSampler(size=len(data), batch_size=64, rank=0, world_size=1), collate_fn=PadCollator(data.pad_values))
    hits, totals, row = Counter(), Counter(), 0
    with torch.no_grad():
        for batch in loader:
            labels = batch.inputs["labels"]
            first = labels.gather(1, (labels != IGNORE_INDEX).long().argmax(1, keepdim=True)).squeeze(1)  # (B,)
            predicted = model(**batch.inputs, objective="answer_readout").logits.argmax(-1)  # (B,)
            for guess, truth in zip(predicted.tolist(), first.tolist()):
                kind = records[row].type
                row += 1
                totals[kind] += 1
                hits[kind] += int(guess == truth)
    print(" ".join(f"{kind} {100 * hits[kind] / totals[kind]:.1f}" for kind in sorted(totals)), f"({row} questions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
