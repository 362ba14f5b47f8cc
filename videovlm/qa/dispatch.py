"""A model too large for one device, placed across the GPUs, the CPU and the disk by accelerate
(``VideoQA.from_pretrained(..., device_map="auto")``, ``videovlm qa --device-map auto``).

accelerate's ``infer_auto_device_map`` fills the devices in module order (GPU 0, GPU 1, ...,
then CPU, then disk) within ``max_memory``, and ``dispatch_model`` hooks every placed module so
its inputs move to where it runs; disk-placed weights are written to ``offload_folder`` and
read back for each forward. The family's own parts (vision tower, Q-Formers, projection) are
each kept whole and, coming first, land on the first device with the embeddings; the language
model is split between its decoder layers (its ``_no_split_modules``), as transformers does.
The weights pass through CPU memory once while loading.
"""

from __future__ import annotations

import logging
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
            raise QAInputError(f"max_memory: expected DEVICE=AMOUNT entries like 0=20GiB,cpu=60GiB, got {entry!r}")
        limits[int(device) if device.isdigit() else device] = int(amount) if amount.isdigit() else amount  # bytes, or "20GiB"
    unknown = [d for d in limits if isinstance(d, str) and d not in ("cpu", "mps")]
    if unknown:
        raise QAInputError(f"max_memory: unknown device {unknown[0]!r} (GPU indices, cpu)")
    return limits


def prepare_offload_folder(folder: Path) -> None:
    """accelerate writes ``index.json`` and one ``.dat`` file per weight into the offload folder,
    and *reuses* a folder that already has an ``index.json``: so the folder must be new, empty
    or an earlier offload folder, whose files are removed first (another model's weights are
    never read back), and no user file is replaced."""
    if folder.exists() and not folder.is_dir():
        raise QAInputError(f"offload_folder: {folder} is a file; give a folder for the offloaded weights")
    if folder.is_dir():
        others = sorted(p.name for p in folder.iterdir() if p.name != "index.json" and p.suffix != ".dat")
        if others:
            raise QAInputError(f"offload_folder: {folder} holds other files ({others[0]!r}, ...); give a new or empty folder")
        for stale in folder.iterdir():
            stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def dispatch(model: nn.Module, *, device_map: str, max_memory: dict | None = None, offload_folder: str | Path | None = None) -> nn.Module:
    """Place ``model`` (loaded on the CPU) across the devices; returns the dispatched model
    with ``hf_device_map`` set (the placement, module name -> device)."""
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    if device_map not in DEVICE_MAPS:
        raise QAInputError(f"device_map: expected one of {', '.join(DEVICE_MAPS)}, got {device_map!r}")
    no_split = no_split_module_classes(model)
    if device_map != "sequential":
        max_memory = get_balanced_memory(model, max_memory=max_memory, no_split_module_classes=no_split, low_zero=False)
    placement = infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=no_split)
    if "disk" in placement.values() and offload_folder is None:
        raise QAInputError(f"device_map: the model does not fit in max_memory {max_memory}, and offloading the rest to disk needs an offload folder (--offload-folder)")
    if offload_folder is not None:
        prepare_offload_folder(Path(offload_folder))
    model = dispatch_model(model, device_map=placement, offload_dir=None if offload_folder is None else str(offload_folder))
    model.hf_device_map = placement
    log.info("device map: %s", ", ".join(f"{name or 'model'}={device}" for name, device in placement.items()))
    return model


def input_device(model: nn.Module) -> torch.device:
    """Where a dispatched model's inputs go: the device its first part runs on (the CPU for
    parts held on the CPU or the disk, which accelerate runs on the CPU when no GPU is used)."""
    placement = getattr(model, "hf_device_map")
    first = next(iter(placement.values()))
    if first in ("cpu", "disk"):
        return torch.device("cpu")
    return torch.device("cuda", first) if isinstance(first, int) else torch.device(first)
