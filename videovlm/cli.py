"""The ``videovlm`` command line.

Each subcommand lives in the module that does the work; that module exposes
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``videovlm --help`` stays fast and a missing optional dependency of one
command never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand -> (module, one-line help). Explicit on purpose: grep finds every command.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("videovlm.video.extract", "sample frames from videos into jpg/png folders or webdataset shards"),
    "data": ("videovlm.data.cli", "generate and inspect data sets (e.g. the synthetic default)"),
    "train": ("videovlm.train.cli", "train a recipe: videovlm train RECIPE.yaml [key=value ...]"),
    "qa": ("videovlm.qa.cli", "answer questions about videos with a trained model"),
    "eval": ("videovlm.eval.cli", "evaluate a trained model (qa, caption, retrieval, pope)"),
    "convert": ("videovlm.convert_cli", "convert released checkpoints: videovlm convert video-llama CKPT.pth --llm ID --out DIR"),
    "cache-features": ("videovlm.train.feature_cache_cli", "precompute frozen vision features for a recipe"),
    "quickstart": ("videovlm.quickstart", "synthetic data -> tiny backbones -> Video-LLaMA -> QA answer and accuracy"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videovlm",
        description="Extend an image vision-language model into video.",
    )
    from videovlm import __version__

    parser.add_argument("--version", action="version", version=f"videovlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported; the others get a bare parser so
    # that `videovlm --help` lists them all.
    chosen = next((a for a in (argv or []) if a in SUBCOMMANDS), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as e:
                if e.name and e.name.startswith("videovlm"):
                    parser.exit(2, f"videovlm {name}: this command is not available in this build ({e.name})\n")
                raise
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # No videovlm command unpickles: every torch.load in this process and in the processes it
    # launches (torchrun ranks, DataLoader workers) loads weights only, whatever its caller
    # passes (torch reads this variable at each call). DeepSpeed's resume adds the record
    # classes it needs (videovlm.train.checkpoint.weights_only_loads).
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    # OpenMP threads that wait passively (set before torch is imported; a user's own setting
    # wins). Spinning threads made 2-thread training 4-6x slower whenever another process held
    # a core (a DataLoader worker, a second job): 2.0 -> 0.45 s per tower step measured.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    # The `deepspeed` launcher puts --local_rank=N right after the program, before the
    # subcommand; LOCAL_RANK in the env carries the same value, so drop it there.
    while argv and argv[0].startswith(("--local_rank=", "--local-rank=")):
        argv.pop(0)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
