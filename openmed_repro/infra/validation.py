"""Checking settings before any work: a dataclass built from values, each checked against its field's
annotation (type, choices, range), so a bad value is an error naming the parameter and what is valid."""

from __future__ import annotations

import dataclasses
import types
import typing

import yaml

from openmed_repro.errors import OpenMedError


@dataclasses.dataclass(frozen=True)
class Bound:
    """A range a field's value must lie in, carried by the field's annotation (`Positive[int]`, `Fraction`);
    `message` ends the error "parameter key=value ..."."""

    holds: typing.Callable[[typing.Any], bool]
    message: str


POSITIVE = Bound(lambda value: value > 0, "must be positive")
NON_NEGATIVE = Bound(lambda value: value >= 0, "must not be negative")
BELOW_ONE = Bound(lambda value: value < 1, "must be below 1")

_T = typing.TypeVar("_T")
Positive = typing.Annotated[_T, POSITIVE]
NonNegative = typing.Annotated[_T, NON_NEGATIVE]
Fraction = typing.Annotated[float, NON_NEGATIVE, BELOW_ONE]            # [0, 1)
PositiveFraction = typing.Annotated[float, POSITIVE, BELOW_ONE]        # (0, 1)


def key_values(items: typing.Sequence[str], option: str = "--set") -> dict:
    """`KEY=VALUE` command-line items as a mapping, each value read as YAML (so 3 is an int, null is None)."""
    values = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise OpenMedError(f"{option} {item!r}: expected KEY=VALUE")
        values[key] = yaml.safe_load(value)
    return values


def validated(kind: type, values: dict, source: str):
    """A dataclass `kind` from `values`, each checked against its field's annotation: its type, its choices
    (`typing.Literal`) and its range (`Positive[int]`, `NonNegative[...]`, `Fraction`, `PositiveFraction`)."""
    return kind(**checked_values(kind, values, source))


def checked_values(kind: type, values, source: str) -> dict:
    """`values` checked against the fields of dataclass `kind`: unknown names, types and ranges."""
    if not isinstance(values, dict):
        raise OpenMedError(f"{source}: expected a mapping of parameter names to values")
    hints = typing.get_type_hints(kind, include_extras=True)
    checked = {}
    for key, value in values.items():
        if key not in hints:
            raise OpenMedError(f"{source}: unknown parameter {key!r}; valid: {', '.join(sorted(hints))}")
        checked[key] = _checked(key, value, hints[key], source)
    return checked


def _rules(hint) -> tuple[tuple, tuple | None, list[Bound]]:
    """A field's annotation taken apart: the types it allows, its choices (a Literal) and its bounds (Annotated)."""
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    allowed, choices, bounds = [], None, []
    for member in members:
        if typing.get_origin(member) is typing.Annotated:
            member, *extras = typing.get_args(member)
            bounds += [extra for extra in extras if isinstance(extra, Bound)]
        if typing.get_origin(member) is typing.Literal:
            choices = typing.get_args(member)
            member = type(choices[0])
        allowed.append(member)
    return tuple(allowed), choices, bounds


def _checked(key: str, value, expected, source: str):
    allowed, choices, bounds = _rules(expected)
    if value is None and type(None) in allowed:
        return None
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if dict[str, float] in allowed:
        if not (isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, (int, float))
                                                and not isinstance(v, bool) and v >= 0 for k, v in value.items())):
            raise OpenMedError(f"{source}: parameter {key} must map names to non-negative numbers, got {value!r}")
        return {k: float(v) for k, v in value.items()}
    if dict[str, str] in allowed:
        if not (isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            raise OpenMedError(f"{source}: parameter {key} must map names to names, got {value!r}")
        return dict(value)
    if list[str] in allowed:
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise OpenMedError(f"{source}: parameter {key} must be a list of strings, got {value!r}")
        return list(value)
    if list[int] in allowed:
        if not (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise OpenMedError(f"{source}: parameter {key} must be a list of integers, got {value!r}")
        return list(value)
    plain = tuple(t for t in allowed if isinstance(t, type))
    if not isinstance(value, plain) or (isinstance(value, bool) and bool not in plain):
        names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
        raise OpenMedError(f"{source}: parameter {key} must be {names}, got {type(value).__name__} {value!r}")
    if choices is not None and value not in choices:
        raise OpenMedError(f"{source}: parameter {key}={value!r}; valid: {', '.join(choices)}")
    for bound in bounds:
        if not bound.holds(value):
            raise OpenMedError(f"{source}: parameter {key}={value!r} {bound.message}")
    return value

