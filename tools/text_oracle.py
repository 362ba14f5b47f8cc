"""Can a frozen LLM answer from the true caption? The text oracle of the Video-LLaMA recipes.

    python tools/text_oracle.py --llm runs/backbones/llm_copy/mixed/final --data data/synth/val
    python tools/text_oracle.py --llm videovlm/assets/backbones/llm --data data/synth/val --limit 600

Every question of a synthetic split is asked in the Video-LLaMA template with the video's
caption where the video tokens would go (``###Human: {caption} {question}###Assistant:``) and
answered greedily by the LLM alone; exact match (the eval's normalisation) per question type
and per number of objects in the video. A frozen LLM that cannot answer from the caption cannot
answer from video tokens that stand in for it: this is the ceiling of a perfect stage 1.

Diagnostic only (docs/results.md cites its output); prints a table, writes nothing.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", type=Path, required=True, help="a causal LM folder with its tokenizer")
    parser.add_argument("--data", type=Path, required=True, help="a synthetic split folder (captions.csv, qa.json, annotations.jsonl)")
    parser.add_argument("--limit", type=int, default=None, help="the first N questions only")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--show-wrong", type=int, default=0, help="print this many wrong answers")
    args = parser.parse_args()

    from transformers import AutoTokenizer, LlamaForCausalLM

    from videovlm.data.formats import read_annotations_jsonl, read_qa_json, read_webvid_csv
    from videovlm.eval.normalize import normalize_answer
    from videovlm.models.processing import Turn
    from videovlm.models.videollama import ChatTemplateConfig, encode_chat

    tokenizer = AutoTokenizer.from_pretrained(args.llm)
    model = LlamaForCausalLM.from_pretrained(args.llm).eval()
    captions = {r.video_id: r.caption for r in read_webvid_csv(args.data / "captions.csv", check_files=False)}
    objects = {a.video_id: len(a.objects) for a in read_annotations_jsonl(args.data / "annotations.jsonl", check_files=False)}
    items = read_qa_json(args.data / "qa.json", check_files=False)[: args.limit]
    template = ChatTemplateConfig()
    right: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    wrong = []
    for start in range(0, len(items), args.batch_size):
        chunk = items[start : start + args.batch_size]
        prompts = [encode_chat(tokenizer, template, [Turn("human", f"{captions[i.video_id]} {i.question}")], where=i.video_id, generation=True)[0] for i in chunk]
        longest = max(map(len, prompts))
        ids = torch.tensor([[tokenizer.pad_token_id] * (longest - len(p)) + p for p in prompts])  # left padding
        mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for item, new in zip(chunk, out[:, longest:]):
            answer = tokenizer.decode(new, skip_special_tokens=True).split(template.human_marker)[0].strip()
            ok = normalize_answer(answer) == normalize_answer(item.answer)
            for key in (item.type, (item.type, objects[item.video_id])):
                total[key] += 1
                right[key] += ok
            if not ok and len(wrong) < args.show_wrong:
                wrong.append((captions[item.video_id], item.question, item.answer, answer))
    types = sorted(k for k in total if isinstance(k, str))
    print(f"text oracle of {args.llm} on {len(items)} questions of {args.data}")
    print(f"{'type':<10} {'all':>6} " + " ".join(f"{n} obj".rjust(7) for n in (1, 2, 3)))
    for name in types:
        cells = [f"{100 * right[(name, n)] / total[(name, n)]:6.1f}%" if total[(name, n)] else "      -" for n in (1, 2, 3)]
        print(f"{name:<10} {100 * right[name] / total[name]:5.1f}% " + " ".join(cells))
    print(f"{'overall':<10} {100 * sum(right[t] for t in types) / len(items):5.1f}%")
    for caption, question, expected, got in wrong:
        print(f"  {caption} | {question} -> {got!r} (expected {expected!r})")


if __name__ == "__main__":
    main()
