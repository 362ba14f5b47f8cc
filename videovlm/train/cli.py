"""``videovlm train RECIPE.yaml [key=value ...]``.

The same command runs in one process or under a launcher::

    videovlm train recipes/videollama/tiny.yaml stages.0.steps=50
    torchrun --nproc_per_node 2 -m videovlm train recipes/videollama/tiny.yaml
    deepspeed --num_gpus 2 --module videovlm train recipes/videollama/tiny.yaml
    accelerate launch --multi_gpu --num_processes 2 -m videovlm train recipes/videollama/tiny.yaml
    torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 -m videovlm train ...

Exit codes: 0 done, 1 training stopped (too many unreadable videos, checkpoint mismatch),
2 invalid recipe or usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from videovlm.train.instantiate import DEFAULT_ALLOWED_PACKAGES, ComponentError


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the resolved plan (components, parameter counts, DeepSpeed config, stages) and exit")
    parser.add_argument(
        "--allow-package",
        action="append",
        default=[],
        metavar="PREFIX",
        help=f"also allow _component_ paths under this package (default allow-list: {', '.join(DEFAULT_ALLOWED_PACKAGES)})",
    )
    # The deepspeed launcher passes --local_rank; LOCAL_RANK in the env says the same.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML (see recipes/*/*.yaml)")
    # Overrides and options may be mixed in any order after the recipe; argparse alone
    # stops collecting positionals at the first option, so the tail is parsed in run().
    parser.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        metavar="key=value",
        help="override config values, e.g. stages.0.steps=10 deepspeed.zero_stage=3 (options may follow)",
    )
    _add_options(parser)


def _parse_tail(args: argparse.Namespace) -> argparse.Namespace:
    tail = argparse.ArgumentParser(prog="videovlm train RECIPE", add_help=False)
    tail.add_argument("overrides", nargs="*")
    _add_options(tail)
    extra = tail.parse_intermixed_args(args.overrides)
    bad = [o for o in extra.overrides if "=" not in o]
    if bad:
        tail.error(f"expected key=value overrides, got {bad[0]!r}")
    return argparse.Namespace(
        recipe=args.recipe,
        overrides=extra.overrides,
        dry_run=args.dry_run or extra.dry_run,
        allow_package=[*args.allow_package, *extra.allow_package],
        local_rank=extra.local_rank if extra.local_rank is not None else args.local_rank,
    )


def _setup_logging() -> None:
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=logging.INFO if rank == "0" else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    from videovlm.train.checkpoint import CheckpointError
    from videovlm.train.config import ConfigError, load_config
    from videovlm.train.data import DataError, TooManySkippedError

    args = _parse_tail(args)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    _setup_logging()
    allowed = (*DEFAULT_ALLOWED_PACKAGES, *args.allow_package)
    try:
        config = load_config(args.recipe, args.overrides, allowed_packages=allowed)
    except (ConfigError, ComponentError) as error:
        print(f"videovlm train: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        from videovlm.train.plan import build_plan, format_plan

        print(format_plan(build_plan(config, allowed_packages=allowed)))
        return 0
    from videovlm.train.engine import Trainer
    from videovlm.train.stages import TrainingError

    try:
        results = Trainer(config, allowed_packages=allowed).run()
    except (TooManySkippedError, TrainingError, CheckpointError, DataError) as error:
        print(f"videovlm train: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        for result in results:
            eval_text = f", eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else ""
            print(f"stage {result.name}: {result.steps} steps{eval_text}, skipped {result.skipped}/{result.seen} items -> {result.final_dir}")
    return 0
