"""``python -m videovlm.train.backbones retrieval MODEL_DIR IMAGE_CAPTIONS_JSON``: zero-shot
image <-> text retrieval of the contrastive tiny tower."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from videovlm.train.backbones.contrastive import image_text_retrieval


def main(argv: list[str] | None = None) -> int:
    """``python -m videovlm.train.backbones retrieval MODEL_DIR IMAGE_CAPTIONS_JSON``."""
    parser = argparse.ArgumentParser(prog="python -m videovlm.train.backbones")
    sub = parser.add_subparsers(dest="command", required=True)
    retrieval = sub.add_parser("retrieval", help="zero-shot image<->text R@1/5/10 of a contrastive backbone")
    retrieval.add_argument("model_dir", type=Path)
    retrieval.add_argument("image_captions_json", type=Path)
    args = parser.parse_args(argv)
    print(json.dumps(image_text_retrieval(args.model_dir, args.image_captions_json), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
