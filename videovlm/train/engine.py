"""The training loop: stages on a DeepSpeed ZeRO engine, checkpoints, exact resume.

Per stage: build the model (stage 0 from the recipe's ``model`` component, later stages
from the previous stage's ``final/`` through the model class's ``from_pretrained``), train
only the stage's parts, wrap in DeepSpeed with a client optimizer and a warmup + cosine
``LambdaLR``, run ``steps`` optimizer steps, checkpoint every N steps, evaluate on the
validation split, save ``final/`` with ``save_pretrained``. Building a stage's model and
datasets lives in ``videovlm.train.stages``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from videovlm.train.checkpoint import consolidated_state_dict, latest_checkpoint, load_checkpoint, save_checkpoint
from videovlm.train.config import TrainConfig, StageConfig, config_to_dict
from videovlm.train.data import (
    CollatedBatch,
    MixedDataset,
    PadCollator,
    ShardedEvalSampler,
    SkippedItem,
    StepBatchSampler,
    TooManySkippedError,
)
from videovlm.train.deepspeed_config import build_deepspeed_config
from videovlm.train.feature_cache_data import apply_feature_cache
from videovlm.train.distributed import DistInfo, barrier, init_distributed
from videovlm.train.instantiate import DEFAULT_ALLOWED_PACKAGES, instantiate
from videovlm.train.metrics import MetricsLogger, plot_loss_curve, read_metrics
from videovlm.train.parts import apply_trainable_parts, model_processor, trainable_parts_in_eval
from videovlm.train.datasets.shards import ShardBatches, is_shard_stage, keep_batch
from videovlm.train.stages import STAGE_MARKER, TrainingError, build_datasets, build_stage_model, class_path
from videovlm.train.zero3 import describe_partitioning, precision_warning, transformers_zero3, zero_stage

log = logging.getLogger("videovlm.train")


@dataclass
class StageResult:
    name: str
    steps: int
    final_dir: Path
    eval_loss: float | None
    skipped: int
    seen: int


@dataclass
class _StageSetup:
    """What ``Trainer._setup_stage`` built for one stage, for its train and finish steps."""

    stage_dir: Path
    final_dir: Path
    model: nn.Module
    engine: Any  # the DeepSpeed engine wrapping ``model``
    train_set: MixedDataset | None  # None when the stage streams shards (``videovlm.train.datasets.shards``)
    train_sets: list[Any]
    val_sets: list[Any]
    checkpoint: Path | None  # the checkpoint resumed from
    start_step: int
    skipped_total: int
    seen_total: int
    data_position: dict[str, Any] | None = None  # the checkpoint's, on resume


def warmup_cosine(*, warmup_steps: int, total_steps: int, min_lr_ratio: float):
    """LR multiplier: linear 0 -> 1 over ``warmup_steps``, then cosine 1 -> ``min_lr_ratio``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Runs every stage of a validated ``TrainConfig``."""

    def __init__(self, config: TrainConfig, *, allowed_packages: Sequence[str] = DEFAULT_ALLOWED_PACKAGES):
        self.config = config
        self.allowed_packages = tuple(allowed_packages)
        self.dist: DistInfo | None = None

    def run(self) -> list[StageResult]:
        self.dist = init_distributed()
        config = self.config
        if self.dist.is_main:
            config.output_dir.mkdir(parents=True, exist_ok=True)
            (config.output_dir / "config.json").write_text(json.dumps(config_to_dict(config), indent=1))
        results: list[StageResult] = []
        previous_final: Path | None = None
        for index, stage in enumerate(config.stages):
            result = self._run_stage(index, stage, previous_final)
            results.append(result)
            previous_final = result.final_dir
        return results

    # ----------------------------------------------------------------------------------

    def _run_stage(self, index: int, stage: StageConfig, previous_final: Path | None) -> StageResult:
        """One stage, recipe style: skip it if already finished, else set up, train, finish."""
        assert self.dist is not None
        finished = self._finished_stage(stage)
        if finished is not None:
            return finished
        ds_config = build_deepspeed_config(self.config.deepspeed, stage, world_size=self.dist.world_size)
        with transformers_zero3(ds_config):  # ZeRO-3: the backbones are built and loaded partitioned
            setup = self._setup_stage(index, stage, previous_final, ds_config)
            loop = self._train_stage(index, stage, setup)
            return self._finish_stage(stage, setup, loop, previous_final)

    def _finished_stage(self, stage: StageConfig) -> StageResult | None:
        """The recorded result of a stage whose ``final/`` marker exists (resume only), else None."""
        config = self.config
        stage_dir = config.output_dir / stage.name
        final_dir = stage_dir / "final"
        if not (final_dir / STAGE_MARKER).is_file():
            return None
        if not config.resume:
            raise TrainingError(f"{stage_dir}: stage {stage.name!r} already finished; set resume=true to continue the run or change output_dir")
        done = json.loads((final_dir / STAGE_MARKER).read_text())
        log.info("stage %s: already complete, skipping", stage.name)
        return StageResult(stage.name, done["steps"], final_dir, done.get("eval_loss"), done["skipped"], done["seen"])

    def _setup_stage(self, index: int, stage: StageConfig, previous_final: Path | None, ds_config: dict[str, Any]) -> _StageSetup:
        """Model, datasets and DeepSpeed engine of a stage, restored from its latest checkpoint on resume."""
        import deepspeed

        config, dist = self.config, self.dist
        assert dist is not None
        stage_dir = config.output_dir / stage.name
        checkpoint = latest_checkpoint(stage_dir) if config.resume else None
        if not config.resume and latest_checkpoint(stage_dir) is not None:
            raise TrainingError(f"{stage_dir}: has checkpoints from an earlier run; set resume=true to continue it or change output_dir")

        seed_everything(config.seed + index)
        model = build_stage_model(config, previous_final, allowed_packages=self.allowed_packages)
        if zero_stage(ds_config) == 3:
            log.info("stage %s: %s", stage.name, describe_partitioning(model, rank=dist.rank))
            if (warning := precision_warning(model, ds_config)) is not None:
                log.warning("stage %s: %s", stage.name, warning)
        apply_trainable_parts(model, stage.trainable)
        if config.gradient_checkpointing:
            if not callable(getattr(model, "gradient_checkpointing_enable", None)):
                raise TrainingError(f"gradient_checkpointing: {class_path(model)} has no gradient_checkpointing_enable()")
            model.gradient_checkpointing_enable()
        processor = model_processor(model)
        train_sets = build_datasets(stage.data.train, processor=processor, train=True, seed=config.seed, allowed_packages=self.allowed_packages)
        val_sets = build_datasets(stage.data.val, processor=processor, train=False, seed=config.seed, allowed_packages=self.allowed_packages)
        train_sets, val_sets = apply_feature_cache(config=config, stage=stage, model=model, train_sets=train_sets, val_sets=val_sets)
        train_set = None if is_shard_stage(train_sets, stage=stage.name) else MixedDataset(train_sets)

        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise TrainingError(f"stage {stage.name!r}: no trainable parameters (trainable={stage.trainable})")
        optimizer = instantiate(config.optimizer, allowed_packages=self.allowed_packages, params=params, lr=stage.lr)
        schedule = warmup_cosine(warmup_steps=stage.warmup_steps, total_steps=stage.steps, min_lr_ratio=stage.min_lr_ratio)
        engine, _, _, _ = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
            config=ds_config,
            dist_init_required=False,
        )
        trainable_parts_in_eval(model, stage.trainable)  # DeepSpeed's .train() woke the frozen parts

        start_step, skipped_total, seen_total, position = 0, 0, 0, None
        if checkpoint is not None:
            global_batch = stage.micro_batch_size * stage.gradient_accumulation_steps * dist.world_size
            state = load_checkpoint(engine, checkpoint, dist=dist, global_batch=global_batch)
            start_step, skipped_total, seen_total, position = state["step"], state["skipped_total"], state["seen_total"], state.get("data_position")
            log.info("stage %s: resumed from %s (step %d)", stage.name, checkpoint, start_step)
        return _StageSetup(stage_dir, stage_dir / "final", model, engine, train_set, train_sets, val_sets, checkpoint, start_step, skipped_total, seen_total, position)

    def _train_stage(self, index: int, stage: StageConfig, setup: _StageSetup) -> _StageLoop:
        """The stage's optimizer steps from ``setup.start_step`` on; returns the finished loop."""
        config, dist = self.config, self.dist
        assert dist is not None
        batches, loader = self._train_loader(index, stage, setup)
        metrics = MetricsLogger(
            setup.stage_dir,
            enabled=dist.is_main,
            resume_step=setup.start_step if setup.checkpoint is not None else None,
            tensorboard_dir=(config.output_dir / "tensorboard" / stage.name) if config.tensorboard else None,
        )
        loop = _StageLoop(self, setup.engine, stage, setup.stage_dir, batches, metrics, setup.skipped_total, setup.seen_total)
        loop.train(iter(loader), setup.start_step)
        return loop

    def _train_loader(self, index: int, stage: StageConfig, setup: _StageSetup) -> tuple[StepBatchSampler | ShardBatches, DataLoader]:
        """The stage's batch plan and its DataLoader, from ``setup.start_step`` on."""
        config, dist = self.config, self.dist
        assert dist is not None
        common = {
            "seed": config.seed + index,
            "micro_batch_size": stage.micro_batch_size,
            "gradient_accumulation_steps": stage.gradient_accumulation_steps,
            "rank": dist.rank,
            "world_size": dist.world_size,
            "start_step": setup.start_step,
            "stage": stage.name,
        }
        if setup.train_set is None:  # shard streams: the dataset itself batches, split by webdataset
            streamed = ShardBatches(setup.train_sets, stage.data.weights, num_workers=config.num_workers, **common)
            saved = setup.data_position
            if saved is not None and saved.get("world_size", streamed.world) != streamed.world:
                raise TrainingError(
                    f"stage {stage.name!r}: the checkpoint streamed shards on world_size={saved.get('world_size')}, this run has "
                    f"{streamed.world}: webdataset would split the shards differently; resume shard streams on the same number of ranks"
                )
            if saved is not None and saved.get("num_workers") != streamed.workers:
                raise TrainingError(
                    f"stage {stage.name!r}: the checkpoint streamed shards with num_workers={saved.get('num_workers')}, "
                    f"this run has {streamed.workers}: the shards would be split differently; resume with the same num_workers"
                )
            # A generator of its own, as below (the workers' seeds must not draw from the global RNG).
            loader = DataLoader(streamed, batch_size=None, collate_fn=keep_batch, num_workers=config.num_workers, generator=torch.Generator().manual_seed(config.seed))
            return streamed, loader
        train_set = setup.train_set
        batches = StepBatchSampler(sizes=train_set.sizes, weights=stage.data.weights, total_steps=stage.steps, **common)
        loader = DataLoader(
            train_set,
            batch_sampler=batches,
            collate_fn=PadCollator(train_set.pad_values),
            num_workers=config.num_workers,
            # Its own generator: creating the iterator must not draw from the global RNG
            # (that would shift dropout after a resume).
            generator=torch.Generator().manual_seed(config.seed),
        )
        return batches, loader

    def _finish_stage(self, stage: StageConfig, setup: _StageSetup, loop: _StageLoop, previous_final: Path | None) -> StageResult:
        """Final evaluation, ``final/`` with its stage marker, the loss curve."""
        config, dist = self.config, self.dist
        assert dist is not None
        engine, model, metrics, stage_dir = setup.engine, setup.model, loop.metrics, setup.stage_dir
        eval_loss = self._evaluate(engine, stage, setup.val_sets) if setup.val_sets else None
        if eval_loss is not None:
            metrics.log({"step": stage.steps, "eval_loss": eval_loss})
            log.info("stage %s: eval loss %.4f", stage.name, eval_loss)
        metrics.close()
        marker = {
            "stage": stage.name,
            "steps": stage.steps,
            # A training-time variant (e.g. the feature-cache one) names the class it saves as.
            "model_class": class_path(type(model)),
            "eval_loss": eval_loss,
            "skipped": loop.skipped_total,
            "seen": loop.seen_total,
            "trainable": stage.trainable,
            # The frame sampler the model was trained with: `videovlm qa` uses it by default.
            "sampler": next((d.sampler_spec for d in setup.train_sets if hasattr(d, "sampler_spec")), None),
            # ... and the size its frames were decoded at (None: full size), for `videovlm qa` too.
            "decode_size": next((_jsonable(d.decode_size) for d in setup.train_sets if getattr(d, "decode_size", None) is not None), None),
        }
        self._save_final(engine, model, setup.final_dir, marker, save_options(config.save, model, stage.trainable, previous_final))
        if dist.is_main:
            plot_loss_curve(metrics.path, stage_dir / "loss_curve.png", title=f"{config.output_dir.name} / {stage.name}")
        barrier()
        return StageResult(stage.name, stage.steps, setup.final_dir, eval_loss, loop.skipped_total, loop.seen_total)

    def _evaluate(self, engine: Any, stage: StageConfig, val_sets: list[Any]) -> float:
        dist = self.dist
        assert dist is not None
        val_set = MixedDataset(val_sets)
        loader = DataLoader(
            val_set,
            batch_sampler=ShardedEvalSampler(
                size=len(val_set), batch_size=stage.micro_batch_size, rank=dist.rank, world_size=dist.world_size, max_batches=stage.eval_max_batches
            ),
            collate_fn=PadCollator(val_set.pad_values),
            num_workers=self.config.num_workers,
        )
        engine.eval()
        totals = torch.zeros(2, dtype=torch.float64)  # loss x items, items
        with torch.no_grad():
            for batch in loader:
                if batch.num_items:
                    loss = engine(**_to_device(batch.inputs, engine), **stage.forward_kwargs).loss
                    totals += torch.tensor([loss.item() * batch.num_items, batch.num_items], dtype=torch.float64)
        engine.train()
        trainable_parts_in_eval(engine.module, stage.trainable)
        totals = _all_reduce_sum(totals, engine)
        return float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")

    def _save_final(self, engine: Any, model: nn.Module, final_dir: Path, marker: dict[str, Any], options: dict[str, Any]) -> None:
        """``save_pretrained(**options)`` of the model (under ZeRO-3 from the consolidated weights)."""
        import deepspeed

        from videovlm.models.base import VideoFamilyModel

        dist = self.dist
        assert dist is not None
        tmp = final_dir.with_name(final_dir.name + ".tmp")
        if dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        barrier()
        if engine.zero_optimization_partition_weights() and isinstance(model, VideoFamilyModel):
            state = consolidated_state_dict(engine)  # whole on rank 0 only, gathered one module at a time
            if dist.is_main:
                model.save_pretrained(tmp, state_dict=state, **options)
        elif engine.zero_optimization_partition_weights():  # any other model: its own save_pretrained, every parameter gathered
            with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
                if dist.is_main:
                    model.save_pretrained(tmp, **options)
        elif dist.is_main:
            model.save_pretrained(tmp, **options)
        if dist.is_main:
            (tmp / STAGE_MARKER).write_text(json.dumps(marker, indent=1))
            shutil.rmtree(final_dir, ignore_errors=True)
            tmp.rename(final_dir)
        barrier()


def save_options(save, model: nn.Module, trainable: Sequence[str] | None, previous_final: Path | None) -> dict[str, Any]:
    """``save_pretrained`` keywords from the recipe's ``save`` section (``SaveConfig``): none
    by default, so any model with a plain ``save_pretrained(directory)`` works."""
    from videovlm.models.base import VideoFamilyModel

    options: dict[str, Any] = {}
    if save.max_shard_size is not None:
        options["max_shard_size"] = save.max_shard_size
    if save.trainable_only and previous_final is not None and trainable is not None:
        # The stage's tmp folder sits beside final/, so the relative base path stays right.
        options.update(parts=list(trainable), base=previous_final)
    if options and not isinstance(model, VideoFamilyModel):
        raise TrainingError(f"save: {', '.join(options)} needs a videovlm family model; {class_path(type(model))} saves with save_pretrained(directory) only")
    return options


def _jsonable(size: Any) -> Any:
    return size if isinstance(size, int) else list(size)


def _to_device(inputs: dict[str, Any], engine: Any) -> dict[str, Any]:
    device = engine.device
    half = torch.bfloat16 if engine.bfloat16_enabled() else None
    moved = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device)
            if half is not None and value.is_floating_point():
                value = value.to(half)
        moved[key] = value
    return moved


def _all_reduce_sum(values: torch.Tensor, engine: Any) -> torch.Tensor:
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        on_device = values.to(engine.device)
        torch.distributed.all_reduce(on_device)
        return on_device.cpu()
    return values


class _StageLoop:
    """The optimizer-step loop of one stage (split out of Trainer for readability)."""

    def __init__(self, trainer: Trainer, engine: Any, stage: StageConfig, stage_dir: Path, batches: StepBatchSampler | ShardBatches, metrics: MetricsLogger, skipped_total: int, seen_total: int):
        self.trainer, self.engine, self.stage, self.stage_dir = trainer, engine, stage, stage_dir
        self.batches, self.metrics = batches, metrics
        self.skipped_total, self.seen_total = skipped_total, seen_total
        self.dist = trainer.dist
        self.fallback: dict[str, Any] | None = None  # last good micro-batch (see _micro_step)

    def train(self, data: Any, start_step: int) -> None:
        from tqdm.auto import tqdm

        config, stage, dist = self.trainer.config, self.stage, self.dist
        bar = tqdm(total=stage.steps, initial=start_step, desc=stage.name, unit="step", disable=not (dist.is_main and config.progress_bar), dynamic_ncols=True)
        last_saved = start_step
        self.engine.train()
        trainable_parts_in_eval(self.engine.module, stage.trainable)
        for step in range(start_step, stage.steps):
            began, cpu_began = time.perf_counter(), time.process_time()
            totals = torch.zeros(4, dtype=torch.float64)  # loss x items, items, skipped, seen
            for _ in range(stage.gradient_accumulation_steps):
                totals += self._micro_step(next(data))
            totals = _all_reduce_sum(totals, self.engine)
            self.skipped_total += int(totals[2])
            self.seen_total += int(totals[3])
            self._check_skips(final=step + 1 == stage.steps)
            elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
            loss = float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")
            done = step + 1
            if done % config.log_every == 0 or done == stage.steps:
                self.metrics.log(self._record(done, loss, totals, elapsed, cpu))
            bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{float(totals[1]) / elapsed:.1f}")
            bar.update(1)
            if (config.checkpoint_every and done % config.checkpoint_every == 0) or done == stage.steps:
                self._checkpoint(done)
                last_saved = done
        bar.close()
        if last_saved != stage.steps:
            self._checkpoint(stage.steps)

    def _micro_step(self, batch: CollatedBatch) -> torch.Tensor:
        self._log_skipped(batch.skipped)
        inputs = batch.inputs
        weight = 1.0
        if batch.num_items == 0:
            # Every item of this micro-batch was skipped. All ranks must still run the
            # forward/backward (ZeRO collectives), so repeat the last good batch with zero weight.
            if self.fallback is None:
                raise TooManySkippedError(
                    f"stage {self.stage.name!r}: rank {self.dist.rank}: every item of the first micro-batch was unreadable "
                    f"(see {self.stage_dir}/skipped_rank{self.dist.rank}.jsonl)"
                )
            inputs, weight = self.fallback, 0.0
        else:
            self.fallback = inputs
        output = self.engine(**_to_device(inputs, self.engine), **self.stage.forward_kwargs)
        loss = output.loss
        if loss is None:
            raise TrainingError(f"{class_path(self.engine.module)}.forward returned no loss: the batch has no labels?")
        self.engine.backward(loss * weight if weight != 1.0 else loss)
        self.engine.step()
        items = batch.num_items
        return torch.tensor([loss.item() * items, items, len(batch.skipped), items + len(batch.skipped)], dtype=torch.float64)

    def _log_skipped(self, skipped: list[SkippedItem]) -> None:
        if not skipped:
            return
        with (self.stage_dir / f"skipped_rank{self.dist.rank}.jsonl").open("a") as handle:
            for item in skipped:
                log.warning("skipped unreadable item %d (%s): %s", item.index, item.path, item.reason)
                handle.write(json.dumps({"index": item.index, "path": item.path, "reason": item.reason}) + "\n")

    def _check_skips(self, *, final: bool) -> None:
        config = self.trainer.config
        if self.seen_total == 0 or (self.seen_total < config.skip_check_after and not final):
            return
        fraction = self.skipped_total / self.seen_total
        if fraction > config.max_skip_fraction:
            raise TooManySkippedError(
                f"stage {self.stage.name!r}: skipped {self.skipped_total} of {self.seen_total} items "
                f"({fraction:.1%}) because their media could not be read, more than max_skip_fraction="
                f"{config.max_skip_fraction}; the list is in {self.stage_dir}/skipped_rank*.jsonl"
            )

    def _record(self, step: int, loss: float, totals: torch.Tensor, elapsed: float, cpu: float) -> dict[str, Any]:
        record: dict[str, Any] = {"step": step, "loss": loss, "lr": self.engine.get_lr()[0]}
        grad_norm = self.engine.get_global_grad_norm()
        if isinstance(grad_norm, (int, float)) or (isinstance(grad_norm, torch.Tensor) and grad_norm.numel() == 1):
            record["grad_norm"] = float(grad_norm)
        record.update({
            "items": int(totals[1]),
            "samples_per_s": float(totals[1]) / elapsed,
            "step_s": elapsed,  # wall time of the step: data, forward/backward, optimizer, loss all-reduce
            "step_cpu_s": cpu,  # CPU time of this process in that step (robust to other jobs on shared cores)
            "skipped_total": self.skipped_total,
            "seen_total": self.seen_total,
            **self.batches.position(step - 1),  # where this step read its batch
        })
        return record

    def _loss_history(self) -> list[list[float]]:
        """(step, loss) so far; rank 0 writes trainer_state.json and holds the metrics file."""
        if not self.dist.is_main:
            return []
        return [[r["step"], r["loss"]] for r in read_metrics(self.metrics.path) if "loss" in r]

    def _checkpoint(self, step: int) -> None:
        trainer_state = {
            "stage": self.stage.name,
            "step": step,
            "world_size": self.dist.world_size,
            "zero_stage": self.trainer.config.deepspeed.zero_stage,  # ZeRO 0-2 may resume on another world size
            "skipped_total": self.skipped_total,
            "seen_total": self.seen_total,
            "data_position": self.batches.position(step),
            "data_seed": self.batches.seed,
            "global_batch": self.batches.global_batch,
            "loss_history": self._loss_history(),
        }
        config = self.trainer.config
        save_checkpoint(self.engine, stage_dir=self.stage_dir, step=step, trainer_state=trainer_state, dist=self.dist, keep_last=config.keep_last, elastic=config.elastic_checkpoints)
