"""The benchmark's flow. It lives in an installed app: workers resolve flow keys only there."""

from __future__ import annotations

from caravela_flow import Flows, flow, repeat, wait_until


class BenchFlows(Flows):
    #: Holds whatever it is signalled, for ever: each signal is one ``flow.state``.
    hold = flow(repeat(wait_until(lambda s: False)))
