"""``runworker`` with caravela_flow's :class:`~caravela_flow.worker.FlowWorker`.

Django takes a command from the first app in ``INSTALLED_APPS`` that has it,
so list ``caravela_flow`` before ``channels`` for this one to be used.
"""

from __future__ import annotations

from channels.management.commands.runworker import Command as ChannelsRunWorker

from caravela_flow.worker import FlowWorker


class Command(ChannelsRunWorker):  # type: ignore[misc]
    help = "Run a Channels worker; hosts caravela_flow runners on the caravela-flows channel."
    worker_class = FlowWorker
