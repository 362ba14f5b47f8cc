"""One small ``instantiate``: build the object a ``_component_`` dotted path names.

A recipe names every class or function it builds with ``_component_: package.module.Name``
plus keyword arguments (torchtune style). Only dotted paths under an allow-list of package
prefixes can be imported, so a config handed around (or a ``key=value`` override typed on
a shared cluster) cannot call ``os.system`` or ``subprocess.run``.

Extending the list: user code outside ``videovlm`` is allowed by the *caller*, never by the
config itself (a config that could widen its own allow-list would make the list pointless):
``videovlm train RECIPE.yaml --allow-package mylab.models`` or
``instantiate(cfg, allowed_packages=(*DEFAULT_ALLOWED_PACKAGES, "mylab.models"))``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

COMPONENT_KEY = "_component_"

# Prefixes of importable dotted paths. ``torch.optim.`` and ``torch.nn.`` cover optimizers
# and layers; ``transformers.`` covers Hugging Face model classes / ``from_pretrained``.
DEFAULT_ALLOWED_PACKAGES: tuple[str, ...] = ("videovlm.", "torch.optim.", "torch.nn.", "transformers.")


class ComponentError(ValueError):
    """A ``_component_`` path is malformed, not allowed, or cannot be imported."""


def is_component(value: Any) -> bool:
    return isinstance(value, Mapping) and COMPONENT_KEY in value


def _is_allowed(dotted: str, allowed_packages: Sequence[str]) -> bool:
    for prefix in allowed_packages:
        package = prefix.rstrip(".")
        if dotted == package or dotted.startswith(package + "."):
            return True
    return False


def resolve_component(dotted: Any, *, allowed_packages: Sequence[str] = DEFAULT_ALLOWED_PACKAGES, where: str = "") -> Any:
    """Import the object named by ``dotted`` (``pkg.module.Name`` or ``pkg.module.Class.method``)."""
    label = f"{where}: " if where else ""
    if not isinstance(dotted, str) or not dotted or any(not part.isidentifier() for part in dotted.split(".")):
        raise ComponentError(f"{label}_component_ must be a dotted path like 'videovlm.models.load_pretrained', got {dotted!r}")
    if not _is_allowed(dotted, allowed_packages):
        raise ComponentError(
            f"{label}_component_ {dotted!r} is not in an allowed package {list(allowed_packages)} "
            "(pass --allow-package PREFIX to allow your own code)"
        )
    parts = dotted.split(".")
    # Longest importable module prefix, then attribute access for the rest (Class.method).
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue  # this prefix is not a module: try a shorter one
            raise  # the module exists but one of *its* imports is missing: show that
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            raise ComponentError(f"{label}_component_ {dotted!r}: {module_name!r} has no attribute {'.'.join(parts[split:])!r}") from None
        return obj
    raise ComponentError(f"{label}_component_ {dotted!r}: no importable module in this path")


def instantiate(cfg: Mapping[str, Any], *args: Any, allowed_packages: Sequence[str] = DEFAULT_ALLOWED_PACKAGES, **kwargs: Any) -> Any:
    """Call ``cfg['_component_']`` with the other keys of ``cfg`` as keyword arguments.

    Nested mappings with their own ``_component_`` are built first (depth first), so a
    dataset can take a sampler component or a model a temporal-encoder component.
    ``kwargs`` given here override keys from ``cfg`` (the engine injects e.g. ``processor``).
    """
    if not is_component(cfg):
        raise ComponentError(f"expected a mapping with a {COMPONENT_KEY!r} key, got {type(cfg).__name__}")
    target = resolve_component(cfg[COMPONENT_KEY], allowed_packages=allowed_packages)
    built = {key: _build_nested(value, allowed_packages) for key, value in cfg.items() if key != COMPONENT_KEY}
    built.update(kwargs)
    return target(*args, **built)


def _build_nested(value: Any, allowed_packages: Sequence[str]) -> Any:
    if is_component(value):
        return instantiate(value, allowed_packages=allowed_packages)
    if isinstance(value, Mapping):
        return {key: _build_nested(item, allowed_packages) for key, item in value.items()}
    if isinstance(value, list):
        return [_build_nested(item, allowed_packages) for item in value]
    return value
