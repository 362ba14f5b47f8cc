"""Loading benchmark: a Video-LLaMA family model with a ~1B-parameter Llama LLM saved in bf16.

    python benchmarks/loading.py [--workdir DIR] [--layers 19] [--repeats 1]

Builds once (kept in --workdir): a family model (micro vision tower, 1-layer Video Q-Former,
Llama-config LLM of hidden 2048 / intermediate 5504 / --layers layers, ~0.95B parameters at
19) cast to bfloat16 and written with ``save_pretrained``, and the same LLM alone in plain
transformers format (``export_language_model``). Then, each in a fresh process, touching
every weight afterwards (a sum over each tensor, so lazily mapped pages count):

- ``videovlm.models.load_pretrained(dir)`` (meta-device build + in-place assignment),
- ``videovlm.models.load_pretrained`` with the pre-change path (build with random init, then
  copy the file into it), rebuilt here as the baseline the issue measured,
- ``transformers.AutoModelForCausalLM.from_pretrained(llm_dir, dtype="auto")``, the LLM alone.

Prints wall seconds, CPU seconds and peak RSS (and RSS above a bare ``import torch,
transformers`` process) next to the checkpoint's bytes, side by side in one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def build(workdir: Path, layers: int) -> tuple[Path, Path]:
    import torch
    from transformers import LlamaConfig

    from transformers import CLIPVisionConfig

    from videovlm.models import LanguageModelConfig, PixelConfig, VideoLlamaConfig, VideoLlamaModel, VisionTowerConfig, train_tokenizer

    family, llm = workdir / "family", workdir / "llm"
    if (family / "config.json").is_file() and (llm / "config.json").is_file():
        return family, llm
    tokenizer = train_tokenizer(["what is in the video? a red square moves left"], vocab_size=400)
    llama = LlamaConfig(hidden_size=2048, intermediate_size=5504, num_hidden_layers=layers, num_attention_heads=16, num_key_value_heads=16,
                        vocab_size=len(tokenizer), max_position_embeddings=2048, tie_word_embeddings=False,
                        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    clip = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16)
    config = VideoLlamaConfig(
        vision=VisionTowerConfig(hf_config=clip.to_dict(), pixel=PixelConfig(image_size=32)),
        llm=LanguageModelConfig(hf_config=llama.to_dict(), kind="causal"),
        temporal={"_component_": "videovlm.models.temporal.VideoQFormer", "num_queries": 8, "num_layers": 1, "num_heads": 4, "max_frames": 8},
        max_frames=8,
    )
    torch.manual_seed(0)
    model = VideoLlamaModel(config, tokenizer=tokenizer).to(torch.bfloat16)
    model.save_pretrained(family)
    model.export_language_model(llm)
    return family, llm


MEASURE = r"""
import json, sys, time
def hwm_kb():  # peak RSS of this process image (VmHWM: reset by exec, unlike ru_maxrss)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
t0, c0 = time.perf_counter(), time.process_time()
import torch, transformers
kind, path = sys.argv[1], sys.argv[2]
t1, c1 = time.perf_counter(), time.process_time()
base_rss = hwm_kb()
if kind == "videovlm":
    from videovlm.models import load_pretrained
    model = load_pretrained(path)
elif kind == "videovlm_random_init":
    from pathlib import Path
    from videovlm.models import VideoLlamaModel
    from videovlm.models.base import load_saved_tokenizer, read_config_json
    from videovlm.models.configs import config_from_dict
    from safetensors.torch import load_model
    directory = Path(path)
    config = config_from_dict(VideoLlamaModel.CONFIG_CLASS, read_config_json(directory), where=path)
    model = VideoLlamaModel(config, tokenizer=load_saved_tokenizer(directory))  # random init, float32
    load_model(model, str(directory / "model.safetensors"), strict=False)
elif kind == "transformers":
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype="auto")
elif kind != "bare":
    raise SystemExit(f"unknown kind {kind}")
if kind != "bare":
    with torch.no_grad():
        touched = sum(float(t.float().sum()) for t in model.state_dict().values())
t2, c2 = time.perf_counter(), time.process_time()
dtypes = sorted({str(p.dtype) for p in model.parameters()}) if kind != "bare" else []
print(json.dumps({"load_s": t2 - t1, "load_cpu_s": c2 - c1, "peak_rss_kb": hwm_kb(),
                  "import_rss_kb": base_rss, "dtypes": dtypes}))
"""


def measure(kind: str, path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", MEASURE, kind, str(path)], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind}: failed\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def folder_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("benchmark_loading"))
    parser.add_argument("--layers", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=1, help="runs per row (the best is shown)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    family, llm = build(args.workdir, args.layers)
    family_bytes, llm_bytes = folder_bytes(family, "model*.safetensors"), folder_bytes(llm, "model*.safetensors")
    bare = measure("bare", family)
    rows = [
        ("videovlm load_pretrained (meta + assign)", "videovlm", family, family_bytes),
        ("videovlm, pre-change path (random init + copy)", "videovlm_random_init", family, family_bytes),
        ("transformers from_pretrained (LLM alone)", "transformers", llm, llm_bytes),
    ]
    print(f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} cores; checkpoint {family_bytes / 2**30:.2f} GiB (family), {llm_bytes / 2**30:.2f} GiB (LLM)")
    print(f"# a bare `import torch, transformers` process peaks at {bare['peak_rss_kb'] / 2**20:.2f} GiB RSS")
    print("| loader | wall s | CPU s | peak RSS GiB | RSS above bare GiB | RSS / checkpoint | dtypes |")
    print("|---|---:|---:|---:|---:|---:|---|")
    results = {}
    for label, kind, path, nbytes in rows:
        runs = [measure(kind, path) for _ in range(args.repeats)]
        best = min(runs, key=lambda r: r["load_s"])
        results[kind] = best
        rss = best["peak_rss_kb"] * 1024
        above = rss - bare["peak_rss_kb"] * 1024
        print(f"| {label} | {best['load_s']:.1f} | {best['load_cpu_s']:.1f} | {rss / 2**30:.2f} | {above / 2**30:.2f} | {rss / nbytes:.2f} | {','.join(best['dtypes'])} |")
    ratio = results["videovlm"]["load_s"] / results["transformers"]["load_s"]
    print(f"\nvideovlm / transformers load time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
