"""Typed dataclass configs: strict construction from dicts/YAML and dotted CLI overrides.

Every config in the project is a dataclass that validates itself in ``__post_init__``. This module
turns nested dicts into such dataclasses, rejecting unknown keys with a message that names them, and
applies ``a.b.c=value`` overrides (values parsed as YAML scalars) before validation runs.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _convert(tp: Any, value: Any, where: str) -> Any:  # noqa: C901 - one branch per supported type
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _convert(non_none[0], value, where)
        return value
    if origin in (tuple,):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        pairs = zip(args, value, strict=False)
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(pairs))
    if origin in (list,):
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin in (dict,):
        return dict(value)
    if tp is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        # YAML 1.1 reads "3e-3" (no dot) as a string; accept it as the number it plainly is.
        try:
            x = float(value)
        except ValueError:
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(x):  # NaN passes every range check (all comparisons are False)
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        return x
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ValueError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str | None = None) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise ValueError naming them."""
    where = where or cls.__name__
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)  # __post_init__ validates


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-friendly dict of a (nested) dataclass config."""

    def fix(v: Any) -> Any:
        if isinstance(v, tuple):
            return [fix(x) for x in v]
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v

    return fix(dataclasses.asdict(cfg))


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides to a nested dict (values parsed as YAML)."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: top level must be a mapping")
    return data


EXTENDS = "extends"


def merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``: a mapping in both is merged key by key (recursively); anything else in
    ``child`` replaces the base's value."""
    out = dict(base)
    for k, v in child.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level may say ``extends: other.yaml`` (relative to the file's folder): the
    other file's values, with this file's merged over them (``merge``). Chains are followed; a cycle is
    a ValueError."""
    chain: list[Path] = []
    p = Path(path)
    layers: list[dict[str, Any]] = []
    while True:
        resolved = p.resolve()
        if resolved in chain:
            circle = " -> ".join(c.name for c in [*chain, resolved])
            raise ValueError(f"{path}: '{EXTENDS}' goes round in a circle: {circle}")
        chain.append(resolved)
        data = load_yaml(p)
        base = data.pop(EXTENDS, None)
        layers.append(data)
        if base is None:
            break
        if not isinstance(base, str) or not base:
            raise ValueError(f"{p}: '{EXTENDS}' must name a YAML file, got {base!r}")
        p = p.parent / base
        if not p.is_file():
            raise FileNotFoundError(f"{chain[-1]}: '{EXTENDS}: {base}' names no file ({p})")
    out: dict[str, Any] = {}
    for layer in reversed(layers):
        out = merge(out, layer)
    return out


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> T:
    """Load ``cls`` from a YAML file (or defaults when path is None) plus dotted overrides."""
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    return from_dict(cls, data, where=str(path) if path else cls.__name__)
