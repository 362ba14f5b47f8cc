"""``_component_`` dotted paths -> the class or function they name, inside an allow-list only.

A recipe (``videovlm train``) or a saved model's ``config.json`` names what it builds by a
dotted path such as ``videovlm.models.temporal.VideoQFormer`` or ``torch.optim.AdamW``. A
path is data from a file, so resolving it is a trust boundary. The rules, checked here once
for every caller (the caller passes its allow-list; nothing read from a file can widen it):

- every part is a plain identifier that does not start with ``_`` (no dunders such as
  ``__globals__`` / ``__builtins__``, no private helpers);
- the path starts with an allowed prefix (``"videovlm.models."`` allows that package and
  everything under it);
- only modules *inside* the allowed prefix are imported; then attributes are followed, and
  every object crossed on the way must be a class, function or method **defined** in an
  allowed module (its ``__module__``, or its function's for a method). So an allowed module
  does not lend out what it imported: ``videovlm.train.cli.os.system`` is refused because
  ``os`` is a module, ``torch.optim.adamw.Tensor`` because ``Tensor`` is defined in
  ``torch``, an alias ``run = subprocess.run`` because ``run`` is defined in ``subprocess``;
  a method inherited from outside (``transformers``' ``from_pretrained``) likewise;
- instances, partials, builtins and modules are never returned; command-line entry points
  (functions named ``main``) are not components.

``find_forbidden_keys`` finds keys a config may never carry (``trust_remote_code``: loading
a checkpoint must never run Python code shipped with it).

A nested ``{_component_: ...}`` mapping in a recipe is either built (the default: the caller
receives the object) or handed over as a spec, unbuilt, to a parameter annotated
``ComponentSpec`` (or ``ComponentSpec | None``): the receiver builds it itself with what only
it knows (Video-LLaMA gives its temporal encoder the tower's width as ``input_dim``). Both are
checked the same way, every dotted path against the caller's allow-list (a spec's path again
where it is finally resolved, e.g. ``videovlm.models.configs.TEMPORAL_ENCODER_PACKAGES``).
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NewType

COMPONENT_KEY = "_component_"
# Keys refused anywhere in a recipe or a saved config: they would let a checkpoint run code.
FORBIDDEN_KEYS = ("trust_remote_code",)
ENTRY_POINT_NAMES = frozenset({"main"})


class ComponentError(ValueError):
    """A ``_component_`` path is malformed, outside the allow-list, or names something that
    is not a class or function defined in an allowed package."""


# A ``{_component_: dotted.path, **kwargs}`` mapping passed on unbuilt (see the module docstring).
ComponentSpec = NewType("ComponentSpec", dict)


def is_component(value: Any) -> bool:
    return isinstance(value, Mapping) and COMPONENT_KEY in value


def spec_parameters(target: Any) -> frozenset[str]:
    """Names of ``target``'s parameters annotated ``ComponentSpec`` or ``ComponentSpec | None``
    (for a class, its ``__init__``'s): the nested components it takes unbuilt."""
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # unresolvable annotations: no parameter asks for a spec
        return frozenset()
    return frozenset(name for name, hint in hints.items() if name != "return" and _is_spec_hint(hint))


def _is_spec_hint(hint: Any) -> bool:
    if hint is ComponentSpec:
        return True
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and ComponentSpec in typing.get_args(hint)


def module_is_allowed(module_name: str | None, allowed: Sequence[str]) -> bool:
    """``module_name`` is one of the allowed packages or inside one (``"pkg."`` or ``"pkg"``)."""
    if not module_name:
        return False
    for prefix in allowed:
        package = prefix.rstrip(".")
        if module_name == package or module_name.startswith(package + "."):
            return True
    return False


def resolve_component(dotted: Any, *, allowed: Sequence[str], where: str = "", hint: str = "") -> Any:
    """The class, function or method ``dotted`` names, under the rules of this module.
    ``hint`` is appended to the error for a path outside ``allowed`` (how the caller widens it)."""
    label = f"{where}: " if where else ""
    parts = _checked_parts(dotted, label)
    if not module_is_allowed(dotted, allowed):
        raise ComponentError(f"{label}_component_ {dotted!r} is outside the allowed packages {list(allowed)}{hint}")
    module, rest = _import_longest_allowed_module(parts, allowed, label, dotted)
    obj: Any = module
    path = module.__name__
    for attribute in rest:
        try:
            obj = getattr(obj, attribute)
        except AttributeError:
            raise ComponentError(f"{label}_component_ {dotted!r}: {path!r} has no attribute {attribute!r}") from None
        path = f"{path}.{attribute}"
        _check_defined_inside(obj, path, allowed, label, dotted)
    if getattr(obj, "__name__", None) in ENTRY_POINT_NAMES:
        raise ComponentError(f"{label}_component_ {dotted!r} is a command-line entry point, not a component")
    return obj


def _checked_parts(dotted: Any, label: str) -> list[str]:
    if not isinstance(dotted, str) or not dotted:
        raise ComponentError(f"{label}_component_ must be a dotted path like 'videovlm.models.load_pretrained', got {dotted!r}")
    parts = dotted.split(".")
    for part in parts:
        if not part.isidentifier():
            raise ComponentError(f"{label}_component_ {dotted!r}: {part!r} is not a Python identifier")
        if part.startswith("_"):
            raise ComponentError(f"{label}_component_ {dotted!r}: {part!r} is private or a dunder; only public names can be components")
    if len(parts) < 2:
        raise ComponentError(f"{label}_component_ {dotted!r}: expected module.Name")
    return parts


def _import_longest_allowed_module(parts: list[str], allowed: Sequence[str], label: str, dotted: str) -> tuple[Any, list[str]]:
    """Import the longest prefix of ``parts`` that is a module inside the allow-list."""
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        if not module_is_allowed(module_name, allowed):
            break  # shorter prefixes are outside the allowed package: never import them
        try:
            return importlib.import_module(module_name), parts[split:]
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue  # this prefix is not a module: try a shorter one
            raise  # the module exists but one of *its* imports is missing: show that
    raise ComponentError(f"{label}_component_ {dotted!r}: no importable module inside the allowed packages in this path")


def _defining_module(obj: Any) -> str | None:
    if inspect.ismethod(obj):  # a classmethod bound to its class: where its code lives
        return getattr(obj.__func__, "__module__", None)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return getattr(obj, "__module__", None)
    return None


def _check_defined_inside(obj: Any, path: str, allowed: Sequence[str], label: str, dotted: str) -> None:
    if inspect.ismodule(obj):
        raise ComponentError(
            f"{label}_component_ {dotted!r}: {path!r} is the module {obj.__name__!r}, not a class or function defined there"
        )
    if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj)):
        raise ComponentError(f"{label}_component_ {dotted!r}: {path!r} is a {type(obj).__name__}, not a class or function")
    module = _defining_module(obj)
    if not module_is_allowed(module, allowed):
        raise ComponentError(
            f"{label}_component_ {dotted!r}: {path!r} is defined in {module!r}, outside the allowed packages {list(allowed)}"
        )


def find_forbidden_keys(data: Any, path: str = "") -> Iterator[str]:
    """Key paths of ``FORBIDDEN_KEYS`` anywhere inside nested dicts / lists."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            here = f"{path}.{key}" if path else str(key)
            if key in FORBIDDEN_KEYS:
                yield here
            yield from find_forbidden_keys(value, here)
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            yield from find_forbidden_keys(value, f"{path}[{index}]")
