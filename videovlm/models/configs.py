"""Typed configs <-> JSON dicts, with errors that name the key path.

Every family and component config is a dataclass. ``config_to_dict`` turns one into plain
JSON values; ``config_from_dict`` rebuilds it and checks every field's type, so a wrong key
in a saved ``config.json`` or a recipe is reported as ``vision.image_size: expected int``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union

T = TypeVar("T")


class ModelConfigError(ValueError):
    """A model config (dict, JSON file or dataclass field) is invalid; the message names the key."""


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as JSON-ready values (tuples become lists)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a config dataclass, got {type(config).__name__}")
    return _to_json(dataclasses.asdict(config))


def _to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def config_from_dict(cls: type[T], data: Any, *, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys, missing keys and wrong types raise
    ``ModelConfigError`` naming the key path (``where`` is the prefix for nested calls)."""
    if not isinstance(data, dict):
        raise ModelConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ModelConfigError(
            f"{_join(where, unknown[0])}: unknown key for {cls.__name__} (known: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ModelConfigError(f"{_join(where, name)}: missing required key for {cls.__name__}")
            continue
        kwargs[name] = _convert(hints[name], data[name], _join(where, name))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ModelConfigError(f"{where or cls.__name__}: {e}") from e


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ModelConfigError as e:
                errors.append(str(e))
        raise ModelConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ModelConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return config_from_dict(tp, value, where=where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ModelConfigError(f"{where}: expected a list, got {type(value).__name__}")
        item_type = args[0] if args else Any
        items = [_convert(item_type, v, _join(where, i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ModelConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ModelConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    return value


# Temporal encoders named by a saved config.json may come only from this package, and must
# be ``TemporalEncoder`` subclasses, so a config file cannot make us build anything else.
TEMPORAL_ENCODER_PACKAGES = ("videovlm.models.temporal.",)


def resolve_temporal_encoder_class(path: Any, *, where: str = "_component_") -> type:
    """The temporal encoder class a ``_component_`` path names (``videovlm.components`` rules)."""
    from videovlm.components import ComponentError, resolve_component
    from videovlm.models.temporal.base import TemporalEncoder

    try:
        cls = resolve_component(path, allowed=TEMPORAL_ENCODER_PACKAGES, where=where)
    except (ComponentError, ImportError) as e:
        raise ModelConfigError(str(e)) from None
    if not (isinstance(cls, type) and issubclass(cls, TemporalEncoder)):
        raise ModelConfigError(f"{where}: {path!r} is not a temporal encoder class (a videovlm.models.temporal.TemporalEncoder)")
    return cls
