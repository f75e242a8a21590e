"""System checks for misconfiguration (``caravela_flow.E0xx`` / ``W0xx``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps as django_apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .conf import get_settings
from .redis_timeouts import check_socket_timeouts


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate ``CARAVELA_FLOW``, the channel layer and the apps the mode needs."""
    try:
        conf = get_settings()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="Fix the CARAVELA_FLOW setting.", id="caravela_flow.E001")]
    errors: list[CheckMessage] = []
    apps = set(settings.INSTALLED_APPS)
    if "channels" not in apps:
        errors.append(
            Error(
                "'channels' is not in INSTALLED_APPS.",
                hint="Add 'channels' to INSTALLED_APPS.",
                id="caravela_flow.E002",
            )
        )
    if "daphne" not in apps and not other_asgi_servers():
        errors.append(
            Warning(
                "'daphne' is not in INSTALLED_APPS, so runserver will not serve WebSockets.",
                hint="Add 'daphne' at the top of INSTALLED_APPS, or serve with another ASGI "
                f"server ({', '.join(ASGI_SERVERS)}: this check is quiet once one is installed).",
                id="caravela_flow.W001",
            )
        )
    if not getattr(settings, "ASGI_APPLICATION", None):
        errors.append(
            Error(
                "ASGI_APPLICATION is not set; live flow updates need an ASGI application.",
                hint="Set ASGI_APPLICATION = 'yourproject.asgi.application'.",
                id="caravela_flow.E003",
            )
        )
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    layer = layers.get(conf.CHANNEL_LAYER)
    if layer is None:
        level = Error if conf.MODE == "worker" else Warning
        errors.append(
            level(
                f"CHANNEL_LAYERS has no {conf.CHANNEL_LAYER!r} layer; "
                "flows cannot publish to subscribers.",
                hint="Configure CHANNEL_LAYERS (InMemoryChannelLayer for local mode, "
                "channels_redis for worker mode).",
                id="caravela_flow.E004" if conf.MODE == "worker" else "caravela_flow.W002",
            )
        )
    elif conf.MODE == "worker" and "InMemoryChannelLayer" in str(layer.get("BACKEND", "")):
        errors.append(
            Error(
                "Worker mode cannot use InMemoryChannelLayer: workers run in other processes.",
                hint="Use channels_redis.core.RedisChannelLayer, or MODE 'local'.",
                id="caravela_flow.E005",
            )
        )
    if conf.MODE == "worker" and not errors:
        errors.extend(_check_worker_routing(conf.WORKER_CHANNEL))
        errors.extend(_check_redis_exposure(layer or {}))
        names = [config.name for config in django_apps.get_app_configs()]
        if names.index("channels") < names.index("caravela_flow"):
            errors.append(
                Warning(
                    "'channels' comes before 'caravela_flow' in INSTALLED_APPS, so "
                    "`runworker` is Channels' own: a worker then dies on SIGTERM without "
                    "ending its flows, and a message with no type stops it.",
                    hint="List 'caravela_flow' before 'channels' in INSTALLED_APPS.",
                    id="caravela_flow.W003",
                )
            )
    return errors


#: ASGI servers that serve WebSockets without being in INSTALLED_APPS (W001 is quiet with one).
ASGI_SERVERS = ("uvicorn", "hypercorn", "granian")


def other_asgi_servers() -> list[str]:
    """The installed ASGI servers of :data:`ASGI_SERVERS`."""
    return [name for name in ASGI_SERVERS if importlib.util.find_spec(name) is not None]


def _check_worker_routing(channel: str) -> list[CheckMessage]:
    from channels.routing import ChannelNameRouter, ProtocolTypeRouter, get_default_application

    try:
        application = get_default_application()
    except Exception as exc:
        return [
            Error(
                f"Cannot load the ASGI application: {exc}",
                hint="Check ASGI_APPLICATION.",
                id="caravela_flow.E006",
            )
        ]
    routes = getattr(application, "application_mapping", None)
    router = (
        routes.get("channel") if isinstance(application, ProtocolTypeRouter) and routes else None
    )
    if not isinstance(router, ChannelNameRouter) or channel not in router.application_mapping:
        return [
            Error(
                f"The ASGI application does not route the {channel!r} channel, "
                "so `runworker` cannot host flows.",
                hint='Add "channel": ChannelNameRouter({'
                f"{channel!r}: FlowWorkerConsumer.as_asgi()}}) to your ProtocolTypeRouter.",
                id="caravela_flow.E007",
            )
        ]
    return []


LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _open_hosts(layer: dict[str, Any]) -> list[str]:
    """The layer's Redis hosts that are reached over a network with no password."""
    config = layer.get("CONFIG") or {}
    found = []
    for host in config.get("hosts") or []:
        options = host if isinstance(host, dict) else {"address": host}
        address = options.get("address")
        if isinstance(address, (tuple, list)) and address:
            name, url_password = str(address[0]), None
        elif isinstance(address, str):
            parts = urlsplit(address)
            if parts.scheme == "unix":
                continue
            name, url_password = parts.hostname or "", parts.password
        else:
            continue  # Sentinel and other forms: not judged here
        if name in LOOPBACK or url_password or options.get("password"):
            continue
        found.append(name)
    return found


def _check_redis_exposure(layer: dict[str, Any]) -> list[CheckMessage]:
    hosts = _open_hosts(layer)
    if not hosts:
        return []
    return [
        Warning(
            f"Worker mode reaches Redis at {', '.join(hosts)} with no password. Anyone who "
            "can write to that Redis can forge flow messages and start, signal or stop "
            "any flow.",
            hint="Give Redis a password or an ACL user and use TLS: "
            '"address": "rediss://user:password@host:6380/0".',
            id="caravela_flow.W004",
        )
    ]


@register()
def check_redis_timeouts(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W020: redis-py 8 and a channels-redis host whose idle receives would time out."""
    try:
        alias = get_settings().CHANNEL_LAYER
    except ImproperlyConfigured:
        return []  # E001 says so
    layer = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get(alias)
    return check_socket_timeouts(alias, layer) if isinstance(layer, dict) else []


#: The context processor that puts ``request`` (and so its user) in template contexts.
REQUEST_PROCESSOR = "django.template.context_processors.request"
DJANGO_TEMPLATES = "django.template.backends.django.DjangoTemplates"


@register()
def check_request_context_processor(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W011: a Django template engine without the request context processor.

    ``{% flow_subscription_url %}`` and ``{% flow_component %}`` bind the token
    to the request's user; without a request in the context the token is
    anonymous, and a logged-in user's socket is refused with 4403.
    """
    warnings: list[CheckMessage] = []
    for index, engine in enumerate(getattr(settings, "TEMPLATES", None) or []):
        if not isinstance(engine, dict) or engine.get("BACKEND") != DJANGO_TEMPLATES:
            continue
        options = engine.get("OPTIONS") or {}
        processors = options.get("context_processors") or []
        if REQUEST_PROCESSOR in processors:
            continue
        name = engine.get("NAME") or f"TEMPLATES[{index}]"
        warnings.append(
            Warning(
                f"{name!s} has no {REQUEST_PROCESSOR!r} context processor, so "
                "{% flow_subscription_url %} and {% flow_component %} make anonymous "
                "subscription tokens: a logged-in user's WebSocket is refused (4403).",
                hint=f"Add {REQUEST_PROCESSOR!r} to OPTIONS['context_processors'] of that "
                "TEMPLATES entry (or silence caravela_flow.W011 if it never renders these tags).",
                id="caravela_flow.W011",
            )
        )
    return warnings


# --- live components (W010 to W019) -------------------------------------------

#: What builds a project's Vite bundle; named in the hints below.
VITE_BUILD_COMMAND = "npm run build"


@register()
def check_component_builds(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when the Vite build behind ``{% flow_component %}`` is missing (django-vite apps)."""
    if "django_vite" not in settings.INSTALLED_APPS:
        return []
    configs = getattr(settings, "DJANGO_VITE", None) or {}
    if not isinstance(configs, dict):
        return []
    warnings: list[CheckMessage] = []
    for app_name, config in configs.items():
        if not isinstance(config, dict) or config.get("dev_mode"):
            continue
        manifest = _manifest_path(config)
        missing = _missing_built_files(manifest)
        if missing is None:
            continue
        what = (
            f"Vite's manifest {manifest} is missing"
            if not missing
            else f"files listed in Vite's manifest {manifest} are missing: {', '.join(missing[:3])}"
        )
        warnings.append(
            Warning(
                f"DJANGO_VITE[{app_name!r}]: {what}, so Svelte components rendered by "
                "{% flow_component %} will not mount.",
                hint=f"Build them: run `{VITE_BUILD_COMMAND}` (vite build) where your "
                "vite.config.js is, then restart the server.",
                id="caravela_flow.W010",
            )
        )
    return warnings


def _manifest_path(config: dict[str, Any]) -> Path:
    path = config.get("manifest_path")
    if path:
        return Path(path)
    root = Path(getattr(settings, "STATIC_ROOT", None) or ".")
    return root / str(config.get("static_url_prefix", "")) / "manifest.json"


def _missing_built_files(manifest: Path) -> list[str] | None:
    """None if the build is complete; else the missing files (``[]``: the manifest itself)."""
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return []
    # Vite writes files relative to outDir; its default manifest lives in outDir/.vite/.
    out_dir = manifest.parent.parent if manifest.parent.name == ".vite" else manifest.parent
    missing = []
    for entry in entries.values() if isinstance(entries, dict) else ():
        for name in [entry.get("file"), *entry.get("css", [])] if isinstance(entry, dict) else ():
            if isinstance(name, str) and not (out_dir / name).is_file():
                missing.append(name)
    return missing or None
