"""``videovlm convert video-llama CKPT.pth --blip2 ID --llm ID --out DIR``: a released
Video-LLaMA checkpoint as a videovlm model folder (see ``videovlm.models.videollama.convert``).
A command module: it lives outside the packages recipe components may name."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="convert_command", metavar="FORMAT", required=True)
    vl = sub.add_parser("video-llama", help="a released Video-LLaMA .pth (DAMO-NLP-SG) -> a videovlm Video-LLaMA folder")
    vl.add_argument("checkpoint", type=Path, metavar="CKPT.pth", help="their {'model': state_dict} file (read with weights_only=True)")
    vl.add_argument("--blip2", default="Salesforce/blip2-flan-t5-xxl", help="BLIP-2 checkpoint (hub id or folder) with the EVA ViT-g and image Q-Former")
    vl.add_argument("--llm", required=True, help="the LLM the checkpoint was trained with (hub id or folder), e.g. a Vicuna-7B / LLaMA-2-7B-chat")
    vl.add_argument("--out", type=Path, required=True, help="folder to write (save_pretrained)")
    vl.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None, help="dtype of the tower and LLM (default: as loaded)")
    shape = vl.add_argument_group("video Q-Former shape (the defaults are the released checkpoints')")
    shape.add_argument("--video-queries", type=int, default=32, help="num_video_query_token (default 32)")
    shape.add_argument("--frame-positions", type=int, default=32, help="max_frame_pos (default 32)")
    shape.add_argument("--video-layers", type=int, default=2, help="video Q-Former layers (default 2)")
    shape.add_argument("--video-heads", type=int, default=12, help="attention heads (default 12, BERT-base)")
    shape.add_argument("--video-intermediate-size", type=int, default=3072, help="feed-forward width (default 3072, BERT-base)")


def run(args: argparse.Namespace) -> int:
    from videovlm.models.configs import ModelConfigError
    from videovlm.models.videollama import VideoLlamaModel
    from videovlm.models.videollama.convert import load_released
    from videovlm.models.videollama.presets import videollama_released
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        print(f"videovlm convert: --out {args.out} exists and is not an empty folder; give a new folder", file=sys.stderr)
        return 2
    try:
        config = videollama_released(
            blip2=args.blip2, llm=args.llm, dtype=args.dtype, num_video_queries=args.video_queries, max_frame_pos=args.frame_positions,
            video_layers=args.video_layers, video_heads=args.video_heads, video_intermediate_size=args.video_intermediate_size,
        )
        model = VideoLlamaModel(config)
        conversion = load_released(model, args.checkpoint)
        model.eval().save_pretrained(args.out)
    except (ModelConfigError, FileNotFoundError) as e:
        print(f"videovlm convert: {e}", file=sys.stderr)
        return 2
    print(f"converted {len(conversion.tensors)} tensors of {args.checkpoint} into {args.out} (skipped {len(conversion.skipped)}: audio branch / constant buffers)")
    return 0
