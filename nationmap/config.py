"""One validation rule for every config that enters nationmap: CLI options, TOML specs, JSON files.

``from_dict(cls, values)`` builds any dataclass config from a plain mapping: unknown keys are
refused (with the nearest known key when there is one), every value is checked against the
field's declared type (``int``, ``float``, ``bool``, ``str``, ``dict``, ``tuple[...]``,
``X | None``, nested dataclasses), floats must be finite (a ``nan`` learning rate or CPU share is
refused here, not minutes later inside Ray). Each refusal is one line naming the key and the
expected type (:class:`~nationmap.errors.InputError`, exit code 2). The configs' own
``__post_init__`` then check ranges and combinations.

:class:`Config` is the mixin that gives a dataclass ``from_dict`` and ``check_fields`` (the same
checks for a config built in code), and :func:`default_of` lets the CLI and other configs take a
default from the config that declares it instead of repeating it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Union

from nationmap.errors import InputError

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
          dict: "a table", list: "a list", type(None): "none"}


def type_name(hint: Any) -> str:
    """The expected type in words, for error messages (``a finite number``, ``a list of 2 ...``)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(type_name(a) for a in args)})"
        return f"a list of {type_name(args[0])}" if args else "a list"
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(hint):
        return f"a table of {hint.__name__} settings"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _refuse(name: str, hint: Any, value: Any) -> InputError:
    shown = repr(value)
    if hint is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return InputError(f"{name} must be a finite number, not {shown[:60]}")  # nan, inf
    return InputError(f"{name} must be {type_name(hint)}, not {shown[:60]}")


def _sequence(value: Any, hint: Any, name: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if not isinstance(value, (list, tuple)):
        raise _refuse(name, hint, value)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise _refuse(name, hint, value)
        items = [check_value(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
    else:
        item = args[0] if args else Any
        items = [check_value(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def check_value(value: Any, hint: Any, name: str) -> Any:
    """``value`` checked against the type ``hint`` and converted where that is lossless (an integer
    where a float is declared, a list where a tuple is, a table where a nested config is). Raises
    InputError naming ``name`` and the expected type."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            try:
                return check_value(value, option, name)
            except InputError:
                continue
        raise _refuse(name, hint, value)
    if origin in (tuple, list):
        return _sequence(value, hint, name)
    if origin is dict or hint is dict:
        if isinstance(value, Mapping):
            key_type, item = typing.get_args(hint) or (Any, Any)
            return {check_value(k, key_type, f"{name} key"): check_value(v, item, f"{name}[{k!r}]")
                    for k, v in value.items()}
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):  # a record builds itself (its format and field checks)
            return hint.from_fields(value, name) if hasattr(hint, "from_fields") else from_dict(hint, value, name)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:  # numpy integers count; booleans do not
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is type(None):
        if value is None:
            return None
    else:
        raise TypeError(f"{name}: unsupported config field type {hint!r}")  # a programming error
    raise _refuse(name, hint, value)


@functools.cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # resolves the string annotations once per class


def _label(what: str | None, key: str) -> str:
    return f"{what} {key}" if what else str(key)


def _check_keys(cls, values: Mapping, what: str | None) -> None:
    if not isinstance(values, Mapping):
        raise InputError(f"{what or cls.__name__} must be a table of settings, not {type(values).__name__}")
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown {what or 'setting'} {key!r}{hint}")


def check_types(cls, values: Mapping, what: str | None = None) -> dict:
    """``values`` (some of ``cls``'s fields) with every key known and every value of its declared
    type, converted; nothing is built, so a partial table (a job spec) can be checked early."""
    _check_keys(cls, values, what)
    hints = _hints(cls)
    return {key: check_value(value, hints[key], _label(what, key)) for key, value in values.items()}


def from_dict(cls, values: Mapping, what: str | None = None):
    """A ``cls`` (a dataclass config) from ``values`` by the one rule: unknown keys, missing
    required keys and values of the wrong type are refused with one line (InputError)."""
    checked = check_types(cls, values, what)
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in checked
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise InputError(f"{what or 'setting'} {missing[0]!r} is required")
    return cls(**checked)


def check_fields(obj, what: str | None = None) -> None:
    """Check (and convert, as :func:`from_dict` does) every field of the frozen dataclass ``obj``
    in place: the same rule for a config built in code, e.g. by ``dataclasses.replace``."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = check_value(getattr(obj, f.name), hints[f.name], _label(what, f.name))
        object.__setattr__(obj, f.name, value)


def default_of(cls, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls``: configs and options that repeat a
    setting take its value from the config that declares it."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            if f.default is dataclasses.MISSING:
                raise TypeError(f"{cls.__name__}.{name} has no default")
            return f.default
    raise TypeError(f"{cls.__name__} has no field {name!r}")


class Config:
    """Mixin of the dataclass configs: ``from_dict`` and ``check_fields`` by the one rule.
    ``WHAT`` names the settings in messages (``unknown training option 'lrr'``)."""

    WHAT: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, values: Mapping):
        return from_dict(cls, values, cls.WHAT or None)

    def check_fields(self) -> None:
        check_fields(self, self.WHAT or None)
