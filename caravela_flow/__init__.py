"""caravela_flow: ephemeral async workflows for Django, pushed live over Channels."""

from .api import aget_state, asignal, astart, astop, get_state, signal, start, stop
from .definition import FlowDefinition, Flows, flow
from .dsl import debounce, each, parallel, race, repeat, run, sequence, set_state, wait, wait_until
from .errors import FlowDefinitionError, FlowError, FlowNotFound, NoWorkerAvailable
from .handle import FlowHandle
from .results import Error, Ok, Retry, Skip
from .tokens import subscription_url

__version__ = "0.1.0"

__all__ = [
    "Error",
    "FlowDefinition",
    "FlowDefinitionError",
    "FlowError",
    "FlowHandle",
    "FlowNotFound",
    "Flows",
    "NoWorkerAvailable",
    "Ok",
    "Retry",
    "Skip",
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
