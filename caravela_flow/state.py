"""States: validation, copies, and the JSON form they travel in.

A state is a dict with string keys whose values Django's JSON encoder can
write: JSON scalars, lists, dicts, and datetimes, dates, times, timedeltas,
decimals and UUIDs. Tuples travel as lists.
"""

from __future__ import annotations

import datetime
import decimal
import math
import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.functional import Promise

from .errors import FlowArgumentError
from .types import State

_SCALARS = (str, int, bool, type(None))
_ENCODED: tuple[type, ...] = (datetime.datetime, datetime.date, datetime.time)
_ENCODED += (datetime.timedelta, decimal.Decimal, uuid.UUID, Promise)
_encoder = DjangoJSONEncoder()


class StateError(FlowArgumentError):
    """A state is not a dict of values that travel as JSON."""


#: msgpack (channels-redis) carries integers in [-2**63, 2**64 - 1] and no others.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1


def _walk(value: Any, path: str, wire: bool) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if INT_MIN <= value <= INT_MAX:
            return int(value) if wire else value
        raise StateError(
            f"{path} is {value:.3g}, an integer outside 64 bits, which cannot travel "
            "between processes; store it as a string or a Decimal"
        )
    if isinstance(value, _SCALARS):
        return value
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise StateError(f"{path} is {value!r}, which JSON cannot carry")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise StateError(f"{path} has a non-string key {key!r}; state keys must be str")
            out[key] = _walk(item, f"{path}[{key!r}]", wire)
        return out
    if isinstance(value, (list, tuple)):
        items = [_walk(item, f"{path}[{i}]", wire) for i, item in enumerate(value)]
        return items if wire or isinstance(value, list) else tuple(items)
    if isinstance(value, float):
        return _walk(float(value), path, wire)
    if isinstance(value, _ENCODED):
        if isinstance(value, datetime.time) and value.utcoffset() is not None:
            raise StateError(
                f"{path} is a timezone-aware time ({value!r:.80}), which Django's JSON "
                "encoder refuses; store a naive time or a datetime"
            )
        return _encoder.default(value) if wire else value
    raise StateError(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__} ({value!r:.80}), "
        "which cannot travel as JSON; store plain data (ids, strings, numbers) instead"
    )


class _Unfit(Exception):
    """Raised by the fast copy; :func:`_walk` then finds and names the bad value."""


#: Exact types copied as they are (subclasses such as IntEnum take the full walk; ints are
#: range-checked).
_PLAIN = frozenset({str, bool, type(None)})


def _copy(value: Any, wire: bool) -> Any:
    # _walk without the paths it needs only for error messages: the hot path.
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is int:
        if INT_MIN <= value <= INT_MAX:
            return value
        raise _Unfit
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _Unfit
            out[key] = item if type(item) in _PLAIN else _copy(item, wire)
        return out
    if kind is list or kind is tuple:
        items = [item if type(item) in _PLAIN else _copy(item, wire) for item in value]
        return items if wire or kind is list else tuple(items)
    if kind is float and math.isfinite(value):
        return value
    if kind in _SIMPLE_ENCODED:
        return _encoder.default(value) if wire else value
    raise _Unfit  # anything rarer: let _walk decide, and name it if it is bad


#: Encoded types that need no further check (aware times and subclasses take the full walk).
_SIMPLE_ENCODED = frozenset({datetime.datetime, datetime.date, datetime.timedelta})
_SIMPLE_ENCODED |= {decimal.Decimal, uuid.UUID}


def _convert(state: Any, where: str, wire: bool) -> State:
    try:
        result: State = _copy(state, wire)
    except _Unfit:
        result = _walk(state, where, wire)
    return result


def check_state(state: Any, where: str = "state") -> State:
    """Return a deep copy of ``state`` or raise :class:`StateError` naming the bad value."""
    if not isinstance(state, dict):
        raise StateError(f"{where} must be a dict, got {type(state).__name__}: {state!r:.80}")
    return _convert(state, where, wire=False)


def copy_state(state: State) -> State:
    """A deep copy of an already checked state."""
    return _convert(state, "state", wire=False)


def wire_state(state: State) -> State:
    """The JSON-native form of a checked state, as subscribers receive it."""
    return _convert(state, "state", wire=True)


def same_json(a: Any, b: Any) -> bool:
    """Whether two checked values have the same JSON form, without building it.

    Stricter than ``==``: ``1``, ``1.0`` and ``True`` differ, and so do two
    equal datetimes whose offsets differ.
    """
    kind = type(a)
    if kind is not type(b) and not (kind in _SEQUENCES and type(b) in _SEQUENCES):
        return False
    if kind is dict:
        return a.keys() == b.keys() and all(same_json(v, b[k]) for k, v in a.items())
    if kind in _SEQUENCES:
        return len(a) == len(b) and all(map(same_json, a, b))
    if isinstance(a, _ENCODED):
        return bool(_encoder.default(a) == _encoder.default(b))
    return bool(a == b)


_SEQUENCES = (list, tuple)
