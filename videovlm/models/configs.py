"""Typed configs <-> JSON dicts, with errors that name the key path.

Every family and component config, and every recipe section, is a dataclass.
``config_to_dict`` turns one into plain JSON values; ``config_from_dict`` rebuilds it and
checks every field's type, so a wrong key in a saved ``config.json`` or a recipe is reported
as ``vision.image_size: expected int``. This is the one dict -> dataclass converter:
``ConfigReader`` does the work, and recipe validation (``videovlm.train.config``) subclasses
it for its own leaf types (paths, files that must exist) and wording.

Two modes: given no ``problems`` list, the first problem raises ``ModelConfigError``; given
one, every problem is appended to it (``key.path: what is wrong``) and reading goes on,
returning a best-effort value (the raw value where one did not convert, None for a section
that is not a mapping or lacks a required key).
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


def config_from_dict(cls: type[T], data: Any, *, where: str = "", problems: list[str] | None = None) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys, missing keys and wrong types are
    reported naming the key path (``where`` is the prefix for nested calls). ``problems``
    None: raise ``ModelConfigError`` on the first; a list: append each and keep going."""
    return ConfigReader(problems).read(cls, data, where)


def join_key(where: str, key: Any) -> str:
    """``where`` + ``key`` as a key path: ``vision.image_size``, ``stages[1]``."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


def type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def describe(value: Any) -> str:
    """A value as problems show it: its type and repr (``str 'ten'``)."""
    return f"{type(value).__name__} {value!r}"


class ConfigReader:
    """Dicts -> typed dataclasses, checking each value against its field's annotation.

    Understood annotations: dataclasses (read recursively), ``X | None`` and other unions,
    ``Literal[...]``, ``list[X]``, ``tuple[X, ...]`` / ``tuple[X, Y]``, ``dict[...]``, ``int``,
    ``float``, ``str``, ``bool``, ``Any`` and ``NewType``s of these; any other annotation
    passes the value through unchecked. Subclasses add leaf types by overriding ``convert``,
    per-field checks by overriding ``check_field``, and the wording of the messages that
    name a config class or a plain type (``unknown_key``, ``mismatch``).
    """

    def __init__(self, problems: list[str] | None = None):
        self.problems = problems

    # -- reporting

    def report(self, text: str) -> None:
        if self.problems is None:
            raise ModelConfigError(text)
        self.problems.append(text)

    def problem(self, where: str, message: str) -> None:
        self.report(f"{where}: {message}")

    def unknown_key(self, cls: type, fields: list[str]) -> str:
        return f"unknown key for {cls.__name__} (known: {', '.join(sorted(fields))})"

    def mismatch(self, expected: type, value: Any) -> str:
        """The message for a value that is not of the plain type ``expected`` (int, str, bool)."""
        return f"expected {expected.__name__}, got {value!r}"

    # -- reading

    def read(self, cls: type[T], data: Any, where: str = "") -> T | None:
        """``cls`` built from the mapping ``data`` (None where it cannot be, when collecting)."""
        if not isinstance(data, dict):
            self.problem(where or cls.__name__, f"expected a mapping, got {describe(data)}")
            return None
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        for key in sorted((k for k in data if k not in fields), key=str):
            self.problem(join_key(where, key), self.unknown_key(cls, list(fields)))
        kwargs: dict[str, Any] = {}
        complete = True
        for name, f in fields.items():
            if name in data:
                kwargs[name] = self.convert(hints[name], data[name], join_key(where, name))
                self.check_field(f, kwargs[name], join_key(where, name))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.problem(join_key(where, name), "missing required key")
                complete = False
        if not complete:
            return None
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            self.problem(where or cls.__name__, str(e))
            return None

    def check_field(self, field: dataclasses.Field, value: Any, where: str) -> None:
        """Per-field checks after conversion (none here; see ``videovlm.train.config``)."""

    def attempt(self, tp: Any, value: Any, where: str) -> tuple[Any, list[str]]:
        """``convert`` with the problems it finds returned instead of reported (raising:
        the first one, as it would have raised; collecting: all)."""
        saved = self.problems
        self.problems = None if saved is None else []
        try:
            return self.convert(tp, value, where), self.problems or []
        except ModelConfigError as e:
            return value, [str(e)]
        finally:
            self.problems = saved

    def convert(self, tp: Any, value: Any, where: str) -> Any:
        """``value`` checked against annotation ``tp`` (and converted: lists to tuples, ints to floats)."""
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any:
            return value
        if hasattr(tp, "__supertype__"):  # a typing.NewType: check as what it wraps
            return self.convert(tp.__supertype__, value, where)
        if origin in (Union, types.UnionType):
            return self._convert_union(tp, args, value, where)
        if origin is typing.Literal:
            if value not in args:
                self.problem(where, f"expected one of {list(args)}, got {value!r}")
            return value
        if dataclasses.is_dataclass(tp):
            return self.read(tp, value, where)
        if origin in (list, tuple):
            return self._convert_sequence(origin, args, value, where)
        if origin is dict or tp is dict:
            if not isinstance(value, dict):
                self.problem(where, f"expected a mapping, got {describe(value)}")
                return value
            return dict(value)
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.problem(where, f"expected a number, got {describe(value)}")
                return value
            return float(value)
        if tp in (int, str, bool):
            if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
                self.problem(where, self.mismatch(tp, value))
            return value
        return value

    def _convert_union(self, tp: Any, args: tuple, value: Any, where: str) -> Any:
        if value is None and type(None) in args:
            return None
        candidates = [arg for arg in args if arg is not type(None)]
        found = []
        for candidate in candidates:
            converted, trial = self.attempt(candidate, value, where)
            if not trial:
                return converted
            found.append(trial)
        if len(candidates) == 1:  # ``X | None``: what is wrong with it as an X
            for text in found[0]:
                self.report(text)
        else:
            self.problem(where, f"expected {' or '.join(type_name(arg) for arg in args)}, got {describe(value)}")
        return value

    def _convert_sequence(self, origin: Any, args: tuple, value: Any, where: str) -> Any:
        if not isinstance(value, (list, tuple)):
            self.problem(where, f"expected a list, got {describe(value)}")
            return value
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                self.problem(where, f"expected {len(args)} items, got {len(value)}")
                return tuple(value)
            return tuple(self.convert(arg, v, join_key(where, i)) for i, (arg, v) in enumerate(zip(args, value)))
        item_type = args[0] if args else Any
        items = [self.convert(item_type, v, join_key(where, i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items


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
