"""Exceptions raised by caravela_flow."""

from __future__ import annotations


class FlowError(Exception):
    """Base class of every error caravela_flow raises."""


class FlowNotFound(FlowError, LookupError):
    """No such flow: unknown name, unknown id, or a flow that is no longer running."""


class FlowDefinitionError(FlowError, ValueError):
    """A flow or one of its steps is declared wrongly."""


class NoWorkerAvailable(FlowError):
    """Worker mode: no worker acknowledged a start within the timeout."""


class FlowTimeout(FlowError, TimeoutError):
    """Worker mode: a request to a flow's runner got no answer in time."""


class FlowArgumentError(FlowError, TypeError, ValueError):
    """A public call got an argument it cannot use (a state that cannot travel, …)."""


class FlowUnreachable(FlowNotFound, FlowTimeout):
    """Worker mode: no runner answered for a flow id (unknown, finished long ago, worker down)."""


class MalformedFlowId(FlowNotFound, FlowArgumentError):
    """A flow id that is not 32 lowercase hex digits: no flow can have it."""
