"""``videovlm cache-features --recipe RECIPE.yaml [--split train] [--stage NAME] [key=value ...]``.

Builds the recipe's model for the stage (stage 0 from the ``model`` component, a later stage
from the previous stage's ``final/``), runs its frozen front (vision tower, plus the image
Q-Former when the stage keeps it frozen) over every frame the stage's sampler can draw from
the split's videos, and stores the features in the cache folder (see
``videovlm.train.feature_cache``). Frames already cached for the same frozen weights are kept.

Recipe keys (top level), read here and by ``videovlm train``::

    features: cached            # online (default) | cached
    feature_cache:
      dir: runs/x/feature_cache # default: <output_dir>/feature_cache
      on_miss: compute          # compute (recompute missing/stale frames) | error (stop and say which)

Exit codes: 0 done (unreadable videos are listed; training skips them), 2 invalid recipe/usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from videovlm.train.config import cache_dir_of, load_config
from videovlm.train.instantiate import DEFAULT_ALLOWED_PACKAGES

SPLITS = ("train", "val")


def load_recipe(path: str | Path, overrides, *, allowed_packages):
    """(TrainConfig, cache folder) of a recipe: ``feature_cache.dir``, else ``<output_dir>/feature_cache``."""
    config = load_config(path, overrides, allowed_packages=allowed_packages)
    return config, cache_dir_of(config)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", required=True, type=Path, help="recipe YAML (the one `videovlm train` runs)")
    parser.add_argument("--split", choices=SPLITS, default="train", help="which data of the stage to cache (default train)")
    parser.add_argument("--stage", help="stage name (default: the first stage); a later stage needs the previous stage's final/")
    parser.add_argument("--cache-dir", type=Path, help="cache folder (default: feature_cache.dir of the recipe, else <output_dir>/feature_cache)")
    parser.add_argument("--allow-package", action="append", default=[], metavar="PREFIX", help="also allow _component_ paths under this package")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, as for videovlm train")


def _stage(config, name: str | None) -> tuple[int, Any]:
    if name is None:
        return 0, config.stages[0]
    for index, stage in enumerate(config.stages):
        if stage.name == name:
            return index, stage
    raise ValueError(f"--stage: no stage {name!r} in the recipe (stages: {', '.join(s.name for s in config.stages)})")


def cache_recipe_features(
    recipe: str | Path,
    overrides=(),
    *,
    split: str = "train",
    stage_name: str | None = None,
    cache_dir: Path | None = None,
    allowed_packages=DEFAULT_ALLOWED_PACKAGES,
    progress: bool = False,
):
    """Precompute the features of one split of one stage; returns (cache dir, namespace, reports)."""
    from videovlm.train.stages import STAGE_MARKER, build_datasets, build_stage_model
    from videovlm.train.feature_cache import FeatureCache, FrozenFront, cached_parts, model_namespace, precompute
    from videovlm.train.parts import model_processor

    config, default_dir = load_recipe(recipe, overrides, allowed_packages=allowed_packages)
    index, stage = _stage(config, stage_name)
    previous = None
    if index > 0:
        previous = Path(config.output_dir) / config.stages[index - 1].name / "final"
        if not (previous / STAGE_MARKER).is_file():
            raise FileNotFoundError(f"stage {stage.name!r} starts from {previous}, which does not exist yet: train stage {config.stages[index - 1].name!r} first")
    model = build_stage_model(config, previous, allowed_packages=allowed_packages).eval()
    parts = cached_parts(model, stage.trainable)
    components = getattr(stage.data, split)
    if not components:
        raise ValueError(f"stage {stage.name!r} has no {split} data to cache")
    datasets = build_datasets(components, processor=model_processor(model), train=split == "train", seed=config.seed, allowed_packages=allowed_packages)
    directory = cache_dir or default_dir
    cache = FeatureCache(directory)
    front = FrozenFront(model, parts)
    reports = []
    namespace = None
    for ds in datasets:
        for attribute in ("records", "media_path", "sampler", "sampler_spec"):
            if not hasattr(ds, attribute):
                raise ValueError(f"{type(ds).__name__}: not a media dataset (videovlm.train.data.MediaTextDataset); it has no {attribute!r}")
        decode_size = getattr(ds, "decode_size", None)
        namespace = model_namespace(model, parts, decode_size=decode_size)
        videos = [path for path, is_video in (ds.media_path(r) for r in ds.records) if is_video]
        reports.append(
            precompute(cache=cache, namespace=namespace, front=front, processor=model_processor(model), videos=videos,
                       sampler=ds.sampler, sampler_spec=ds.sampler_spec, decode_size=decode_size, progress=progress)
        )
    return directory, namespace, reports


def run(args: argparse.Namespace) -> int:
    from videovlm.components import ComponentError
    from videovlm.train.checkpoint import CheckpointError
    from videovlm.train.config import ConfigError
    from videovlm.train.stages import TrainingError
    from videovlm.train.feature_cache import FeatureCacheError

    allowed = (*DEFAULT_ALLOWED_PACKAGES, *args.allow_package)
    bad = [o for o in args.overrides if "=" not in o]
    try:
        if bad:
            raise ValueError(f"expected key=value overrides, got {bad[0]!r}")
        directory, namespace, reports = cache_recipe_features(
            args.recipe, args.overrides, split=args.split, stage_name=args.stage, cache_dir=args.cache_dir,
            allowed_packages=allowed, progress=not args.no_progress,
        )
    except (ConfigError, ComponentError, FeatureCacheError, TrainingError, CheckpointError, ValueError, OSError) as error:
        print(f"videovlm cache-features: {error}", file=sys.stderr)
        return 2
    computed = sum(r.computed for r in reports)
    reused = sum(r.reused for r in reports)
    failed = [f for r in reports for f in r.failed]
    print(f"{sum(r.videos for r in reports)} videos: {computed} frames computed, {reused} already cached -> {directory}")
    if namespace is not None:
        print(f"namespace {namespace.key}: {namespace.describe()}")
    for path, reason in failed[:10]:
        print(f"unreadable (training will skip it): {path}: {reason}", file=sys.stderr)
    if len(failed) > 10:
        print(f"... and {len(failed) - 10} more unreadable videos", file=sys.stderr)
    return 0
