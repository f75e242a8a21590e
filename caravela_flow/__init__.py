"""caravela_flow: ephemeral async workflows for Django, pushed live over Channels."""

from .api import aget_state, asignal, astart, astop, get_state, signal, start, stop
from .callables import RefusedCallable, remote_callable
from .definition import FlowDefinition, Flows, flow
from .dsl import debounce, each, parallel, race, repeat, run, sequence, set_state, wait, wait_until
from .errors import (
    FlowArgumentError,
    FlowDefinitionError,
    FlowError,
    FlowNotFound,
    FlowTimeout,
    FlowUnreachable,
    MalformedFlowId,
    NoWorkerAvailable,
)
from .handle import FlowHandle
from .results import Error, Ok, Retry, Skip
from .state import StateError
from .tokens import TokenRefused, subscription_url

__version__ = "0.1.0"

__all__ = [
    "Error",
    "FlowArgumentError",
    "FlowDefinition",
    "FlowDefinitionError",
    "FlowError",
    "FlowHandle",
    "FlowNotFound",
    "FlowTimeout",
    "FlowUnreachable",
    "Flows",
    "MalformedFlowId",
    "NoWorkerAvailable",
    "Ok",
    "RefusedCallable",
    "Retry",
    "Skip",
    "StateError",
    "TokenRefused",
    "aget_state",
    "asignal",
    "astart",
    "astop",
    "debounce",
    "each",
    "flow",
    "get_state",
    "parallel",
    "race",
    "remote_callable",
    "repeat",
    "run",
    "sequence",
    "set_state",
    "signal",
    "start",
    "stop",
    "subscription_url",
    "wait",
    "wait_until",
]
