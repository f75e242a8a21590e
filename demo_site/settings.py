"""Settings for the caravela_flow demo site.

Deployment comes from the environment, with defaults that need no services:
``REDIS_URL`` (channels-redis layer; unset: in-memory layer),
``CARAVELA_FLOW_MODE`` (``local`` or ``worker``) and ``DATABASE_URL``
(unset: SQLite next to manage.py).
"""

import os
from pathlib import Path
from typing import Any

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean such as ``1``/``true``/``yes`` from the environment."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated list from the environment."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY",
    "django-insecure-caravela-flow-demo-only-do-not-use-in-production",
)
DEBUG = env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before "channels", so its runworker (graceful shutdown) is the one used.
    "caravela_flow",
    "channels",
    "django_vite",
    "demo_site.library",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A friendly 503 instead of a 500 when no flow worker answers.
    "demo_site.library.middleware.FlowErrorPageMiddleware",
]

ROOT_URLCONF = "demo_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "demo_site.wsgi.application"
ASGI_APPLICATION = "demo_site.asgi.application"

# Database: SQLite by default; DATABASE_URL (e.g. postgres://...) overrides it.
DATABASE_URL = os.environ.get("DATABASE_URL", "")
DATABASES: dict[str, Any]
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            # A file, not :memory:, so a live server in a child process shares it.
            "TEST": {"NAME": BASE_DIR / "test_db.sqlite3"},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channels: Redis when REDIS_URL is set, otherwise the in-process layer.
REDIS_URL = os.environ.get("REDIS_URL", "")
CHANNEL_LAYERS: dict[str, dict[str, Any]]
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # socket_timeout above the 5 s BZPOPMIN wait keeps idle receivers alive.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "prefix": os.environ.get("CARAVELA_FLOW_REDIS_PREFIX", "asgi"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The cache holds the demo's outage switch, so in worker mode it must be shared: Redis.
CACHES: dict[str, dict[str, Any]]
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CARAVELA_FLOW_REDIS_PREFIX", "asgi"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CARAVELA_FLOW = {"MODE": os.environ.get("CARAVELA_FLOW_MODE", "local")}

# Fake external API used by the demo's sync flow.
FAKE_API_LATENCY_MS = int(os.environ.get("FAKE_API_LATENCY_MS", "300"))
FAKE_API_FAILURE_RATE = float(os.environ.get("FAKE_API_FAILURE_RATE", "0.2"))
# Chance that fetching one catalogue feed fails (which fails the import).
FAKE_API_IMPORT_FAILURE_RATE = float(os.environ.get("FAKE_API_IMPORT_FAILURE_RATE", "0"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS: list[Any] = [BASE_DIR / "demo_site" / "static"]
# Alpine.js from npm (`make node-deps`), served as static/vendor/alpinejs/…; no CDN.
ALPINEJS_DIST = BASE_DIR / "node_modules" / "alpinejs" / "dist"
if ALPINEJS_DIST.is_dir():
    STATICFILES_DIRS.append(("vendor/alpinejs", ALPINEJS_DIST))
STATIC_ROOT = BASE_DIR / "staticfiles"

# Svelte components, built by Vite (`make js`, i.e. `npm run build`) into
# demo_site/frontend/dist/, served as static/vite/…; django-vite reads the manifest.
VITE_DIST = BASE_DIR / "demo_site" / "frontend" / "dist"
if VITE_DIST.is_dir():
    STATICFILES_DIRS.append(("vite", VITE_DIST))
DJANGO_VITE = {
    "default": {
        "dev_mode": False,
        "static_url_prefix": "vite",
        "manifest_path": VITE_DIST / "manifest.json",
    }
}
# caravela_flow.W010 reports a missing build, with the command that makes it.
SILENCED_SYSTEM_CHECKS = ["django_vite.W001"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "simple": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "simple"},
    },
    "loggers": {
        "caravela_flow": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
