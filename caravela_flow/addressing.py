"""Worker mode: names and references that travel between processes.

Flow definitions travel by registry key and signal functions by import path;
both are resolved on the worker only inside installed apps.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.apps import apps

from .conf import get_settings
from .errors import FlowArgumentError, FlowNotFound
from .registry import registry

if TYPE_CHECKING:
    from .definition import FlowDefinition


def control_group(flow_id: str) -> str:
    """The group a flow's hosting worker listens on for requests about it."""
    return f"{get_settings().GROUP_PREFIX}-ctl.{flow_id}"


def workers_group() -> str:
    """The group every worker host joins (for questions to all workers)."""
    return f"{get_settings().GROUP_PREFIX}-workers"


def _in_installed_app(module: str) -> bool:
    return any(
        module == config.name or module.startswith(config.name + ".")
        for config in apps.get_app_configs()
    )


def _lookup(module: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def function_path(fn: Any) -> str:
    """``"module:qualname"`` of a module-level function of an installed app, else TypeError."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise FlowArgumentError(
            f"in worker mode a callable signal must be a module-level function, got {fn!r:.80}"
        )
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise FlowArgumentError(
            f"in worker mode a callable signal travels by import path, so it must be a "
            f"module-level function of an installed app; {module}.{qualname} is a lambda or "
            "a closure"
        )
    if not _in_installed_app(module):
        raise FlowArgumentError(
            f"in worker mode a callable signal must live in an installed app; "
            f"{module}.{qualname} does not"
        )
    try:
        found = _lookup(module, qualname)
    except (ImportError, AttributeError):
        found = None
    if found is not fn:
        raise FlowArgumentError(
            f"in worker mode a callable signal must be importable as {module}.{qualname}"
        )
    return f"{module}:{qualname}"


def resolve_function(path: Any) -> Callable[..., Any]:
    """The function a :func:`function_path` names (worker side); FlowArgumentError if not."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise FlowArgumentError(f"not a function path: {path!r:.80}")
    module, qualname = path.split(":")
    if not _in_installed_app(module) or "<" in qualname:
        raise FlowArgumentError(f"{path} is not a function of an installed app")
    try:
        fn = _lookup(module, qualname)
    except (ImportError, AttributeError) as exc:
        raise FlowArgumentError(f"cannot import {path}: {exc}") from None
    if not callable(fn):
        raise FlowArgumentError(f"{path} is not callable")
    return fn  # type: ignore[no-any-return]


def resolve_flow(key: Any) -> FlowDefinition:
    """The definition registered under ``key``, importing its module if it is in an app."""
    if not isinstance(key, str) or not key:
        raise FlowNotFound(f"not a flow key: {key!r:.80}")
    if key not in registry:
        parts = key.split(".")
        for end in range(len(parts) - 2, 0, -1):
            module = ".".join(parts[:end])
            if not _in_installed_app(module):
                continue
            try:
                importlib.import_module(module)
            except ImportError:
                continue
            break
    return registry.get(key)
