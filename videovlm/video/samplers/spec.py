"""Text specs for samplers, as used on the command line and in configs.

``NAME:VALUE[,key=value...]``, e.g. ``uniform:8``, ``segment:8,jitter=0``,
``fps:2,min=4,max=64``, ``headtail:8``, ``clips:16,interval=2,num=4``, ``keyframes:16``;
every sampler also takes ``start=S``, ``end=E`` (seconds) and ``short=repeat|pad|error``.
"""

from __future__ import annotations

from dataclasses import fields

from videovlm.video.samplers.base import Sampler, SamplerSpecError
from videovlm.video.samplers.kinds import (
    ClipsSampler,
    FpsSampler,
    HeadTailSampler,
    KeyframesSampler,
    SegmentSampler,
    UniformSampler,
)

SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls
    for cls in (UniformSampler, SegmentSampler, FpsSampler, HeadTailSampler, ClipsSampler, KeyframesSampler)
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(annotation: str, text: str):
    """Turn a spec value into the field's type (annotations are strings under
    ``from __future__ import annotations``)."""
    kind = annotation.replace(" | None", "").strip()
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected 0/1/true/false, got {text!r}")
    return text


def parse_sampler(spec: str | Sampler) -> Sampler:
    """Build a sampler from its text spec (a ``Sampler`` passes through unchanged).

    Raises ``SamplerSpecError`` naming the spec and the bad token.
    """
    if isinstance(spec, Sampler):
        return spec
    if not isinstance(spec, str):
        raise SamplerSpecError(repr(spec), repr(spec), f"a sampler spec is a string, got {type(spec).__name__}")
    text = spec.strip()
    name, colon, rest = text.partition(":")
    name = name.strip()
    if name not in SAMPLERS:
        raise SamplerSpecError(spec, name, f"unknown sampler; expected one of {', '.join(SAMPLERS)}")
    cls = SAMPLERS[name]
    if not colon or not rest.strip():
        raise SamplerSpecError(spec, text, f"expected {name}:{cls.positional.upper()}[,key=value...]")
    tokens = [t.strip() for t in rest.split(",")]
    annotations = {f.name: str(f.type) for f in fields(cls)}
    keys = {**cls.options, **cls.common_options}
    values: dict[str, object] = {}
    token_of: dict[str, str] = {}
    for position, token in enumerate(tokens):
        if position == 0:
            if "=" in token:
                raise SamplerSpecError(spec, token, f"the first value after ':' is {cls.positional}, not key=value")
            field_name, raw = cls.positional, token
        else:
            key, equals, raw = token.partition("=")
            key, raw = key.strip(), raw.strip()
            if not equals or not key or not raw:
                raise SamplerSpecError(spec, token, "expected key=value")
            if key not in keys:
                raise SamplerSpecError(spec, token, f"unknown key {key!r}; {name} takes {', '.join(keys)}")
            field_name = keys[key]
            if field_name in values:
                raise SamplerSpecError(spec, token, f"{key!r} given twice")
        try:
            values[field_name] = _convert(annotations[field_name], raw)
        except ValueError as e:
            raise SamplerSpecError(spec, token, f"cannot read {raw!r} as {annotations[field_name]}: {e}") from None
        token_of[field_name] = token
    try:
        return cls(**values)
    except SamplerSpecError as e:
        # The dataclass names the field by its spec key; point at the token as written.
        field_name = {**keys, cls.positional: cls.positional}.get(e.token, e.token)
        raise SamplerSpecError(spec, token_of.get(field_name, e.token), e.reason) from None
