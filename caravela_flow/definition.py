"""``Flows`` classes and the ``FlowDefinition`` objects their attributes hold."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, Unpack, get_args

from .errors import FlowDefinitionError, FlowNotFound
from .registry import registry
from .state import StateError, check_state
from .steps import Sequence, Step
from .types import FlowOptions, Restart, State

#: The restart policies (the values of :data:`caravela_flow.types.Restart`).
RESTART_POLICIES: tuple[Restart, ...] = get_args(Restart)
_OPTIONS = frozenset(FlowOptions.__annotations__)


def _key(owner: type, name: str) -> str:
    return f"{owner.__module__}.{owner.__qualname__}.{name}"


#: ``flow()`` options besides the supervision ones.
_NAMING = frozenset({"verbose_name"})
#: Longest ``verbose_name``.
MAX_VERBOSE_NAME = 100


def words(name: str) -> str:
    """An identifier in words: ``"sync_book"`` → ``"Sync book"``."""
    text = " ".join(name.replace("_", " ").split())
    return text[:1].upper() + text[1:] if text else name


class FlowDefinition:
    """A declared flow: its body, initial state and supervision options.

    Made by :func:`caravela_flow.flow`; named when assigned to a ``Flows`` class.
    """

    __slots__ = (
        "body",
        "initial_state",
        "key",
        "max_restarts",
        "max_seconds",
        "name",
        "restart",
        "verbose_name",
    )

    def __init__(
        self,
        body: Sequence,
        initial_state: State,
        restart: Restart = "transient",
        max_restarts: int = 3,
        max_seconds: float = 5,
        verbose_name: str = "",
    ) -> None:
        self.body = body
        self.initial_state = initial_state
        self.restart = restart
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.name: str = ""
        self.key: str = ""
        #: The flow's name in words, for people ("Book sync"); by default from its
        #: attribute's name (``sync_book`` → "Sync book").
        self.verbose_name = verbose_name

    def __set_name__(self, owner: type, name: str) -> None:
        # The first binding names the flow. A second one is refused by
        # Flows.__init_subclass__: an exception raised here would reach the
        # user wrapped in a RuntimeError on Python 3.11.
        if not self.key:
            self.name = name
            self.key = _key(owner, name)
            if not self.verbose_name:
                self.verbose_name = words(name)

    def __repr__(self) -> str:
        return f"<FlowDefinition {self.key or '(unbound)'}>"


def flow(
    *steps: Step, initial_state: State | None = None, **options: Unpack[FlowOptions]
) -> FlowDefinition:
    """Declare a flow whose body is ``sequence(*steps)``.

    Options: ``restart`` (``"transient"``: restart after a crash, the default;
    ``"temporary"``: never), ``max_restarts`` (default 3) in ``max_seconds``
    (default 5), ``verbose_name`` (the flow's name in words for people, as
    dashboards and ``manage.py flows`` show it; default from the attribute's
    name: ``sync_book`` → "Sync book").
    """
    unknown = set(options) - _OPTIONS - _NAMING
    if unknown:
        raise FlowDefinitionError(
            f"flow: unknown option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_OPTIONS | _NAMING))}"
        )
    if not steps:
        raise FlowDefinitionError("flow: a flow needs at least one step")
    body = Sequence(steps)
    if initial_state is None:
        initial_state = {}
    try:
        initial = check_state(initial_state, "flow: initial_state")
    except StateError as exc:
        raise FlowDefinitionError(str(exc)) from None
    restart = options.get("restart", "transient")
    if restart not in RESTART_POLICIES:
        raise FlowDefinitionError(
            f"flow: unknown restart {restart!r}; use one of {', '.join(RESTART_POLICIES)}"
        )
    max_restarts = options.get("max_restarts", 3)
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise FlowDefinitionError(f"flow: max_restarts must be an int >= 0, got {max_restarts!r}")
    given = options.get("max_seconds", 5)
    max_seconds = given.total_seconds() if isinstance(given, timedelta) else given
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, (int, float))
        or not max_seconds > 0  # also refuses NaN
    ):
        raise FlowDefinitionError(
            f"flow: max_seconds must be a number of seconds > 0 or a timedelta, got {given!r}"
        )
    verbose_name = dict(options).get("verbose_name")  # a name, not a supervision option
    if verbose_name is not None and (
        not isinstance(verbose_name, str)
        or not verbose_name.strip()
        or len(verbose_name) > MAX_VERBOSE_NAME
    ):
        raise FlowDefinitionError(
            f"flow: verbose_name must be a non-empty string of at most {MAX_VERBOSE_NAME} "
            f"characters, got {verbose_name!r:.80}"
        )
    named = (verbose_name or "").strip()
    return FlowDefinition(body, initial, restart, max_restarts, float(max_seconds), named)


class Flows:
    """Base class that groups flows; each ``flow(...)`` attribute is registered.

    Subclasses register under ``"<module>.<qualname>.<attr>"``.
    """

    __flows__: ClassVar[dict[str, FlowDefinition]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        flows: dict[str, FlowDefinition] = {}
        for base in reversed(cls.__mro__[1:]):
            flows.update(getattr(base, "__flows__", {}))
        own = {name: v for name, v in vars(cls).items() if isinstance(v, FlowDefinition)}
        for name, value in own.items():
            key = _key(cls, name)
            if value.key != key:
                raise FlowDefinitionError(
                    f"flow {value.key!r} is also assigned to {key!r}; "
                    "declare a separate flow() for each"
                )
        for value in own.values():
            registry.register(value)
        flows.update(own)
        cls.__flows__ = flows

    @classmethod
    def get_flow(cls, name: str) -> FlowDefinition:
        """The flow called ``name``, or :class:`FlowNotFound` naming the known ones."""
        if not isinstance(name, str):
            raise FlowNotFound(f"flow name must be a str, got {name!r}")
        try:
            return cls.__flows__[name]
        except KeyError:
            known = ", ".join(sorted(cls.__flows__)) or "none"
            raise FlowNotFound(
                f"{cls.__qualname__} has no flow {name!r}; its flows: {known}"
            ) from None
