"""A family model's weights on disk, written and read in transformers' layouts.

- one ``model.safetensors``, or with ``max_shard_size`` the sharded layout other tools read
  (``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``, split by
  ``huggingface_hub.split_torch_state_dict_into_shards`` as transformers does);
- a partial checkpoint: only some parts written (a stage's trainable parts; the frozen 7B LLM
  is not rewritten per stage), with ``weights_base.json`` naming the checkpoint folder whose
  weights fill the rest, loaded first.

Loading builds nothing twice: the model is constructed with ``accelerate.init_empty_weights``
(parameters on the meta device, no random init; buffers stay real, they are small and some
are not saved) and every tensor is assigned in place (``load_state_dict(assign=True)``), in
the saved dtype. Tied weights are tied again afterwards. Under ZeRO-3 (a model whose
transformers parts were built partitioned, see ``videovlm.models.partitioned``) each module's
parameters are gathered in turn, rank 0 copies the file's values in and DeepSpeed re-partitions
them from rank 0, so no rank ever holds more than its slice plus one module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from videovlm.models.configs import ModelConfigError
from videovlm.models.partitioned import full_shape, gathered, has_partitioned, is_partitioned, rank

WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
BASE_FILE = "weights_base.json"
SHARD_PATTERN = "model{suffix}.safetensors"  # transformers' names: model-00001-of-00003.safetensors


class WeightsFileError(ModelConfigError):
    """A weights file is unreadable (truncated, not safetensors), an index or base file is
    malformed, or the weights do not match the model its config.json describes."""


# --------------------------------------------------------------------------------------
# Tied tensors


def unshared_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as standalone tensors, each shared (tied) tensor stored once.

    ``safetensors.torch.save_model`` refuses parameters that are views into a larger buffer,
    which is how DeepSpeed ZeRO-1/2 lays out trainable parameters (one flat buffer per
    group). Tied weights are the same tensor (same address, shape and strides): of each such
    group the first name in sorted order is kept, the choice ``load_model`` expects."""
    return unshared(model.state_dict())


def unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``unshared_state_dict`` of a state dict already taken (e.g. DeepSpeed's consolidated
    ZeRO-3 one, whose tied entries are one tensor too)."""
    return {name: state[name].detach().contiguous().clone() for name in unshared_names(state)}


def unshared_names(state: dict[str, torch.Tensor]) -> list[str]:
    """The names ``unshared_state_dict`` keeps: the first (sorted) name of each tied group."""
    kept: dict[tuple, str] = {}
    for name in sorted(state):
        tensor = state[name]
        identity = (tensor.device, tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        kept.setdefault(identity, name)
    return sorted(kept.values())


def tied_groups(model: nn.Module) -> list[list[str]]:
    """Persistent state names that are one tensor (sorted; the first is the one saved), found by
    object identity, so it works on the meta device where every address is 0."""
    groups: dict[int, list[str]] = {}
    persistent = set(model.state_dict(keep_vars=True))
    for name, tensor in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        if name in persistent:
            groups.setdefault(id(tensor), []).append(name)
    return [sorted(set(names)) for names in groups.values()]


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (model.get_submodule(path) if path else model), leaf


def _retie(model: nn.Module, groups: Sequence[Sequence[str]]) -> None:
    """After ``assign=True`` only the saved name of a tied group holds the loaded tensor: point
    the others at it again."""
    for names in groups:
        source_module, source_leaf = _owner(model, names[0])
        source = getattr(source_module, source_leaf)
        for name in names[1:]:
            module, leaf = _owner(model, name)
            if leaf in module._parameters:
                module._parameters[leaf] = source
            else:
                module._buffers[leaf] = source


# --------------------------------------------------------------------------------------
# Saving


# The two writers are private on purpose: ``videovlm.models`` is a package recipe components may
# name, and a function that deletes and writes weight files in any folder must not be one.
def _save_weights(state: dict[str, torch.Tensor], directory: Path, *, max_shard_size: int | str | None = None) -> list[Path]:
    """Write ``state`` into ``directory`` as one file, or shards of at most ``max_shard_size``
    (bytes or "2GB") with the index. Weight files of the other layout left there by an earlier
    save are removed first (only these names), so a folder never holds two answers."""
    from huggingface_hub import split_torch_state_dict_into_shards

    for stale in [directory / WEIGHTS_FILE, directory / INDEX_FILE, *directory.glob("model-*-of-*.safetensors")]:
        stale.unlink(missing_ok=True)
    if max_shard_size is None:
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        return [directory / WEIGHTS_FILE]
    split = split_torch_state_dict_into_shards(state, filename_pattern=SHARD_PATTERN, max_shard_size=max_shard_size)
    written = []
    for filename, names in split.filename_to_tensors.items():
        save_file({name: state[name] for name in names}, str(directory / filename), metadata={"format": "pt"})
        written.append(directory / filename)
    if split.is_sharded:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())}, "weight_map": split.tensor_to_filename}
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return written


def _write_base(directory: Path, *, base: Path, parts: Sequence[str]) -> None:
    """Record that ``directory`` holds only ``parts`` and ``base`` (a checkpoint folder, stored
    relative to ``directory`` when it can be, so the two folders move together) the rest."""
    base = Path(base)
    if not (base / WEIGHTS_FILE).is_file() and not (base / INDEX_FILE).is_file():
        raise FileNotFoundError(f"base: {base} holds no {WEIGHTS_FILE} or {INDEX_FILE}")
    try:
        stored = os.path.relpath(base.resolve(), directory.resolve())
    except ValueError:  # another drive (Windows)
        stored = str(base.resolve())
    (directory / BASE_FILE).write_text(json.dumps({"base": stored, "parts": list(parts)}, indent=2) + "\n")


# --------------------------------------------------------------------------------------
# Reading


def _json_file(path: Path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsFileError(f"{path}: not valid JSON ({e})") from None


def weight_files(directory: Path) -> dict[str, Path]:
    """Tensor name -> file holding it, for either layout of ``directory``'s own weights."""
    index = directory / INDEX_FILE
    if index.is_file():
        data = _json_file(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
            raise WeightsFileError(f"{index}: expected {{'weight_map': {{tensor name: shard file}}}}")
        bad = sorted({v for v in weight_map.values() if Path(v).name != v or not v.endswith(".safetensors")})
        if bad:  # a shard is a file beside the index, never a path elsewhere
            raise WeightsFileError(f"{index}: shard names must be plain .safetensors file names, got {bad[0]!r}")
        missing = sorted({v for v in weight_map.values() if not (directory / v).is_file()})
        if missing:
            raise FileNotFoundError(f"{index}: shard {directory / missing[0]} is missing")
        return {name: directory / file for name, file in weight_map.items()}
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: weights file missing" + (" (it is a folder)" if weights.is_dir() else ""))
    return {name: weights for name in _header_shapes(weights)}


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsFileError(f"{path}: not a readable safetensors file ({e})") from None


def checkpoint_files(directory: Path, *, seen: frozenset[Path] = frozenset()) -> dict[str, Path]:
    """Tensor name -> file for a checkpoint folder, its base's first (``weights_base.json``,
    followed recursively; a cycle is an error), then its own weights over them."""
    directory = Path(directory)
    here = directory.resolve()
    if here in seen:
        raise WeightsFileError(f"{directory / BASE_FILE}: the base checkpoints form a cycle")
    files: dict[str, Path] = {}
    base_file = directory / BASE_FILE
    if base_file.is_file():
        data = _json_file(base_file)
        if not isinstance(data, dict) or not isinstance(data.get("base"), str):
            raise WeightsFileError(f"{base_file}: expected {{'base': folder, 'parts': [...]}}")
        base = directory / data["base"]
        if not base.is_dir():
            raise FileNotFoundError(f"{base_file}: base checkpoint {base} does not exist (this folder holds only {data.get('parts')})")
        files.update(checkpoint_files(base, seen=seen | {here}))
    files.update(weight_files(directory))
    return files


def _by_file(files: dict[str, Path]) -> Iterator[tuple[Path, list[str]]]:
    grouped: dict[Path, list[str]] = {}
    for name, path in files.items():
        grouped.setdefault(path, []).append(name)
    yield from grouped.items()


def load_weights(model: nn.Module, directory: Path, *, renamed_prefixes: dict[str, str] | None = None) -> None:
    """Load a checkpoint folder's weights into ``model`` (built with ``init_empty_weights`` or
    not), every tensor by name and shape, assigned in place in its saved dtype.
    ``renamed_prefixes``: old name prefix -> new (a part renamed since the file was written)."""
    files = checkpoint_files(directory)
    shapes: dict[str, tuple[int, ...]] = {}
    for path, names in _by_file(files):
        header = _header_shapes(path)
        absent = [n for n in names if n not in header]
        if absent:
            raise WeightsFileError(f"{path}: the index names {absent[0]!r}, which is not in this shard")
        shapes.update({n: header[n] for n in names})
    new_names = {name: _renamed(name, renamed_prefixes or {}) for name in shapes}
    shapes = {new_names[name]: shape for name, shape in shapes.items()}
    groups = tied_groups(model)
    state = model.state_dict(keep_vars=True)  # the parameters themselves: a ZeRO-3 one knows its whole shape
    expected = {names[0]: full_shape(state[names[0]]) for names in groups}
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise WeightsFileError(f"{directory}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})")
    wrong = [f"{n}: {shapes[n]} in the file, {expected[n]} in the model" for n in sorted(expected) if shapes[n] != expected[n]]
    if wrong:
        raise WeightsFileError(f"{directory}: {len(wrong)} tensors have the wrong shape ({'; '.join(wrong[:3])})")
    if has_partitioned(model):
        _load_partitioned(model, files, {new: old for old, new in new_names.items()})
        return
    for path, names in _by_file(files):  # one file in memory at a time
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {new_names[name]: handle.get_tensor(name) for name in names}
        except (SafetensorError, OSError, RuntimeError) as e:  # e.g. a file truncated inside its data
            raise WeightsFileError(f"{path}: cannot read the tensors ({e})") from None
        model.load_state_dict(tensors, strict=False, assign=True)
    _retie(model, [names for names in groups if len(names) > 1])
    empty = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if empty:
        raise WeightsFileError(f"{directory}: {len(empty)} tensors were not loaded and have no value ({empty[:3]})")


def _load_partitioned(model: nn.Module, files: dict[str, Path], file_names: dict[str, str]) -> None:
    """ZeRO-3: module by module, its own ZeRO parameters gathered, rank 0 copies the saved values
    in and DeepSpeed re-partitions them from rank 0 on exit; ordinary parameters and buffers
    (the family's own small parts, built whole) are copied on every rank. ``file_names``: model
    name -> name in the file. A module registered under two names (tied) is visited under both,
    so the saved name is found whichever path it is; every saved tensor must be loaded."""
    loaded: set[str] = set()
    with ExitStack() as stack:
        handles: dict[Path, object] = {}

        def read(name: str) -> torch.Tensor:
            path = files[file_names[name]]
            if path not in handles:
                handles[path] = stack.enter_context(safe_open(str(path), framework="pt"))
            return handles[path].get_tensor(file_names[name])

        for prefix, module in model.named_modules(remove_duplicate=False):
            loaded |= _load_module_partitioned(module, prefix, file_names, read)
    missing = sorted(set(file_names) - loaded)
    if missing:
        raise WeightsFileError(f"{len(missing)} saved tensors have no place in the partitioned model ({missing[:3]})")


def _load_module_partitioned(module: nn.Module, prefix: str, file_names: dict[str, str], read: Callable[[str], torch.Tensor]) -> set[str]:
    names = f"{prefix}." if prefix else ""
    params = [(names + n, p) for n, p in module.named_parameters(recurse=False) if names + n in file_names]
    buffers = [(names + n, b) for n, b in module.named_buffers(recurse=False) if names + n in file_names]
    zero = [p for _, p in params if is_partitioned(p)]
    with torch.no_grad():
        with gathered(zero, modifier_rank=0):
            # Only rank 0 reads a ZeRO parameter (the others get its value on exit). Every rank
            # learns whether that read worked before anyone raises, so no rank waits forever
            # in the next collective for one that has failed.
            error = _copy_or_error([(n, p) for n, p in params if not is_partitioned(p) or rank() == 0], read)
            if zero:
                error = _agreed_error(error)
        error = error or _copy_or_error(buffers, read)
    if error is not None:
        raise WeightsFileError(error)
    return {n for n, _ in params} | {n for n, _ in buffers}


def _copy_or_error(targets: list[tuple[str, torch.Tensor]], read: Callable[[str], torch.Tensor]) -> str | None:
    for name, tensor in targets:
        try:
            tensor.copy_(read(name))
        except (SafetensorError, OSError, RuntimeError) as e:  # e.g. a file truncated inside its data
            return f"cannot read {name!r} from its weights file ({e})"
    return None


def _agreed_error(error: str | None) -> str | None:
    """Rank 0's read error (or None), known to every rank."""
    message = [error]
    torch.distributed.broadcast_object_list(message, src=0)
    return message[0]


def _renamed(name: str, prefixes: dict[str, str]) -> str:
    for old, new in prefixes.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return name
