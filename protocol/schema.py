"""Declarative content schemas: frozen dataclasses decoded from JSON with field-naming errors.

Each message's content is a dataclass (see :mod:`protocol.messages`). :func:`decode` walks its type hints and builds it
from a JSON object, so that every error names the exact field (``cameras[3].transform_matrix[1][2]``). Fields with a
default are optional; unknown fields are ignored (forward compatibility). Numeric bounds come from
``field(metadata=...)`` via :func:`bounded`; cross-field rules live in a ``validate()`` method.

Supported annotations: ``str``, ``int``, ``float`` (finite, ints accepted), ``bool``, ``Literal[...]`` of strings,
``X | None``, ``list[X]``, ``dict[str, Any]`` (free-form JSON object), and nested schema dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union

from .errors import ValidationError

T = TypeVar("T")
MISSING = dataclasses.MISSING

#: longest string accepted anywhere unless a field says otherwise (instructions, names, log lines)
MAX_STR = 64 * 1024
#: longest list accepted unless a field says otherwise
MAX_LIST = 100_000


def limit(
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    max_len: int | None = None,
    min_len: int | None = None,
) -> dict[str, Any]:
    """Field metadata with bounds for a REQUIRED field: ``x: float = field(metadata=limit(gt=0))``."""
    return {"gt": gt, "ge": ge, "le": le, "lt": lt, "max_len": max_len, "min_len": min_len}


def bounded(
    default: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    max_len: int | None = None,
    min_len: int | None = None,
) -> Any:
    """An OPTIONAL dataclass field (with ``default``) whose bounds or length limits :func:`decode` checks."""
    meta = limit(gt=gt, ge=ge, le=le, lt=lt, max_len=max_len, min_len=min_len)
    if isinstance(default, (list, dict)):
        factory = (lambda d=default: type(d)(d))
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def check_bounds(value: Any, meta: typing.Mapping[str, Any], path: str) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.get("gt") is not None and not value > meta["gt"]:
            raise ValidationError(f"must be > {meta['gt']}, got {value}", field=path)
        if meta.get("ge") is not None and not value >= meta["ge"]:
            raise ValidationError(f"must be >= {meta['ge']}, got {value}", field=path)
        if meta.get("lt") is not None and not value < meta["lt"]:
            raise ValidationError(f"must be < {meta['lt']}, got {value}", field=path)
        if meta.get("le") is not None and not value <= meta["le"]:
            raise ValidationError(f"must be <= {meta['le']}, got {value}", field=path)
    if isinstance(value, (str, list)):
        if meta.get("max_len") is not None and len(value) > meta["max_len"]:
            raise ValidationError(f"length {len(value)} exceeds {meta['max_len']}", field=path)
        if meta.get("min_len") is not None and len(value) < meta["min_len"]:
            raise ValidationError(f"length {len(value)} is below {meta['min_len']}", field=path)


def _decode_value(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode_value(inner, value, path)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or not isinstance(value, str):
            raise ValidationError(f"must be one of {list(allowed)}, got {str(value)[:60]!r}", field=path)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValidationError(f"must be a boolean, got {_json_type(value)}", field=path)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"must be an integer, got {_json_type(value)}", field=path)
        if abs(value) > 2**63:
            raise ValidationError("integer out of range", field=path)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError(f"must be a number, got {_json_type(value)}", field=path)
        try:
            number = float(value)
        except OverflowError:
            raise ValidationError("number out of range", field=path) from None
        if not math.isfinite(number):
            raise ValidationError(f"must be finite, got {number}", field=path)
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ValidationError(f"must be a string, got {_json_type(value)}", field=path)
        if len(value) > MAX_STR:
            raise ValidationError(f"string longer than {MAX_STR} characters", field=path)
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ValidationError(f"must be an array, got {_json_type(value)}", field=path)
        if len(value) > MAX_LIST:
            raise ValidationError(f"array longer than {MAX_LIST} items", field=path)
        (item_type,) = typing.get_args(tp)
        return [_decode_value(item_type, item, f"{path}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValidationError(f"must be an object, got {_json_type(value)}", field=path)
        _, value_type = typing.get_args(tp)
        if value_type is Any:
            return dict(value)
        return {str(k): _decode_value(value_type, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return decode(tp, value, path)
    raise TypeError(f"schema type {_type_name(tp)} is not supported")  # a bug in a schema, not bad input


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def decode(cls: type[T], obj: Any, path: str = "content") -> T:
    """Build schema dataclass ``cls`` from JSON value ``obj``; raise :class:`ValidationError` naming the bad field."""
    if not isinstance(obj, dict):
        raise ValidationError(f"must be an object, got {_json_type(obj)}", field=path)
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.name.startswith("_"):
            continue
        sub = f"{path}.{f.name}"
        if f.name not in obj or (obj[f.name] is None and _is_optional_with_default(hints[f.name], f)):
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValidationError("missing required field", field=sub)
            continue
        value = _decode_value(hints[f.name], obj[f.name], sub)
        check_bounds(value, f.metadata, sub)
        kwargs[f.name] = value
    instance = cls(**kwargs)
    validate = getattr(instance, "validate", None)
    if validate is not None:
        validate(path)
    return instance


def _is_optional_with_default(tp: Any, f: dataclasses.Field[Any]) -> bool:
    has_default = f.default is not MISSING or f.default_factory is not MISSING
    return has_default and typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def encode(instance: Any, path: str = "content") -> dict[str, Any]:
    """Schema dataclass -> JSON-ready dict. The dict is decoded again, so nothing the peer would reject (a NaN, a
    missing camera, a wrong shape) is ever sent: the sender gets the same :class:`ValidationError` instead."""
    result: dict[str, Any] = dataclasses.asdict(instance)
    decode(type(instance), result, path)
    return result
