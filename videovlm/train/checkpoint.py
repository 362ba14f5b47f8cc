"""Checkpoints: safetensors + JSON for everything we write, keep-last-K, exact resume.

Layout of ``output_dir/<stage>/checkpoint-<step>/``:

- ``model.safetensors``: the full (consolidated, also under ZeRO-3) model state dict;
- ``trainer_state.json``: step, data position, loss history, world size, config digest;
- ``rng_state_rank<R>.safetensors``: torch / numpy / python RNG states of each rank;
- ``optimizer_full.safetensors`` (ZeRO 1-2): every trainable parameter's fp32 master weight
  and optimizer state tensors, whole (DeepSpeed's ``safe_get_full_*``), so that a run can
  resume on another number of ranks (``load_checkpoint``);
- ``deepspeed/``: optimizer, scheduler and partitioned states via DeepSpeed's own
  ``save_checkpoint``. DeepSpeed writes them with ``torch.save`` and reads them with
  ``torch.load(weights_only=False)``, i.e. full unpickling: a file planted in a run folder
  would run code on ``resume=true``. ``load_checkpoint`` therefore reads them only as
  weights (``torch.load`` forced to ``weights_only=True`` for every call DeepSpeed makes,
  with the three plain DeepSpeed classes its states contain as the only allowed globals) and
  refuses anything else with a ``CheckpointError`` naming the file.

A checkpoint is written to ``checkpoint-<step>.tmp`` and renamed when every rank is done,
so a run killed mid-save leaves no half checkpoint that resume would pick.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from videovlm.train.distributed import DistInfo, barrier

DEEPSPEED_TAG = "state"
OPTIMIZER_FULL = "optimizer_full.safetensors"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
FORCE_NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


class CheckpointError(RuntimeError):
    """A checkpoint is missing a file or does not match the run that loads it."""


def checkpoint_dirs(stage_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a stage as (step, path), oldest first."""
    if not stage_dir.is_dir():
        return []
    found = []
    for child in stage_dir.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and child.is_dir() and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(stage_dir: Path) -> Path | None:
    found = checkpoint_dirs(stage_dir)
    return found[-1][1] if found else None


def consolidated_state_dict(engine: Any) -> dict[str, torch.Tensor] | None:
    """The full model state dict on rank 0 (None elsewhere). Collective under ZeRO-3."""
    if engine.zero_optimization_partition_weights():
        return engine._zero3_consolidated_16bit_state_dict()
    if torch.distributed.get_rank() != 0:
        return None
    return engine.module.state_dict()


def save_state_dict(state: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors refuses tensors that share memory (tied embeddings): copy the repeats."""
    seen: set[tuple[int, int]] = set()
    plain: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu()
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        plain[key] = tensor.clone().contiguous() if ident in seen else tensor.contiguous()
        seen.add(ident)
    save_file(plain, str(path), metadata={"format": "pt"})


def _rng_tensors() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    version, mt_state, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    tensors = {
        "torch_cpu": torch.get_rng_state(),
        "python_mt": torch.tensor(mt_state, dtype=torch.int64),
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
    }
    if torch.cuda.is_available():
        tensors["torch_cuda"] = torch.cuda.get_rng_state()
    metadata = {
        "python_version": str(version),
        "python_gauss": json.dumps(gauss),
        "numpy": json.dumps({"kind": np_kind, "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)}),
    }
    return tensors, metadata


def _restore_rng(path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])
    random.setstate((int(metadata["python_version"]), tuple(int(x) for x in tensors["python_mt"].tolist()), json.loads(metadata["python_gauss"])))
    np_meta = json.loads(metadata["numpy"])
    np.random.set_state((np_meta["kind"], tensors["numpy_keys"].numpy().astype(np.uint32), np_meta["pos"], np_meta["has_gauss"], np_meta["gauss"]))


def save_checkpoint(
    engine: Any, *, stage_dir: Path, step: int, trainer_state: dict[str, Any], dist: DistInfo, keep_last: int, elastic: bool = True
) -> Path:
    """Write ``checkpoint-<step>`` (collective: every rank calls it) and prune old ones.
    ``elastic``: also ``optimizer_full.safetensors`` (ZeRO 1-2), for a resume on another world size."""
    final = stage_dir / f"checkpoint-{step}"
    tmp = stage_dir / f"checkpoint-{step}.tmp"
    if dist.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    engine.save_checkpoint(str(tmp / "deepspeed"), tag=DEEPSPEED_TAG, save_latest=False)
    full_optimizer = full_optimizer_state(engine) if elastic else None  # collective
    if dist.is_main and full_optimizer is not None:
        save_file(full_optimizer, str(tmp / OPTIMIZER_FULL))
    state = consolidated_state_dict(engine)
    rng, rng_meta = _rng_tensors()
    save_file(rng, str(tmp / f"rng_state_rank{dist.rank}.safetensors"), metadata=rng_meta)
    if dist.is_main:
        assert state is not None
        save_state_dict(state, tmp / "model.safetensors")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1))
    barrier()
    if dist.is_main:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for _, old in checkpoint_dirs(stage_dir)[:-keep_last]:
            shutil.rmtree(old)
    barrier()
    return final


def deepspeed_state_globals() -> list[Any]:
    """The non-tensor classes DeepSpeed's checkpoint files hold (found with
    ``torch.serialization.get_unsafe_globals_in_checkpoint`` on ZeRO 0-3, fp32/bf16, with and
    without optimizer offload): plain records, no code runs when they are rebuilt."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Every ``torch.load`` inside loads weights only, whatever ``weights_only`` its caller passes
    (``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` is read by torch at each call), with DeepSpeed's record
    classes allowed. Restores the environment afterwards."""
    saved = {key: os.environ.get(key) for key in (FORCE_WEIGHTS_ONLY, FORCE_NO_WEIGHTS_ONLY)}
    os.environ[FORCE_WEIGHTS_ONLY] = "1"
    os.environ.pop(FORCE_NO_WEIGHTS_ONLY, None)  # torch refuses both set; ours wins
    try:
        with torch.serialization.safe_globals(deepspeed_state_globals()):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's trainer_state.json; ``CheckpointError`` when missing or not an object."""
    state_path = checkpoint / "trainer_state.json"
    try:
        trainer_state = json.loads(state_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{checkpoint}: missing trainer_state.json (incomplete checkpoint?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{state_path}: not valid JSON ({error})") from None
    if not isinstance(trainer_state, dict):
        raise CheckpointError(f"{state_path}: expected a JSON object")
    return trainer_state


def check_world_change(checkpoint: Path, trainer_state: dict[str, Any], *, world_size: int, global_batch: int) -> bool:
    """Whether resuming ``checkpoint`` on ``world_size`` ranks changes the number of ranks;
    raises ``CheckpointError`` when that cannot continue the run: a ZeRO-3 checkpoint (its
    parameters are partitioned by rank), or another global batch (the data position is the
    step only while micro x accumulation x world stays the same)."""
    saved = trainer_state.get("world_size")
    if saved == world_size:
        return False
    if trainer_state.get("zero_stage") not in (0, 1, 2):
        raise CheckpointError(
            f"{checkpoint}: saved with world_size={saved} at ZeRO stage {trainer_state.get('zero_stage')}, resuming with "
            f"{world_size}; only ZeRO 0-2 checkpoints resume on another number of ranks (ZeRO-3 partitions the parameters)"
        )
    if trainer_state.get("global_batch") != global_batch:
        raise CheckpointError(
            f"{checkpoint}: saved with a global batch of {trainer_state.get('global_batch')} (world_size={saved}), this run's is "
            f"{global_batch} on {world_size} ranks; set gradient_accumulation_steps so that micro_batch_size x "
            "gradient_accumulation_steps x world_size is the same, and the run continues where it stopped"
        )
    return True


def load_checkpoint(engine: Any, checkpoint: Path, *, dist: DistInfo, global_batch: int | None = None) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG state; return trainer_state.json.

    On the same number of ranks the resume is exact. On another (ZeRO 0-2, same global batch)
    DeepSpeed merges and re-partitions the elastic optimizer state, and each rank's RNG is
    seeded from (its saved seed, step, rank): the losses continue to float noise, dropout
    masks are new."""
    trainer_state = read_trainer_state(checkpoint)
    changed = check_world_change(checkpoint, trainer_state, world_size=dist.world_size, global_batch=global_batch or trainer_state.get("global_batch"))
    rng_path = checkpoint / f"rng_state_rank{dist.rank}.safetensors"
    needed = [checkpoint / "deepspeed" / DEEPSPEED_TAG, *([] if changed else [rng_path])]
    for path in needed:
        if not path.exists():
            raise CheckpointError(f"{checkpoint}: missing {path.name} (incomplete checkpoint or different world size?)")
    if changed and engine.zero_optimization_stage() in (1, 2):
        if not (checkpoint / OPTIMIZER_FULL).is_file():
            raise CheckpointError(
                f"{checkpoint}: missing {OPTIMIZER_FULL}, which a resume on another number of ranks needs "
                "(the run was saved with elastic_checkpoints=false: resume it on its own number of ranks)"
            )
        with weights_only_loads():
            _load_module_and_schedule(engine, checkpoint, step=int(trainer_state.get("step", 0)))
        set_full_optimizer_state(engine, load_file(str(checkpoint / OPTIMIZER_FULL)), step=int(trainer_state.get("step", 0)))
        _reseed(int(trainer_state.get("data_seed", 0)), int(trainer_state.get("step", 0)), dist.rank)
        return trainer_state
    try:
        with weights_only_loads():
            loaded, _ = engine.load_checkpoint(str(checkpoint / "deepspeed"), tag=DEEPSPEED_TAG)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0]
        raise CheckpointError(
            f"{checkpoint / 'deepspeed'}: refused to load a DeepSpeed state file that is not plain tensors and records "
            f"(it would run code when unpickled): {reason}"
        ) from None
    if loaded is None:
        raise CheckpointError(f"{checkpoint}: DeepSpeed could not load its state from {checkpoint / 'deepspeed'}")
    if changed:
        _reseed(int(trainer_state.get("data_seed", 0)), int(trainer_state.get("step", 0)), dist.rank)
    else:
        _restore_rng(rng_path)
    return trainer_state


def _reseed(seed: int, step: int, rank: int) -> None:
    """RNG streams of a rank after a change of world size: a pure function of (seed, step, rank)."""
    words = np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint32)
    value = int(words[0]) << 32 | int(words[1])
    random.seed(value)
    np.random.seed(int(words[0]))
    torch.manual_seed(value)


# --------------------------------------------------------------------------------------
# Elastic resume (ZeRO 1-2 on another number of ranks)


def _optimizer_state_keys(engine: Any) -> list[str]:
    """The tensor states the (base) optimizer keeps per parameter, e.g. AdamW's exp_avg and
    exp_avg_sq (none before its first step)."""
    base = getattr(engine.optimizer, "optimizer", engine.optimizer)
    for state in base.state.values():
        return sorted(k for k, v in state.items() if torch.is_tensor(v) and k != "step" and v.ndim > 0)
    return []


def full_optimizer_state(engine: Any) -> dict[str, torch.Tensor] | None:
    """Collective under ZeRO 1-2 (every rank calls it; None otherwise): each trainable
    parameter's whole fp32 master weight (``<name>::fp32``) and optimizer states
    (``<name>::exp_avg`` ...), gathered by DeepSpeed's ``safe_get_full_*``; world-size free."""
    if engine.zero_optimization_stage() not in (1, 2):
        return None
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    keys = _optimizer_state_keys(engine)
    out: dict[str, torch.Tensor] = {}
    for name, param in engine.module.named_parameters():
        if not param.requires_grad:
            continue
        out[f"{name}::fp32"] = safe_get_full_fp32_param(param).detach().cpu().contiguous()
        for key in keys:
            value = safe_get_full_optimizer_state(param, key)
            if value is not None:
                out[f"{name}::{key}"] = value.detach().cpu().contiguous()
    return out


def set_full_optimizer_state(engine: Any, tensors: dict[str, torch.Tensor], *, step: int) -> None:
    """Scatter ``full_optimizer_state``'s tensors into this run's partitions (DeepSpeed's
    ``safe_set_full_*``) and set the optimizer's step count to ``step``."""
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

    keys = sorted({name.rsplit("::", 1)[1] for name in tensors} - {"fp32"})
    _create_optimizer_state(engine)
    for name, param in engine.module.named_parameters():
        if not param.requires_grad:
            continue
        if f"{name}::fp32" not in tensors:
            raise CheckpointError(f"{OPTIMIZER_FULL}: no state for trainable parameter {name!r} (trained with other trainable parts?)")
        safe_set_full_fp32_param(param, tensors[f"{name}::fp32"])
        for key in keys:
            if f"{name}::{key}" in tensors:
                safe_set_full_optimizer_state(param, tensors[f"{name}::{key}"], key)
    base = getattr(engine.optimizer, "optimizer", engine.optimizer)
    for state in base.state.values():
        if "step" in state:
            state["step"] = torch.full_like(state["step"], float(step)) if torch.is_tensor(state["step"]) else step


def _create_optimizer_state(engine: Any) -> None:
    """torch optimizers create their state at the first step, and DeepSpeed links each
    parameter's fragment of it after that step: make both happen now with a step that moves
    nothing (learning rate 0, zero gradients), so the saved state has somewhere to go."""
    zero = engine.optimizer
    base = getattr(zero, "optimizer", zero)
    if not base.state:
        rates = [group["lr"] for group in base.param_groups]
        for group in base.param_groups:
            group["lr"] = 0.0
            for flat in group["params"]:
                flat.grad = torch.zeros_like(flat)
        base.step()
        for group, rate in zip(base.param_groups, rates):
            group["lr"] = rate
            for flat in group["params"]:
                flat.grad = None
    link = getattr(zero, "_lazy_init_hp_params_optimizer_state", None)
    if link is None:
        raise CheckpointError(f"this DeepSpeed ({type(zero).__name__}) cannot link optimizer state to parameters; resume on the same number of ranks")
    link()


def _load_module_and_schedule(engine: Any, checkpoint: Path, *, step: int) -> None:
    """The module weights (DeepSpeed, module only) and the LR scheduler's position."""
    loaded, _ = engine.load_checkpoint(str(checkpoint / "deepspeed"), tag=DEEPSPEED_TAG, load_module_only=True)
    if loaded is None:
        raise CheckpointError(f"{checkpoint}: DeepSpeed could not load the module from {checkpoint / 'deepspeed'}")
    states = sorted((checkpoint / "deepspeed" / DEEPSPEED_TAG).glob("mp_rank_*_model_states.pt"))
    if states and engine.lr_scheduler is not None:
        saved = torch.load(states[0], map_location="cpu", weights_only=True)
        if saved.get("lr_scheduler") is not None:
            engine.lr_scheduler.load_state_dict(saved["lr_scheduler"])
            # The optimizer's own learning rates (a full load restores them with its state).
            for group, lr in zip(engine.optimizer.param_groups, engine.lr_scheduler.get_last_lr()):
                group["lr"] = lr
    engine.global_steps = step
    engine.global_samples = step * engine.train_batch_size()
