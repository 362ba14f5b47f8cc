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

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from videovlm.components import COMPONENT_KEY, ComponentError, is_component, resolve_component, spec_parameters

__all__ = ["COMPONENT_KEY", "DEFAULT_ALLOWED_PACKAGES", "ComponentError", "instantiate", "is_component", "resolve_component"]

# What recipes build, and nothing else: the model families and their builders, dataset and
# sampler components, and torch's optimizers and LR schedulers. Not the command-line modules
# (they parse --allow-package), not the extraction tools, not ``transformers`` as a whole
# (``AutoModel.from_pretrained`` and ``pipeline`` reach hub code and downloads). Resolution
# rules (only objects *defined* in these packages, no dunders): ``videovlm.components``.
DEFAULT_ALLOWED_PACKAGES: tuple[str, ...] = (
    "videovlm.models.",
    "videovlm.recipes.",
    "videovlm.train.datasets.",
    "videovlm.train.backbones.",
    "videovlm.video.samplers.",
    "torch.optim.",
)
WIDEN_HINT = " (only the command that reads the recipe can allow more: --allow-package PREFIX; the recipe itself cannot)"


def instantiate(cfg: Mapping[str, Any], *args: Any, allowed_packages: Sequence[str] = DEFAULT_ALLOWED_PACKAGES, **kwargs: Any) -> Any:
    """Call ``cfg['_component_']`` with the other keys of ``cfg`` as keyword arguments.

    Nested mappings with their own ``_component_`` are built first (depth first), so a
    dataset can take a sampler component; except where the target's parameter is annotated
    ``ComponentSpec`` (``videovlm.components``): that value is passed on as a copy of the
    mapping, unbuilt, once every dotted path in it has resolved inside ``allowed_packages``
    (a model takes its temporal-encoder spec so and builds it with the tower's width).
    ``kwargs`` given here override keys from ``cfg`` (the engine injects e.g. ``processor``).
    """
    if not is_component(cfg):
        raise ComponentError(f"expected a mapping with a {COMPONENT_KEY!r} key, got {type(cfg).__name__}")
    target = resolve_component(cfg[COMPONENT_KEY], allowed=allowed_packages, hint=WIDEN_HINT)
    specs = spec_parameters(target)
    built = {
        key: _checked_spec(value, allowed_packages) if key in specs else _build_nested(value, allowed_packages)
        for key, value in cfg.items()
        if key != COMPONENT_KEY
    }
    built.update(kwargs)
    return target(*args, **built)


def _checked_spec(value: Any, allowed_packages: Sequence[str]) -> Any:
    """``value`` copied, after every ``_component_`` path in it resolved (nothing is called)."""
    _resolve_paths(value, allowed_packages)
    return copy.deepcopy(value)


def _resolve_paths(value: Any, allowed_packages: Sequence[str]) -> None:
    if is_component(value):
        resolve_component(value[COMPONENT_KEY], allowed=allowed_packages, hint=WIDEN_HINT)
    if isinstance(value, Mapping):
        for item in value.values():
            _resolve_paths(item, allowed_packages)
    elif isinstance(value, list):
        for item in value:
            _resolve_paths(item, allowed_packages)


def _build_nested(value: Any, allowed_packages: Sequence[str]) -> Any:
    if is_component(value):
        return instantiate(value, allowed_packages=allowed_packages)
    if isinstance(value, Mapping):
        return {key: _build_nested(item, allowed_packages) for key, item in value.items()}
    if isinstance(value, list):
        return [_build_nested(item, allowed_packages) for item in value]
    return value
