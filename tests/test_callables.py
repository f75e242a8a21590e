"""Which functions a worker-mode message may name (README: *Trust boundaries*)."""

from __future__ import annotations

import logging
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caravela_flow import FlowArgumentError, remote_callable
from caravela_flow.callables import RefusedCallable, function_path, resolve_function
from tests.flowapp import extras
from tests.flowapp import flows as flowapp_flows

ALLOWED = {
    "tests.flowapp.flows:increment": flowapp_flows.increment,
    "tests.flowapp.flows:put": flowapp_flows.put,
    "tests.flowapp.extras:tag": extras.tag,
}

# Each of these names something a flows module can reach but did not declare.
GADGETS = [
    # The reported gadget: an attribute chain through a module the flows module imports.
    "demo_site.library.flows:logging.config.dictConfig",
    "demo_site.library.flows:logging",
    "tests.flowapp.flows:increment.__globals__",
    "tests.flowapp.flows:Any",  # an imported name
    "tests.flowapp.flows:untagged",  # imported from a module where it is not marked
    "tests.flowapp.extras:untagged",  # defined outside a flows module, not marked
    "tests.flowapp.flows:WorkerFlows",  # a class, not a function
    "tests.flowapp.flows:flow",  # caravela_flow's own function, imported
    "demo_site.library.flows:transaction",
    "demo_site.library.views:book_list",  # an installed app, but not its flows module
    "os:system",
    "subprocess:run",
    "builtins:eval",
    "logging.config:dictConfig",
    "tests.flowapp.flows:",
    ":increment",
    "tests.flowapp.flows:increment:x",
    "tests.flowapp.flows.increment",
    "tests.flowapp.flows:<lambda>",
    "tests.flowapp.flows: increment",
    "x" * 1000,
]


@pytest.mark.parametrize(("path", "fn"), ALLOWED.items())
def test_top_level_functions_of_flows_modules_and_marked_functions_resolve(
    path: str, fn: object
) -> None:
    assert resolve_function(path) is fn
    assert function_path(fn) == path


@pytest.mark.parametrize("path", GADGETS)
def test_everything_else_is_refused(path: str) -> None:
    with pytest.raises(RefusedCallable):
        resolve_function(path)


@pytest.mark.parametrize("bad", [None, 42, b"tests.flowapp.flows:increment", ["a:b"], {"a": 1}])
def test_a_path_that_is_not_a_string_is_refused(bad: object) -> None:
    with pytest.raises(RefusedCallable, match="not a function path"):
        resolve_function(bad)


def test_the_reported_gadget_runs_nothing() -> None:
    import logging.config

    before = logging.config.dictConfig
    with pytest.raises(RefusedCallable, match="not a function path"):
        resolve_function("demo_site.library.flows:logging.config.dictConfig")
    assert logging.config.dictConfig is before


def test_a_module_is_never_imported_on_a_path_s_word() -> None:
    name = "tests.flowapp.never_imported"
    assert name not in sys.modules
    with pytest.raises(RefusedCallable):
        resolve_function(f"{name}:anything")
    assert name not in sys.modules


def test_the_caller_refuses_what_a_worker_would_refuse() -> None:
    with pytest.raises(FlowArgumentError, match="neither"):
        function_path(extras.untagged)
    with pytest.raises(FlowArgumentError, match="module-level function"):
        function_path(len)
    with pytest.raises(TypeError, match="lambda or a closure"):
        function_path(lambda state: state)


def test_remote_callable_marks_module_level_functions_only() -> None:
    class Holder:
        def method(self) -> None: ...

    with pytest.raises(FlowArgumentError, match="nested"):
        remote_callable(Holder.method)
    with pytest.raises(FlowArgumentError, match="module-level functions"):
        remote_callable(print)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=120),
        st.from_regex(r"\A[a-z_.]{1,40}:[A-Za-z_.]{1,40}\Z"),
        st.builds(
            lambda module, name: f"{module}:{name}",
            st.sampled_from(["tests.flowapp.flows", "demo_site.library.flows", "os", "logging"]),
            st.sampled_from(
                [*dir(flowapp_flows), *dir(sys.modules["demo_site.library.flows"]), "system"]
            ),
        ),
    )
)
def test_fuzz_only_declared_functions_ever_resolve(path: str) -> None:
    try:
        fn = resolve_function(path)
    except RefusedCallable:
        return
    declared = set(ALLOWED.values()) | {
        value
        for module in ("tests.flowapp.flows", "demo_site.library.flows")
        for value in vars(sys.modules[module]).values()
        if getattr(value, "__module__", None) == module and callable(value)
    }
    assert fn in declared, path


def test_the_caller_s_refusal_is_a_clear_error_not_a_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), pytest.raises(FlowArgumentError):
        function_path(extras.untagged)
    assert not caplog.records
