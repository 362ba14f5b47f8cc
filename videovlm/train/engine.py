"""The training loop: stages on a DeepSpeed ZeRO engine, checkpoints, exact resume.

Per stage: build the model (stage 0 from the recipe's ``model`` component, later stages
from the previous stage's ``final/`` through the model class's ``from_pretrained``), train
only the stage's parts, wrap in DeepSpeed with a client optimizer and a warmup + cosine
``LambdaLR``, run ``steps`` optimizer steps, checkpoint every N steps, evaluate on the
validation split, save ``final/`` with ``save_pretrained``.
"""

from __future__ import annotations

import inspect
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

from videovlm.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
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
from videovlm.components import ComponentError, resolve_component
from videovlm.train.instantiate import DEFAULT_ALLOWED_PACKAGES, instantiate
from videovlm.train.metrics import MetricsLogger, plot_loss_curve, read_metrics
from videovlm.train.parts import apply_trainable_parts, model_processor, trainable_parts_in_eval

log = logging.getLogger("videovlm.train")

STAGE_MARKER = "training_stage.json"  # written into final/ last: the stage is complete


class TrainingError(RuntimeError):
    """The run cannot continue (existing outputs without resume, a model without the API...)."""


@dataclass
class StageResult:
    name: str
    steps: int
    final_dir: Path
    eval_loss: float | None
    skipped: int
    seen: int


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


def class_path(obj: Any) -> str:
    cls = obj if inspect.isclass(obj) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def build_stage_model(config: TrainConfig, previous_final: Path | None, *, allowed_packages: Sequence[str]) -> nn.Module:
    """Stage 0: the recipe's model component. Later: ``Class.from_pretrained(previous final)``."""
    if previous_final is None:
        model = instantiate(config.model, allowed_packages=allowed_packages)
    else:
        model = stage_model_class(previous_final, allowed_packages=allowed_packages).from_pretrained(previous_final)
    if not isinstance(model, nn.Module):
        raise TrainingError(f"model: {config.model.get('_component_')} returned {type(model).__name__}, not a torch nn.Module")
    for method in ("save_pretrained", "from_pretrained"):
        if not callable(getattr(model, method, None)):
            raise TrainingError(f"model: {class_path(model)} has no {method}(); stages hand weights on through save_pretrained/from_pretrained")
    return model


def stage_model_class(final_dir: Path, *, allowed_packages: Sequence[str]) -> type[nn.Module]:
    """The model class a finished stage recorded in ``final/training_stage.json``. The file
    sits in the run folder, so it is checked like a recipe: an allowed ``nn.Module`` class."""
    marker_path = final_dir / STAGE_MARKER
    try:
        marker = json.loads(marker_path.read_text())
        path = marker["model_class"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise TrainingError(f"{marker_path}: not a readable stage marker with a 'model_class' ({type(error).__name__}: {error})") from None
    try:
        cls = resolve_component(path, allowed=allowed_packages, where=str(marker_path))
    except ComponentError as error:
        raise TrainingError(str(error)) from None
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise TrainingError(f"{marker_path}: model_class {path!r} is not a torch nn.Module class")
    return cls


def build_datasets(components: Sequence[dict], *, processor: Any, train: bool, seed: int, allowed_packages: Sequence[str]) -> list[Any]:
    """Instantiate dataset components, passing the engine's arguments each one accepts."""
    datasets = []
    for component in components:
        target = resolve_component(component["_component_"], allowed=allowed_packages)
        params = inspect.signature(target).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())  # forwards **kwargs to its base
        offered = {"processor": processor, "train": train, "seed": seed}
        extra = {k: v for k, v in offered.items() if (takes_any or k in params) and k not in component}
        datasets.append(instantiate(component, allowed_packages=allowed_packages, **extra))
    return datasets


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
        import deepspeed

        config, dist = self.config, self.dist
        assert dist is not None
        stage_dir = config.output_dir / stage.name
        final_dir = stage_dir / "final"
        if (final_dir / STAGE_MARKER).is_file():
            if not config.resume:
                raise TrainingError(f"{stage_dir}: stage {stage.name!r} already finished; set resume=true to continue the run or change output_dir")
            done = json.loads((final_dir / STAGE_MARKER).read_text())
            log.info("stage %s: already complete, skipping", stage.name)
            return StageResult(stage.name, done["steps"], final_dir, done.get("eval_loss"), done["skipped"], done["seen"])
        checkpoint = latest_checkpoint(stage_dir) if config.resume else None
        if not config.resume and latest_checkpoint(stage_dir) is not None:
            raise TrainingError(f"{stage_dir}: has checkpoints from an earlier run; set resume=true to continue it or change output_dir")

        seed_everything(config.seed + index)
        model = build_stage_model(config, previous_final, allowed_packages=self.allowed_packages)
        apply_trainable_parts(model, stage.trainable)
        if config.gradient_checkpointing:
            if not callable(getattr(model, "gradient_checkpointing_enable", None)):
                raise TrainingError(f"gradient_checkpointing: {class_path(model)} has no gradient_checkpointing_enable()")
            model.gradient_checkpointing_enable()
        processor = model_processor(model)
        train_sets = build_datasets(stage.data.train, processor=processor, train=True, seed=config.seed, allowed_packages=self.allowed_packages)
        val_sets = build_datasets(stage.data.val, processor=processor, train=False, seed=config.seed, allowed_packages=self.allowed_packages)
        model, train_sets, val_sets = apply_feature_cache(config=config, stage=stage, model=model, train_sets=train_sets, val_sets=val_sets)
        train_set = MixedDataset(train_sets)

        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise TrainingError(f"stage {stage.name!r}: no trainable parameters (trainable={stage.trainable})")
        optimizer = instantiate(config.optimizer, allowed_packages=self.allowed_packages, params=params, lr=stage.lr)
        schedule = warmup_cosine(warmup_steps=stage.warmup_steps, total_steps=stage.steps, min_lr_ratio=stage.min_lr_ratio)
        ds_config = build_deepspeed_config(config.deepspeed, stage, world_size=dist.world_size)
        engine, _, _, _ = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
            config=ds_config,
            dist_init_required=False,
        )
        trainable_parts_in_eval(model, stage.trainable)  # DeepSpeed's .train() woke the frozen parts

        start_step, skipped_total, seen_total = 0, 0, 0
        if checkpoint is not None:
            state = load_checkpoint(engine, checkpoint, dist=dist)
            start_step, skipped_total, seen_total = state["step"], state["skipped_total"], state["seen_total"]
            log.info("stage %s: resumed from %s (step %d)", stage.name, checkpoint, start_step)

        batches = StepBatchSampler(
            sizes=train_set.sizes,
            weights=stage.data.weights,
            seed=config.seed + index,
            micro_batch_size=stage.micro_batch_size,
            gradient_accumulation_steps=stage.gradient_accumulation_steps,
            rank=dist.rank,
            world_size=dist.world_size,
            start_step=start_step,
            total_steps=stage.steps,
            stage=stage.name,
        )
        loader = DataLoader(
            train_set,
            batch_sampler=batches,
            collate_fn=PadCollator(train_set.pad_values),
            num_workers=config.num_workers,
            # Its own generator: creating the iterator must not draw from the global RNG
            # (that would shift dropout after a resume).
            generator=torch.Generator().manual_seed(config.seed),
        )
        metrics = MetricsLogger(
            stage_dir,
            enabled=dist.is_main,
            resume_step=start_step if checkpoint is not None else None,
            tensorboard_dir=(config.output_dir / "tensorboard" / stage.name) if config.tensorboard else None,
        )
        loop = _StageLoop(self, engine, stage, stage_dir, batches, metrics, skipped_total, seen_total)
        loop.train(iter(loader), start_step)
        eval_loss = self._evaluate(engine, stage, val_sets) if val_sets else None
        if eval_loss is not None:
            metrics.log({"step": stage.steps, "eval_loss": eval_loss})
            log.info("stage %s: eval loss %.4f", stage.name, eval_loss)
        metrics.close()
        marker = {
            "stage": stage.name,
            "steps": stage.steps,
            # A training-time variant (e.g. the feature-cache one) names the class it saves as.
            "model_class": class_path(getattr(model, "checkpoint_class", type(model))),
            "eval_loss": eval_loss,
            "skipped": loop.skipped_total,
            "seen": loop.seen_total,
            "trainable": stage.trainable,
            # The frame sampler the model was trained with: `videovlm qa` uses it by default.
            "sampler": next((d.sampler_spec for d in train_sets if hasattr(d, "sampler_spec")), None),
        }
        self._save_final(engine, model, final_dir, marker)
        if dist.is_main:
            plot_loss_curve(metrics.path, stage_dir / "loss_curve.png", title=f"{config.output_dir.name} / {stage.name}")
        barrier()
        return StageResult(stage.name, stage.steps, final_dir, eval_loss, loop.skipped_total, loop.seen_total)

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

    def _save_final(self, engine: Any, model: nn.Module, final_dir: Path, marker: dict[str, Any]) -> None:
        """``save_pretrained`` of the full model (ZeRO-3 parameters gathered first)."""
        import deepspeed

        dist = self.dist
        assert dist is not None
        tmp = final_dir.with_name(final_dir.name + ".tmp")
        if dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        barrier()
        if engine.zero_optimization_partition_weights():
            with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
                if dist.is_main:
                    model.save_pretrained(tmp)
        elif dist.is_main:
            model.save_pretrained(tmp)
        if dist.is_main:
            (tmp / STAGE_MARKER).write_text(json.dumps(marker, indent=1))
            shutil.rmtree(final_dir, ignore_errors=True)
            tmp.rename(final_dir)
        barrier()


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

    def __init__(self, trainer: Trainer, engine: Any, stage: StageConfig, stage_dir: Path, batches: StepBatchSampler, metrics: MetricsLogger, skipped_total: int, seen_total: int):
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
            "skipped_total": self.skipped_total,
            "seen_total": self.seen_total,
            "data_position": self.batches.position(step),
            "data_seed": self.batches.seed,
            "global_batch": self.batches.global_batch,
            "loss_history": self._loss_history(),
        }
        save_checkpoint(self.engine, stage_dir=self.stage_dir, step=step, trainer_state=trainer_state, dist=self.dist, keep_last=self.trainer.config.keep_last)
