"""Process-group setup that works the same under every launcher.

- plain ``python``/``videovlm train``: no launcher env, so this sets a world of one
  (RANK=0, WORLD_SIZE=1, a free MASTER_PORT) — otherwise DeepSpeed tries mpi4py;
- ``torchrun`` and ``accelerate launch`` (which runs torchrun underneath): RANK,
  LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT are already set, on one node or many;
- the ``deepspeed`` launcher: sets the same variables and passes ``--local_rank`` (accepted
  by the CLI and ignored in favour of LOCAL_RANK).

On a machine without CUDA, DeepSpeed's CPU accelerator is selected and gloo is the backend.
"""

from __future__ import annotations

import importlib
import os
import socket
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    launcher: str  # "none", "torchrun", "deepspeed", "accelerate", "mpi"
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def detect_launcher(env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    if any(key.startswith("ACCELERATE_") for key in env) and "RANK" in env:
        return "accelerate"
    if "TORCHELASTIC_RUN_ID" in env or "TORCHELASTIC_RESTART_COUNT" in env:
        return "torchrun"
    if "RANK" in env and "WORLD_SIZE" in env:
        return "deepspeed"  # the deepspeed launcher (pdsh/local) sets these without the elastic vars
    if "OMPI_COMM_WORLD_RANK" in env or "PMI_RANK" in env:
        return "mpi"
    return "none"


def prepare_environment() -> str:
    """Set the env that DeepSpeed reads at import/init time. Returns the launcher name."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    launcher = detect_launcher()
    if launcher == "none":
        os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"})
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    return launcher


def init_distributed() -> DistInfo:
    """Initialise torch.distributed through DeepSpeed (idempotent)."""
    launcher = prepare_environment()
    import deepspeed

    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if not cuda:
        # The shared-memory comm op is a CPU-only speed-up that JIT-compiles C++ (~20 s) at
        # every init; gloo alone is correct, so skip the build.
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=launcher == "mpi")
    rank = torch.distributed.get_rank()
    world_size = torch.distributed.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, launcher=launcher, device=device, backend=backend)


def barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
