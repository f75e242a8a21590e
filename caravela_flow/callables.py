"""Worker mode: the functions a message from another process may name (README, *Trust boundaries*).

A callable signal travels as ``"module:name"``. A worker resolves it only to

- a function *defined* at the top level of an installed app's ``flows``
  module (``name`` is one identifier, the function's ``__module__`` is that
  module and its ``__qualname__`` is ``name``), or
- a function marked with :func:`remote_callable`, looked up in the table
  the decorator fills when its module is imported.

Nothing else: no attribute chains, no names a module merely imports, no
modules imported on demand. Anyone who can write to Redis can forge a
message; this keeps what it may choose to the code the project declared.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from django.apps import apps

from .errors import FlowArgumentError

F = TypeVar("F", bound=Callable[..., Any])

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH = re.compile(rf"({_IDENTIFIER}(?:\.{_IDENTIFIER})*):({_IDENTIFIER})")
#: Longest path accepted from a message.
MAX_PATH = 300

_marked: dict[str, Callable[..., Any]] = {}


class RefusedCallable(FlowArgumentError):
    """A message named a function that this process does not let messages call."""


def remote_callable(fn: F) -> F:
    """Let worker-mode messages call ``fn`` by its import path (as a signal function).

    For functions outside an app's ``flows`` module, whose top-level
    functions need no mark. ``fn`` must be a module-level function, and its
    module must be imported in the worker (import it from your ``flows``
    module)::

        @remote_callable
        def add_tag(state, tag):
            return {**state, "tags": [*state["tags"], tag]}
    """
    if not inspect.isfunction(fn):
        raise FlowArgumentError(
            f"@remote_callable marks module-level functions, got {type(fn).__name__}: {fn!r:.80}"
        )
    if not re.fullmatch(_IDENTIFIER, fn.__qualname__):
        raise FlowArgumentError(
            f"@remote_callable marks module-level functions; {fn.__module__}.{fn.__qualname__} "
            "is nested in a class or a function"
        )
    _marked[f"{fn.__module__}:{fn.__qualname__}"] = fn
    return fn


def _flows_modules() -> set[str]:
    return {f"{config.name}.flows" for config in apps.get_app_configs()}


def _defined_in_flows_module(module: str, name: str) -> Callable[..., Any] | None:
    if module not in _flows_modules():
        return None
    loaded = sys.modules.get(module)
    found = vars(loaded).get(name) if loaded is not None else None
    if inspect.isfunction(found) and found.__module__ == module and found.__qualname__ == name:
        return found
    return None


def function_path(fn: Any) -> str:
    """The path ``fn`` travels by (caller side); :class:`FlowArgumentError` if it may not."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not inspect.isfunction(fn) or not isinstance(module, str) or not isinstance(qualname, str):
        raise FlowArgumentError(
            f"in worker mode a callable signal must be a module-level function, got {fn!r:.80}"
        )
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise FlowArgumentError(
            f"in worker mode a callable signal travels by import path, so it must be a "
            f"module-level function of an installed app; {module}.{qualname} is a lambda or "
            "a closure"
        )
    path = f"{module}:{qualname}"
    if _marked.get(path) is fn or _defined_in_flows_module(module, qualname) is fn:
        return path
    raise FlowArgumentError(
        f"in worker mode a callable signal must be defined at the top level of an installed "
        f"app's flows module, or marked @remote_callable; {module}.{qualname} is neither"
    )


def resolve_function(path: Any) -> Callable[..., Any]:
    """The function ``path`` names (worker side); :class:`RefusedCallable` if it may not."""
    if not isinstance(path, str) or len(path) > MAX_PATH:
        raise RefusedCallable(f"not a function path: {path!r:.80}")
    parsed = _PATH.fullmatch(path)
    if parsed is None:
        raise RefusedCallable(f"not a function path (module:name): {path!r:.80}")
    marked = _marked.get(path)
    if marked is not None:
        return marked
    found = _defined_in_flows_module(parsed.group(1), parsed.group(2))
    if found is None:
        raise RefusedCallable(
            f"{path} is not a function defined in an installed app's flows module, "
            "nor marked @remote_callable"
        )
    return found
