"""Checkpoints: safetensors + JSON for everything we write, keep-last-K, exact resume.

Layout of ``output_dir/<stage>/checkpoint-<step>/``:

- ``model.safetensors``: the full (consolidated, also under ZeRO-3) model state dict;
- ``trainer_state.json``: step, data position, loss history, world size, config digest;
- ``rng_state_rank<R>.safetensors``: torch / numpy / python RNG states of each rank;
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


def save_checkpoint(engine: Any, *, stage_dir: Path, step: int, trainer_state: dict[str, Any], dist: DistInfo, keep_last: int) -> Path:
    """Write ``checkpoint-<step>`` (collective: every rank calls it) and prune old ones."""
    final = stage_dir / f"checkpoint-{step}"
    tmp = stage_dir / f"checkpoint-{step}.tmp"
    if dist.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    engine.save_checkpoint(str(tmp / "deepspeed"), tag=DEEPSPEED_TAG, save_latest=False)
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


def load_checkpoint(engine: Any, checkpoint: Path, *, dist: DistInfo) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG state; return trainer_state.json."""
    state_path = checkpoint / "trainer_state.json"
    rng_path = checkpoint / f"rng_state_rank{dist.rank}.safetensors"
    for needed in (state_path, rng_path, checkpoint / "deepspeed" / DEEPSPEED_TAG):
        if not needed.exists():
            raise CheckpointError(f"{checkpoint}: missing {needed.name} (incomplete checkpoint or different world size?)")
    try:
        trainer_state = json.loads(state_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{state_path}: not valid JSON ({error})") from None
    if not isinstance(trainer_state, dict):
        raise CheckpointError(f"{state_path}: expected a JSON object")
    if trainer_state.get("world_size") != dist.world_size:
        raise CheckpointError(
            f"{checkpoint}: saved with world_size={trainer_state.get('world_size')}, resuming with {dist.world_size}; "
            "exact resume needs the same number of ranks"
        )
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
    _restore_rng(rng_path)
    return trainer_state
