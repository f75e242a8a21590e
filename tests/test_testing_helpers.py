"""caravela_flow.testing: FlowProbe, start_probe/astart_probe and virtual_time.

Written as Django test cases, so both ``pytest`` and ``manage.py test`` run them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from django.test import SimpleTestCase, TestCase

from caravela_flow import (
    FlowHandle,
    Flows,
    asignal,
    astop,
    flow,
    repeat,
    set_state,
    signal,
    start,
    stop,
    wait,
    wait_until,
)
from caravela_flow.loops import background_loop
from caravela_flow.supervisor import supervisor
from caravela_flow.testing import FlowProbe, astart_probe, start_probe, virtual_time


def is_ready(state: dict) -> bool:
    return bool(state.get("ready"))


def mark_done(state: dict) -> dict:
    return {**state, "stage": "done"}


def bump(state: dict) -> dict:
    return {**state, "n": state["n"] + 1}


class HelperFlows(Flows):
    long_wait = flow(wait(60_000), set_state(mark_done), initial_state={"stage": "waiting"})
    gated = flow(
        wait_until(is_ready),
        set_state(mark_done),
        initial_state={"ready": False, "stage": "gated", "n": 0},
    )
    ticking = flow(repeat(wait(1_000), set_state(bump)), initial_state={"n": 0})


class VirtualTimeTests(SimpleTestCase):
    @virtual_time
    async def test_a_minute_long_wait_takes_no_real_time(self) -> None:
        loop = asyncio.get_running_loop()
        began_real, began_loop = time.monotonic(), loop.time()
        probe = await astart_probe(HelperFlows, "long_wait")
        final = await probe.await_end(timeout=120)
        self.assertEqual(final["type"], "flow.done")
        self.assertEqual(final["state"], {"stage": "done"})
        self.assertGreaterEqual(loop.time() - began_loop, 60)
        self.assertLess(time.monotonic() - began_real, 1.0)

    @virtual_time
    async def test_flows_run_on_the_tests_own_loop(self) -> None:
        probe = await astart_probe(HelperFlows, "ticking")
        assert probe.handle is not None
        self.assertIs(supervisor.get(probe.handle.id).loop, asyncio.get_running_loop())
        self.assertIsNot(supervisor.get(probe.handle.id).loop, background_loop())
        state = await probe.await_state(lambda s: s["n"] >= 5, timeout=10)
        self.assertEqual(state["n"], 5)
        self.assertGreaterEqual(asyncio.get_running_loop().time(), 5)
        await astop(probe.handle)

    @virtual_time
    async def test_await_state_times_out_on_the_loop_clock(self) -> None:
        loop = asyncio.get_running_loop()
        began_real, began_loop = time.monotonic(), loop.time()
        probe = await astart_probe(HelperFlows, "gated")
        with self.assertRaises(TimeoutError):
            await probe.await_state({"stage": "done"}, timeout=30)
        self.assertGreaterEqual(loop.time() - began_loop, 30)
        self.assertLess(time.monotonic() - began_real, 1.0)
        with self.assertRaises(TimeoutError):
            await probe.await_end(timeout=30)
        self.assertIsNone(probe.final)

    def test_flows_started_inside_end_with_the_loop(self) -> None:
        seen: dict[str, FlowHandle] = {}

        @virtual_time
        async def scenario() -> str:
            probe = await astart_probe(HelperFlows, "ticking")
            assert probe.handle is not None
            seen["handle"] = probe.handle
            await probe.await_state({"n": 2})
            return "returned"

        self.assertEqual(scenario(), "returned")
        runner = supervisor.get(seen["handle"].id)
        self.assertTrue(runner.loop.is_closed())
        self.assertEqual(runner.status.value, "stopped")

    def test_virtual_time_keeps_the_function_name(self) -> None:
        async def some_test() -> None:
            pass

        self.assertEqual(virtual_time(some_test).__name__, "some_test")
        self.assertFalse(asyncio.iscoroutinefunction(virtual_time(some_test)))


class AsyncProbeTests(SimpleTestCase):
    async def test_await_state_and_await_end_on_a_real_loop(self) -> None:
        probe = await astart_probe(HelperFlows, "gated", {"n": 7})
        assert probe.handle is not None
        self.assertIs(supervisor.get(probe.handle.id).loop, asyncio.get_running_loop())
        # The current state matches at once: nothing has been sent yet.
        state = await probe.await_state({"stage": "gated", "n": 7}, timeout=1)
        self.assertEqual(state, {"ready": False, "stage": "gated", "n": 7})
        self.assertEqual(probe.messages, [])
        await asignal(probe.handle, {"ready": True})
        state = await probe.await_state({"stage": "done"}, timeout=5)
        self.assertEqual(state, {"ready": True, "stage": "done", "n": 7})
        final = await probe.await_end(timeout=5)
        self.assertEqual(final["type"], "flow.done")
        self.assertEqual(final["state"], state)
        self.assertIs(probe.final, final)

    @virtual_time
    async def test_dict_match_is_a_subset_match(self) -> None:
        probe = await astart_probe(HelperFlows, "gated")
        assert probe.handle is not None
        # Extra keys in the state do not matter; every given key must be present and equal.
        state = await probe.await_state({"stage": "gated"})
        self.assertEqual(state["n"], 0)
        with self.assertRaises(TimeoutError):
            await probe.await_state({"stage": "gated", "missing": None}, timeout=1)
        with self.assertRaises(TimeoutError):
            await probe.await_state({"n": "0"}, timeout=1)
        await asignal(probe.handle, {"ready": True})
        state = await probe.await_state({"ready": True, "stage": "done"})
        self.assertEqual(state, {"ready": True, "stage": "done", "n": 0})

    @virtual_time
    async def test_predicate_match(self) -> None:
        probe = await astart_probe(HelperFlows, "ticking")
        assert probe.handle is not None
        state = await probe.await_state(lambda s: s["n"] >= 3 and s["n"] % 3 == 0)
        self.assertEqual(state, {"n": 3})
        # A predicate result only needs to be truthy.
        state = await probe.await_state(lambda s: s["n"] - 4 and s["n"] > 4)
        self.assertEqual(state, {"n": 5})
        await astop(probe.handle)
        final = await probe.await_end()
        self.assertEqual(final["type"], "flow.stopped")

    @virtual_time
    async def test_await_state_sees_states_sent_while_it_waits(self) -> None:
        probe = await astart_probe(HelperFlows, "ticking")
        assert probe.handle is not None
        # A state that is never current when asked for, only passed through in messages.
        waiter = asyncio.ensure_future(probe.await_state({"n": 2}))
        state = await waiter
        self.assertEqual(state, {"n": 2})
        self.assertEqual(probe.states[:2], [{"n": 1}, {"n": 2}])
        await astop(probe.handle)

    async def test_a_bad_match_is_a_type_error(self) -> None:
        probe = await astart_probe(HelperFlows, "gated")
        assert probe.handle is not None
        with self.assertRaises(TypeError):
            await probe.await_state(42, timeout=1)  # type: ignore[arg-type]
        await astop(probe.handle)


class SyncProbeTests(SimpleTestCase):
    def test_wait_state_and_wait_end_on_the_background_loop(self) -> None:
        probe = start_probe(HelperFlows, "gated", {"n": 1})
        assert probe.handle is not None
        self.assertIs(supervisor.get(probe.handle.id).loop, background_loop())
        self.assertEqual(probe.wait_state({"ready": False}, timeout=1)["n"], 1)
        signal(probe.handle, {"ready": True})
        state = probe.wait_state({"stage": "done"}, timeout=5)
        self.assertEqual(state, {"ready": True, "stage": "done", "n": 1})
        final = probe.wait_end(timeout=5)
        self.assertEqual(final["type"], "flow.done")
        self.assertEqual(final["state"], state)
        versions = [m["version"] for m in probe.messages]
        self.assertEqual(versions, list(range(1, len(versions) + 1)))
        self.assertEqual(probe.states[-1], state)

    def test_predicate_match(self) -> None:
        probe = start_probe(HelperFlows, "gated")
        assert probe.handle is not None
        for _ in range(3):
            signal(probe.handle, bump)
        self.assertEqual(probe.wait_state(lambda s: s["n"] == 3, timeout=5)["n"], 3)
        self.assertEqual([s["n"] for s in probe.states], [1, 2, 3])
        stop(probe.handle)
        self.assertEqual(probe.wait_end(timeout=5)["type"], "flow.stopped")

    def test_timeouts_raise_timeout_error(self) -> None:
        probe = start_probe(HelperFlows, "gated")
        assert probe.handle is not None
        with self.assertRaisesRegex(TimeoutError, "no state matching"):
            probe.wait_state({"stage": "done"}, timeout=0.05)
        with self.assertRaisesRegex(TimeoutError, "did not end"):
            probe.wait_end(timeout=0.05)
        with self.assertRaises(TypeError):
            probe.wait_state("done", timeout=0.05)  # type: ignore[arg-type]
        stop(probe.handle)
        self.assertEqual(probe.wait_end(timeout=5)["type"], "flow.stopped")

    def test_a_probe_passed_as_notify(self) -> None:
        probe = FlowProbe()
        handle = start(HelperFlows, "gated", notify=probe)
        with self.assertRaisesRegex(RuntimeError, "this FlowProbe has no flow yet"):
            probe.handle  # noqa: B018 - the property raises
        self.assertIsNone(probe.final)
        signal(handle, {"ready": True})
        final = probe.wait_end(timeout=5)
        self.assertEqual(final["flow_id"], handle.id)
        self.assertEqual(final["state"]["stage"], "done")
        self.assertEqual(probe.states[-1], final["state"])

    def test_a_probe_passed_as_notify_is_given_its_handle(self) -> None:
        probe = FlowProbe()
        handle = start(HelperFlows, "gated", {"n": 7}, notify=probe)
        probe.handle = handle
        self.assertIs(probe.handle, handle)
        # The current state counts once the probe knows its flow.
        self.assertEqual(probe.wait_state({"n": 7}, timeout=1)["stage"], "gated")
        stop(handle)
        self.assertEqual(probe.wait_end(timeout=5)["type"], "flow.stopped")

    def test_handle_must_be_a_flow_handle(self) -> None:
        probe = FlowProbe()
        with self.assertRaisesRegex(TypeError, "probe.handle must be a FlowHandle, got 'abc'"):
            probe.handle = "abc"  # type: ignore[assignment]


def from_another_thread(
    probe: FlowProbe, message: dict[str, Any], wait: float | None = None
) -> None:
    """Deliver ``message`` to ``probe`` as a flow on another loop's thread would."""
    sender = threading.Thread(target=probe, args=(message,))
    sender.start()
    sender.join(wait)


def state_message(state: dict[str, Any], kind: str = "state") -> dict[str, Any]:
    return {"type": f"flow.{kind}", "flow_id": "f" * 32, "version": 1, "state": state}


class ProbeRaceTests(SimpleTestCase):
    """A message that arrives from another thread just before a probe starts waiting.

    Real time here: under virtual time an idle loop jumps to its next timer
    without waiting for wake-ups from other threads.
    """

    def deliver_after_the_first_scan(self, probe: FlowProbe, message: dict[str, Any]) -> None:
        original = probe._scan
        calls = []

        def scan(start: int, match: Any) -> Any:
            result = original(start, match)
            calls.append(start)
            if len(calls) == 1:  # the look before waiting has just missed it
                from_another_thread(probe, message)
            return result

        probe._scan = scan  # type: ignore[method-assign]

    def test_wait_state_does_not_miss_it(self) -> None:
        probe = FlowProbe()
        self.deliver_after_the_first_scan(probe, state_message({"n": 1}))
        began = time.monotonic()
        self.assertEqual(probe.wait_state({"n": 1}, timeout=5), {"n": 1})
        self.assertLess(time.monotonic() - began, 2.5)  # at once, not when the timeout is up

    async def test_await_state_does_not_miss_it(self) -> None:
        probe = FlowProbe()
        self.deliver_after_the_first_scan(probe, state_message({"n": 1}))
        self.assertEqual(await probe.await_state({"n": 1}, timeout=2), {"n": 1})

    async def test_await_end_does_not_miss_it(self) -> None:
        done = state_message({"n": 2}, "done")

        class LateProbe(FlowProbe):
            looked = False

            @property
            def final(self) -> dict[str, Any] | None:
                found = super().final
                if not self.looked:
                    self.looked = True
                    from_another_thread(self, done, wait=0.1)
                return found

        probe = LateProbe()
        self.assertEqual(await probe.await_end(timeout=2), done)


class ProbeInsideTransactionTests(TestCase):
    """Probes work inside Django's TestCase too (flows that do not touch the database)."""

    def test_sync_probe(self) -> None:
        probe = start_probe(HelperFlows, "gated")
        assert probe.handle is not None
        signal(probe.handle, {"ready": True})
        self.assertEqual(probe.wait_end(timeout=5)["state"]["stage"], "done")

    @virtual_time
    async def test_async_probe(self) -> None:
        probe = await astart_probe(HelperFlows, "long_wait")
        self.assertEqual((await probe.await_end(timeout=100))["type"], "flow.done")
