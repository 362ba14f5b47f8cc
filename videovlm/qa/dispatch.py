"""A model too large for one device, placed across the GPUs, the CPU and the disk by accelerate
(``VideoQA.from_pretrained(..., device_map="auto")``, ``videovlm qa --device-map auto``).

accelerate's ``infer_auto_device_map`` fills the devices in module order (GPU 0, GPU 1, ...,
then CPU, then disk) within ``max_memory``, and ``dispatch_model`` hooks every placed module so
its inputs move to where it runs; disk-placed weights are written to ``offload_folder`` and
read back for each forward. The family's own parts (vision tower, Q-Formers, projection) are
each kept whole and, coming first, land on the first device unless it is too small; the
language model is split between its decoder layers (its ``_no_split_modules``), as transformers
does. The families' forwards bring tensors to the device of the embeddings they join.
The weights pass through CPU memory once while loading.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from videovlm.qa.frames import QAInputError

log = logging.getLogger(__name__)

DEVICE_MAPS = ("auto", "balanced", "sequential")


def no_split_module_classes(model: nn.Module) -> list[str]:
    """Classes accelerate must not cut across devices: the language model's decoder layers
    (transformers' ``_no_split_modules``) and each of the family's other top-level parts."""
    from videovlm.models.language import unwrap_lora

    language = unwrap_lora(model.language_model())
    names = set(getattr(language, "_no_split_modules", None) or [])
    for child in model.children():
        if child is not model.language_model():
            names.add(type(child).__name__)
    return sorted(names)


def parse_max_memory(text: str | None) -> dict[int | str, int | str] | None:
    """``"0=20GiB,1=20GiB,cpu=60GiB"`` -> accelerate's ``max_memory`` ({0: "20GiB", ..., "cpu": "60GiB"});
    a plain number is bytes."""
    if text is None:
        return None
    limits: dict[int | str, int | str] = {}
    for entry in text.split(","):
        device, sep, amount = entry.strip().partition("=")
        if not sep or not amount:
            raise QAInputError(f"--max-memory: expected DEVICE=AMOUNT entries like 0=20GiB,cpu=60GiB, got {entry!r}")
        limits[int(device) if device.isdigit() else device] = int(amount) if amount.isdigit() else amount  # bytes, or "20GiB"
    return limits


def check_max_memory(max_memory: dict) -> None:
    """Devices that exist (GPU indices below the count, ``cpu``) and amounts accelerate reads."""
    from accelerate.utils import convert_file_size_to_int

    gpus = torch.cuda.device_count()
    for device, amount in max_memory.items():
        if not (device == "cpu" or (isinstance(device, int) and 0 <= device < gpus)):
            raise QAInputError(f"max_memory: no device {device!r} here (GPU indices 0..{gpus - 1}, or cpu)" if gpus else f"max_memory: no device {device!r} here (no GPU: only cpu)")
        try:
            convert_file_size_to_int(amount)
        except (ValueError, TypeError):
            raise QAInputError(f"max_memory: {device}={amount!r} is not an amount (bytes, or e.g. 20GiB)") from None


def prepare_offload_folder(folder: Path) -> None:
    """accelerate writes ``index.json`` and one ``.dat`` file per weight into the offload folder,
    and *reuses* a folder that already has an ``index.json``: so the folder must be new, empty
    or an earlier offload folder, whose listed files are removed first (another model's weights
    are never read back); nothing else is ever deleted."""
    if folder.exists() and not folder.is_dir():
        raise QAInputError(f"offload_folder: {folder} is a file; give a folder for the offloaded weights")
    if folder.is_dir() and any(folder.iterdir()):
        index = folder / "index.json"
        try:
            listed = {f"{name}.dat" for name in json.loads(index.read_text())}
        except (OSError, ValueError, TypeError):
            raise QAInputError(f"offload_folder: {folder} is not empty and not an earlier offload folder; give a new or empty folder") from None
        others = sorted(p.name for p in folder.iterdir() if p.name != "index.json" and (p.name not in listed or not p.is_file()))
        if others:
            raise QAInputError(f"offload_folder: {folder} holds other files ({others[0]!r}, ...); give a new or empty folder")
        for name in [*listed, "index.json"]:
            (folder / name).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)


def dispatch(model: nn.Module, *, device_map: str, max_memory: dict | None = None, offload_folder: str | Path | None = None) -> nn.Module:
    """Place ``model`` (loaded on the CPU) across the devices; returns the dispatched model,
    whose ``hf_device_map`` is the placement (module name -> device)."""
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    if device_map not in DEVICE_MAPS:
        raise QAInputError(f"device_map: expected one of {', '.join(DEVICE_MAPS)}, got {device_map!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise QAInputError("device_map: one process places the model across all the devices; under torchrun give each process its own device (--device auto) instead")
    if max_memory is not None:
        check_max_memory(max_memory)
    no_split = no_split_module_classes(model)
    if device_map != "sequential":
        max_memory = get_balanced_memory(model, max_memory=max_memory, no_split_module_classes=no_split, low_zero=False)
    placement = infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=no_split)
    disk = "disk" in placement.values()
    if disk and offload_folder is None:
        raise QAInputError(f"device_map: the model does not fit in max_memory {max_memory}, and offloading the rest to disk needs an offload folder (--offload-folder)")
    if disk:
        prepare_offload_folder(Path(offload_folder))
    model = dispatch_model(model, device_map=placement, offload_dir=str(offload_folder) if disk else None)
    log.info("device map: %s", ", ".join(f"{name or 'model'}={device}" for name, device in placement.items()))
    return model

def input_device(model: nn.Module) -> torch.device:
    """Where a dispatched model's inputs go: the first GPU in its placement (accelerate runs
    the CPU- and disk-held parts there too), else the CPU. accelerate's hooks move every
    module's inputs to where it runs, so this only saves a copy."""
    gpus = [device for device in model.hf_device_map.values() if device not in ("cpu", "disk")]
    if not gpus:
        return torch.device("cpu")
    return torch.device("cuda", gpus[0]) if isinstance(gpus[0], int) else torch.device(gpus[0])
