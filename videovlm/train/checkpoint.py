"""Checkpoints: safetensors + JSON for everything we write, keep-last-K, exact resume.

Layout of ``output_dir/<stage>/checkpoint-<step>/``:

- ``model.safetensors``: the full (consolidated, also under ZeRO-3) model state dict;
- ``trainer_state.json``: step, data position, loss history, world size, config digest;
- ``rng_state_rank<R>.safetensors``: torch / numpy / python RNG states of each rank;
- ``deepspeed/``: optimizer, scheduler and partitioned states via DeepSpeed's own
  ``save_checkpoint`` (DeepSpeed writes and reads these files; we never unpickle anything).

A checkpoint is written to ``checkpoint-<step>.tmp`` and renamed when every rank is done,
so a run killed mid-save leaves no half checkpoint that resume would pick.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from videovlm.train.distributed import DistInfo, barrier

DEEPSPEED_TAG = "state"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


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


def load_checkpoint(engine: Any, checkpoint: Path, *, dist: DistInfo) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG state; return trainer_state.json."""
    state_path = checkpoint / "trainer_state.json"
    rng_path = checkpoint / f"rng_state_rank{dist.rank}.safetensors"
    for needed in (state_path, rng_path, checkpoint / "deepspeed" / DEEPSPEED_TAG):
        if not needed.exists():
            raise CheckpointError(f"{checkpoint}: missing {needed.name} (incomplete checkpoint or different world size?)")
    trainer_state = json.loads(state_path.read_text())
    if trainer_state.get("world_size") != dist.world_size:
        raise CheckpointError(
            f"{checkpoint}: saved with world_size={trainer_state.get('world_size')}, resuming with {dist.world_size}; "
            "exact resume needs the same number of ranks"
        )
    loaded, _ = engine.load_checkpoint(str(checkpoint / "deepspeed"), tag=DEEPSPEED_TAG)
    if loaded is None:
        raise CheckpointError(f"{checkpoint}: DeepSpeed could not load its state from {checkpoint / 'deepspeed'}")
    _restore_rng(rng_path)
    return trainer_state
