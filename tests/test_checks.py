"""System checks (caravela_flow.E0xx / W0xx) and the CARAVELA_FLOW settings."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any
from unittest import mock

from django.core.checks import Error, Warning, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, modify_settings, override_settings

from caravela_flow.checks import (
    check_redis_timeouts,
    check_request_context_processor,
    check_settings,
    other_asgi_servers,
)
from caravela_flow.conf import FlowSettings, get_settings
from caravela_flow.redis_timeouts import redis_major

REDIS_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:6399/0"]},
    }
}
IN_MEMORY_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
WORKER = {"MODE": "worker"}


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def ours(messages: list[Any]) -> list[Any]:
    return [m for m in messages if str(m.id).startswith("caravela_flow.")]


class CheckTests(SimpleTestCase):
    def test_the_test_settings_pass(self) -> None:
        self.assertEqual(check_settings(), [])
        self.assertEqual(ours(run_checks()), [])

    def test_checks_are_registered(self) -> None:
        with override_settings(CARAVELA_FLOW={"MODE": "nope"}):
            self.assertEqual(ids(ours(run_checks())), ["caravela_flow.E001"])

    def test_e001_bad_caravela_flow_setting(self) -> None:
        cases: list[tuple[Any, str]] = [
            ({"BOGUS": 1, "MODE": "local"}, "unknown key(s) BOGUS"),
            ({"MODE": "cloud"}, "must be one of local, worker, got 'cloud'"),
            ({"THREADS": 0}, "THREADS"),
            ({"RETAIN_SECONDS": -1}, "RETAIN_SECONDS"),
            ({"START_TIMEOUT": "5"}, "START_TIMEOUT"),
            ({"THREADS": True}, "THREADS"),
            ({"TOKEN_MAX_AGE": 0}, "TOKEN_MAX_AGE"),
            ({"GROUP_PREFIX": "my flows"}, "GROUP_PREFIX"),
            ({"GROUP_PREFIX": ""}, "GROUP_PREFIX"),
            ({"GROUP_PREFIX": "p" * 61}, "GROUP_PREFIX"),
            ({"WORKER_CHANNEL": "flows!"}, "WORKER_CHANNEL"),
            ({"WORKER_CHANNEL": None}, "WORKER_CHANNEL"),
            ({"WEBSOCKET_PATH": "/ws/flows/"}, "WEBSOCKET_PATH"),
            ({"WEBSOCKET_PATH": "ws/flows"}, "WEBSOCKET_PATH"),
            ("worker", "must be a dict"),
        ]
        for value, text in cases:
            with self.subTest(value=value), override_settings(CARAVELA_FLOW=value):
                messages = check_settings()
                self.assertEqual(ids(messages), ["caravela_flow.E001"])
                self.assertIsInstance(messages[0], Error)
                self.assertIn(text, messages[0].msg)
                self.assertIn("CARAVELA_FLOW", messages[0].hint)

    @modify_settings(INSTALLED_APPS={"remove": ["channels"]})
    def test_e002_channels_not_installed(self) -> None:
        messages = check_settings()
        self.assertEqual(ids(messages), ["caravela_flow.E002"])
        self.assertIsInstance(messages[0], Error)
        self.assertIn("'channels'", messages[0].msg)

    @override_settings(ASGI_APPLICATION=None)
    def test_e003_no_asgi_application(self) -> None:
        messages = check_settings()
        self.assertEqual(ids(messages), ["caravela_flow.E003"])
        self.assertIsInstance(messages[0], Error)
        self.assertIn("ASGI_APPLICATION", messages[0].msg)

    def test_e003_when_the_setting_is_missing(self) -> None:
        from django.conf import settings

        with override_settings():
            del settings.ASGI_APPLICATION
            self.assertEqual(ids(check_settings()), ["caravela_flow.E003"])

    @override_settings(CARAVELA_FLOW=WORKER, CHANNEL_LAYERS={})
    def test_e004_worker_mode_without_a_layer(self) -> None:
        messages = check_settings()
        self.assertEqual(ids(messages), ["caravela_flow.E004"])
        self.assertIsInstance(messages[0], Error)
        self.assertIn("'default'", messages[0].msg)

    @override_settings(CARAVELA_FLOW={"MODE": "worker", "CHANNEL_LAYER": "flows"})
    def test_e004_names_the_configured_alias(self) -> None:
        messages = check_settings()
        self.assertEqual(ids(messages), ["caravela_flow.E004"])
        self.assertIn("'flows'", messages[0].msg)

    @override_settings(CHANNEL_LAYERS={})
    def test_w002_local_mode_without_a_layer_is_only_a_warning(self) -> None:
        messages = check_settings()
        self.assertEqual(ids(messages), ["caravela_flow.W002"])
        self.assertIsInstance(messages[0], Warning)

    @override_settings(CARAVELA_FLOW=WORKER, CHANNEL_LAYERS=IN_MEMORY_LAYERS)
    def test_e005_worker_mode_on_the_in_memory_layer(self) -> None:
        messages = check_settings()
        self.assertEqual(ids(messages), ["caravela_flow.E005"])
        self.assertIsInstance(messages[0], Error)
        self.assertIn("InMemoryChannelLayer", messages[0].msg)

    @override_settings(CHANNEL_LAYERS=IN_MEMORY_LAYERS)
    def test_local_mode_on_the_in_memory_layer_is_fine(self) -> None:
        self.assertEqual(check_settings(), [])

    @override_settings(CARAVELA_FLOW=WORKER, CHANNEL_LAYERS=REDIS_LAYERS)
    def test_worker_mode_on_redis_with_routing_is_fine(self) -> None:
        # The check reads the configuration; it does not connect.
        self.assertEqual(check_settings(), [])

    @modify_settings(INSTALLED_APPS={"remove": ["daphne"]})
    @mock.patch("caravela_flow.checks.other_asgi_servers", return_value=[])
    def test_w001_daphne_not_installed(self, _: Any) -> None:
        messages = check_settings()
        self.assertEqual(ids(messages), ["caravela_flow.W001"])
        self.assertIsInstance(messages[0], Warning)
        self.assertIn("'daphne'", messages[0].msg)

    @override_settings(
        CARAVELA_FLOW=WORKER, CHANNEL_LAYERS=REDIS_LAYERS, ASGI_APPLICATION="no.such.application"
    )
    def test_e006_worker_mode_with_an_asgi_application_that_does_not_load(self) -> None:
        self.assertEqual(ids(check_settings()), ["caravela_flow.E006"])

    @override_settings(
        CARAVELA_FLOW=WORKER,
        CHANNEL_LAYERS=REDIS_LAYERS,
        ASGI_APPLICATION="demo_site.asgi.django_asgi_app",
    )
    def test_e007_worker_mode_without_the_worker_channel_routed(self) -> None:
        messages = check_settings()
        self.assertEqual(ids(messages), ["caravela_flow.E007"])
        self.assertIn("'caravela-flows'", messages[0].msg)

    @override_settings(
        CARAVELA_FLOW={"MODE": "worker", "WORKER_CHANNEL": "other-channel"},
        CHANNEL_LAYERS=REDIS_LAYERS,
    )
    def test_e007_names_the_configured_worker_channel(self) -> None:
        messages = check_settings()
        self.assertEqual(ids(messages), ["caravela_flow.E007"])
        self.assertIn("'other-channel'", messages[0].msg)

    def test_w003_channels_listed_before_caravela_flow_in_worker_mode(self) -> None:
        from django.conf import settings

        apps = [a for a in settings.INSTALLED_APPS if a != "caravela_flow"]
        apps.insert(apps.index("channels") + 1, "caravela_flow")
        with override_settings(
            INSTALLED_APPS=apps, CARAVELA_FLOW=WORKER, CHANNEL_LAYERS=REDIS_LAYERS
        ):
            self.assertEqual(ids(check_settings()), ["caravela_flow.W003"])
        with override_settings(INSTALLED_APPS=apps):
            self.assertEqual(check_settings(), [])  # local mode does not care

    def test_w004_worker_mode_with_a_networked_redis_and_no_password(self) -> None:
        def layers(*hosts: Any) -> dict[str, Any]:
            backend = "channels_redis.core.RedisChannelLayer"
            return {"default": {"BACKEND": backend, "CONFIG": {"hosts": list(hosts)}}}

        warned = [
            "redis://redis.internal:6379/0",
            {"address": "redis://10.0.0.5:6379/0", "socket_timeout": 15},
            {"address": ("redis.internal", 6379)},
            "rediss://redis.internal:6380/0",
        ]
        quiet = [
            "redis://127.0.0.1:6379/0",
            "redis://localhost/0",
            "unix:///run/redis.sock",
            "redis://:secret@redis.internal:6379/0",
            "rediss://caravela:secret@redis.internal:6380/0",
            {"address": "redis://redis.internal:6379/0", "password": "secret"},
        ]
        for host in warned:
            with (
                self.subTest(host=host),
                override_settings(CARAVELA_FLOW=WORKER, CHANNEL_LAYERS=layers(host)),
            ):
                [warning] = check_settings()
                self.assertEqual(warning.id, "caravela_flow.W004")
                self.assertIn("redis.internal" if "internal" in str(host) else "10.0", warning.msg)
                self.assertIn("rediss://", warning.hint)
        for host in quiet:
            with (
                self.subTest(host=host),
                override_settings(CARAVELA_FLOW=WORKER, CHANNEL_LAYERS=layers(host)),
            ):
                self.assertEqual(check_settings(), [])
        with override_settings(CHANNEL_LAYERS=layers(warned[0])):
            self.assertEqual(check_settings(), [])  # local mode never talks to Redis itself

    @override_settings(ASGI_APPLICATION=None, CHANNEL_LAYERS={})
    @modify_settings(INSTALLED_APPS={"remove": ["channels", "daphne"]})
    @mock.patch("caravela_flow.checks.other_asgi_servers", return_value=[])
    def test_several_problems_are_reported_together(self, _: Any) -> None:
        self.assertEqual(
            sorted(ids(check_settings())),
            [
                "caravela_flow.E002",
                "caravela_flow.E003",
                "caravela_flow.W001",
                "caravela_flow.W002",
            ],
        )


class SettingsTests(SimpleTestCase):
    def test_defaults(self) -> None:
        with override_settings(CARAVELA_FLOW=None):
            conf = get_settings()
        self.assertEqual(conf, FlowSettings())
        self.assertEqual(conf.MODE, "local")
        self.assertEqual(conf.WORKER_CHANNEL, "caravela-flows")

    def test_the_settings_are_cached(self) -> None:
        self.assertIs(get_settings(), get_settings())
        first = get_settings()
        with override_settings(SOME_OTHER_SETTING=1):
            self.assertIs(get_settings(), first)

    def test_override_settings_is_honoured_and_undone(self) -> None:
        before = get_settings()
        with override_settings(CARAVELA_FLOW={"MODE": "worker", "RETAIN_SECONDS": 10}):
            conf = get_settings()
            self.assertEqual(conf.MODE, "worker")
            self.assertEqual(conf.RETAIN_SECONDS, 10)
            self.assertEqual(conf.START_TIMEOUT, 5.0)
        self.assertEqual(get_settings(), before)
        self.assertEqual(get_settings().MODE, "local")

    @override_settings(CARAVELA_FLOW={"GROUP_PREFIX": "custom"})
    def test_override_settings_as_a_decorator(self) -> None:
        from caravela_flow.groups import flow_group

        self.assertEqual(get_settings().GROUP_PREFIX, "custom")
        self.assertEqual(flow_group("abc"), "custom.abc")

    def test_bad_settings_raise_improperly_configured(self) -> None:
        cases = [
            ({"MODE": "cloud"}, "MODE"),
            ({"THREADS": True}, "THREADS"),  # a bool is not a thread count
            ({"GROUP_PREFIX": "ünï"}, "GROUP_PREFIX.*'ünï'"),  # Channels would refuse its groups
        ]
        for value, pattern in cases:
            with (
                self.subTest(value=value),
                override_settings(CARAVELA_FLOW=value),
                self.assertRaisesRegex(ImproperlyConfigured, pattern),
            ):
                get_settings()
        with override_settings(CARAVELA_FLOW={"GROUP_PREFIX": "p" * 60, "WORKER_CHANNEL": "w.1"}):
            self.assertEqual(len(get_settings().GROUP_PREFIX), 60)
        self.assertEqual(get_settings().MODE, "local")


def core_layer(*hosts: Any, **config: Any) -> dict[str, Any]:
    backend = "channels_redis.core.RedisChannelLayer"
    return {"default": {"BACKEND": backend, "CONFIG": {"hosts": list(hosts), **config}}}


class RedisTimeoutCheckTests(SimpleTestCase):
    """W020. Only the version of redis-py is mocked."""

    def check(self, layers: dict[str, Any], major: int | None = 8) -> list[Any]:
        with (
            mock.patch("caravela_flow.redis_timeouts.redis_major", return_value=major),
            override_settings(CHANNEL_LAYERS=layers),
        ):
            return check_redis_timeouts()

    def test_redis_8_and_a_bare_url_gives_the_exact_fix(self) -> None:
        [warning] = self.check(core_layer("redis://127.0.0.1:6379/0", prefix="app"))
        self.assertEqual(warning.id, "caravela_flow.W020")
        self.assertIsInstance(warning, Warning)
        self.assertIn("redis-py 8", warning.msg)
        self.assertIn("'redis://127.0.0.1:6379/0'", warning.msg)
        fixed = {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": 15}],
                "prefix": "app",
            },
        }
        self.assertEqual(
            warning.hint, f"Give each host a socket_timeout: CHANNEL_LAYERS['default'] = {fixed!r}"
        )

    def test_hosts_that_time_out(self) -> None:
        cases: list[tuple[Any, Any]] = [
            (
                {"address": "redis://h:6379/0"},
                {"address": "redis://h:6379/0", "socket_timeout": 15},
            ),
            (
                {"address": "redis://h:6379/0", "socket_timeout": 5},
                {"address": "redis://h:6379/0", "socket_timeout": 15},
            ),
            (("h", 6379), {"address": "redis://h:6379/0", "socket_timeout": 15}),
            ("redis://h/0?socket_timeout=2", None),
        ]
        for host, fixed in cases:
            with self.subTest(host=host):
                [warning] = self.check(core_layer(host))
                self.assertEqual(warning.id, "caravela_flow.W020")
                if fixed is not None:
                    self.assertIn(repr([fixed]), warning.hint)

    def test_only_the_hosts_that_time_out_are_changed_in_the_hint(self) -> None:
        good = {"address": "redis://a:6379/0", "socket_timeout": 15}
        [warning] = self.check(core_layer(good, "redis://b:6379/0"))
        self.assertIn(
            repr([good, {"address": "redis://b:6379/0", "socket_timeout": 15}]), warning.hint
        )
        self.assertNotIn("redis://a", warning.msg)

    def test_no_hosts_means_channels_redis_default_host(self) -> None:
        layers = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
        [warning] = self.check(layers)
        self.assertIn("redis://localhost:6379", warning.hint)

    def test_quiet_cases(self) -> None:
        cases: list[tuple[dict[str, Any], int | None]] = [
            (core_layer({"address": "redis://h/0", "socket_timeout": 15}), 8),
            (core_layer({"address": "redis://h/0", "socket_timeout": None}), 8),
            (core_layer("redis://h/0?socket_timeout=10"), 8),
            (core_layer("redis://h:6379/0"), 7),  # redis-py 7 has no default timeout
            (core_layer("redis://h:6379/0"), None),  # redis-py not installed
            (IN_MEMORY_LAYERS, 8),
            ({"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}}, 8),
            ({}, 8),
        ]
        for layers, major in cases:
            with self.subTest(layers=layers, major=major):
                self.assertEqual(self.check(layers, major), [])

    def test_it_checks_the_configured_alias_and_is_registered(self) -> None:
        layers = {"flows": core_layer("redis://h:6379/0")["default"], **IN_MEMORY_LAYERS}
        with override_settings(CARAVELA_FLOW={"CHANNEL_LAYER": "flows"}):
            [warning] = self.check(layers)
            self.assertIn("CHANNEL_LAYERS['flows']", warning.msg)
            with (
                mock.patch("caravela_flow.redis_timeouts.redis_major", return_value=8),
                override_settings(CHANNEL_LAYERS=layers),
            ):
                self.assertIn("caravela_flow.W020", ids(ours(run_checks())))

    def test_redis_major_reads_the_installed_version(self) -> None:
        with mock.patch("caravela_flow.redis_timeouts.metadata.version", return_value="8.1.0"):
            self.assertEqual(redis_major(), 8)
        self.assertEqual(redis_major(), int(importlib.metadata.version("redis").split(".")[0]))


def engine(*processors: str, **extra: Any) -> dict[str, Any]:
    return {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": list(processors)},
        **extra,
    }


class RequestContextProcessorCheckTests(SimpleTestCase):
    """W011: without a request in the context, the template tags make anonymous tokens."""

    def test_an_engine_without_the_request_processor(self) -> None:
        auth = "django.contrib.auth.context_processors.auth"
        with override_settings(TEMPLATES=[engine(auth)]):
            [warning] = check_request_context_processor()
        self.assertEqual(warning.id, "caravela_flow.W011")
        self.assertIsInstance(warning, Warning)
        self.assertIn(
            "TEMPLATES[0] has no 'django.template.context_processors.request'", warning.msg
        )
        self.assertIn("4403", warning.msg)
        self.assertIn("OPTIONS['context_processors']", warning.hint)
        with override_settings(TEMPLATES=[engine(auth)]):
            self.assertIn("caravela_flow.W011", ids(ours(run_checks())))

    def test_no_options_at_all_and_a_named_engine(self) -> None:
        bare = {"BACKEND": "django.template.backends.django.DjangoTemplates", "NAME": "mail"}
        good = engine("django.template.context_processors.request")
        with override_settings(TEMPLATES=[good, bare]):
            [warning] = check_request_context_processor()
        self.assertTrue(warning.msg.startswith("mail has no"), warning.msg)

    def test_quiet_cases(self) -> None:
        jinja = {"BACKEND": "django.template.backends.jinja2.Jinja2", "OPTIONS": {}}
        for templates in ([engine("django.template.context_processors.request")], [jinja], []):
            with self.subTest(templates=templates), override_settings(TEMPLATES=templates):
                self.assertEqual(check_request_context_processor(), [])


class AsgiServerW001Tests(SimpleTestCase):
    """W001 is about runserver; a project with another ASGI server installed does not need it."""

    def find_spec_with(self, *installed: str) -> Any:
        real = importlib.util.find_spec

        def find_spec(name: str, *args: Any) -> Any:
            return object() if name in installed else real(name, *args)

        return mock.patch("caravela_flow.checks.importlib.util.find_spec", find_spec)

    @modify_settings(INSTALLED_APPS={"remove": ["daphne"]})
    def test_uvicorn_installed_quiets_w001(self) -> None:
        for server in ("uvicorn", "hypercorn"):
            with self.subTest(server=server), self.find_spec_with(server):
                self.assertEqual(other_asgi_servers(), [server])
                self.assertEqual(check_settings(), [])

    @modify_settings(INSTALLED_APPS={"remove": ["daphne"]})
    def test_without_any_asgi_server_w001_names_uvicorn_in_its_hint(self) -> None:
        with self.find_spec_with():
            [warning] = check_settings()
        self.assertEqual(warning.id, "caravela_flow.W001")
        self.assertIn("uvicorn", warning.hint)
