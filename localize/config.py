"""Typed, validated views of the sections of params.yaml.

Each stage declares a frozen dataclass for its own section and calls `load_section`.
Unknown keys, wrong types and values outside a set of choices fail at once with a
message that names the key and lists what is allowed.
"""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ParamsError(ValueError):
    """A params.yaml section is missing, misspelt or holds a bad value."""


def short(value: object, limit: int = 80) -> str:
    """repr(value) cut to about `limit` characters, for error messages (a YAML alias bomb prints small)."""
    cut = reprlib.Repr()
    cut.maxstring = cut.maxother = cut.maxlong = limit
    cut.maxlist = cut.maxtuple = cut.maxdict = 8
    cut.maxlevel = 2
    text = cut.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Bounds on the params that size memory or time, shared by the stages that read them.
MAX_BOOTSTRAP = 10_000  # resamples: a draws x images index array per test set (8 bytes each)
MAX_BATCH = 4096  # images per inference batch


def check_range(name: str, value: int, low: int, high: int, extra: str = "") -> None:
    """ValueError naming `name` and the allowed range unless low <= value <= high."""
    if not low <= value <= high:
        tail = f" {extra}" if extra else ""
        raise ValueError(f"{name} = {short(value)}: must be between {low:,} and {high:,}{tail}")


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open() as f:
            params = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return params


def choice(*allowed: str, default: str) -> Any:
    """A dataclass field whose value must be one of `allowed`."""
    return dataclasses.field(default=default, metadata={"choices": allowed})


def _check_type(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        inner = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_check_type(v, inner) for v in value)
    if origin is dict:
        key_t, val_t = typing.get_args(annotation) or (Any, Any)
        return isinstance(value, dict) and all(
            _check_type(k, key_t) and _check_type(v, val_t) for k, v in value.items()
        )
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def parse_section(cls: type[T], values: dict[str, Any] | None, section: str) -> T:
    """Build dataclass `cls` from a params mapping, validating every key."""
    if values is not None and not isinstance(values, dict):
        raise ParamsError(f"params '{section}' = {short(values)}: expected a mapping of keys to values "
                          f"(e.g. {section}:\n  key: value)")
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(map(str, set(values) - set(fields)))
    if unknown:
        raise ParamsError(
            f"params '{section}': unknown key(s) {short(', '.join(unknown))[1:-1]}; "
            f"allowed keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, field in fields.items():
        if name not in values:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ParamsError(f"params '{section}.{name}' is required")
            continue
        value = values[name]
        if not _check_type(value, hints[name]):
            raise ParamsError(
                f"params '{section}.{name}' = {short(value)}: expected {_type_name(hints[name])}"
            )
        allowed = field.metadata.get("choices")
        if allowed and value not in allowed:
            raise ParamsError(
                f"params '{section}.{name}' = {short(value)} is not allowed; "
                f"choose one of: {', '.join(allowed)}"
            )
        if isinstance(value, int) and not isinstance(value, bool) and hints[name] is float:
            value = float(value)
        kwargs[name] = value
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as e:
            raise ParamsError(f"params '{section}': {e}") from None
    return obj


def load_section(cls: type[T], section: str, path: str | Path = "params.yaml") -> T:
    """Read one section of params.yaml into `cls`; the stage sees nothing else."""
    params = read_params(path)
    return parse_section(cls, params.get(section), section)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
