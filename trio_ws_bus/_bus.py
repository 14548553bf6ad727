"""The topic message bus: synchronous publish, routing, handlers, backpressure.

Rules the bus obeys (everything else follows from them):

1. ``publish()`` is synchronous and never blocks: each subscription
   (:mod:`trio_ws_bus._subscription`) has its own bounded buffer and takes the
   message, buffers it, or resolves a full buffer by its `Overflow` policy, so
   one stalled subscriber never delays the publisher or the others.
2. Backpressure is the publisher's choice: `MessageBus.congested` says that a
   subscription passed its high-water mark, and ``await`` `MessageBus.drain`
   gives subscribers a turn, bounded by a patience after which the laggards
   stop holding it back. The connection's reader does this between messages,
   so TCP slows the server instead of a buffer overflowing.
3. Registration is copy-on-write: the routing tables hold tuples that are
   replaced, never mutated. A publish iterates the snapshot it started with, so a
   handler may subscribe, unsubscribe, publish or ``clear()`` safely; such
   changes take effect from the next publish.
4. Routing is an exact-topic dict lookup plus one ``str.startswith`` call with
   the tuple of every pattern's prefix (the patterns are scanned one by one only
   when one of them matches). Topics nobody listens to cost one failed lookup,
   however many other topics exist.
5. A subscription is registered when its context manager is entered and removed
   when it exits, whatever the exit; a receive side closed behind the bus's back
   is removed at the next publish that reaches it.
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar, final, overload

import attrs
import trio
from trio.lowlevel import enable_ki_protection

from ._logs import get_logger
from ._subscription import DEFAULT_MAX_BUFFER, Backlog, Overflow, Subscription
from ._topics import (
    ALERTS_TOPIC,
    CONNECTION_TOPIC,
    ERROR_TOPIC,
    INVALID_TOPIC,
    Topic,
    _PlainTopic,
    telemetry_topic,
)

__all__ = [
    "ALERTS_TOPIC",
    "CONNECTION_TOPIC",
    "DEFAULT_MAX_BUFFER",
    "ERROR_TOPIC",
    "INVALID_TOPIC",
    "BusStatistics",
    "MessageBus",
    "Overflow",
    "Subscription",
    "Topic",
    "telemetry_topic",
]

logger = get_logger("trio_ws_bus.bus")

_P = TypeVar("_P")


def _check_topic(topic: object) -> str:
    """Validate a topic given to ``subscribe``/``on``/``listener_count``."""
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    star = topic.find("*")
    if star != -1 and star != len(topic) - 1:
        raise ValueError(f"'*' may only end a topic (a prefix pattern), got {topic!r}")
    return topic


@final
class _SubscribeContext:
    """What `MessageBus.subscribe` returns: registers on enter, removes on exit."""

    __slots__ = ("_bus", "_max_buffer", "_overflow", "_subscription", "_topic")

    def __init__(
        self, bus: MessageBus, topic: str, max_buffer: int, overflow: Overflow
    ) -> None:
        self._bus = bus
        self._topic = topic
        self._max_buffer = max_buffer
        self._overflow = overflow
        self._subscription: Subscription[Any] | None = None

    async def __aenter__(self) -> Subscription[Any]:
        # No checkpoint: the subscription is registered before any other task
        # runs, so nothing published after `async with` starts can be missed.
        if self._subscription is not None:
            raise RuntimeError("a subscribe() context manager can be entered only once")
        bus = self._bus
        subscription: Subscription[Any] = Subscription._create(
            self._topic, self._max_buffer, self._overflow, bus._backlog, bus._unregister
        )
        self._subscription = subscription
        self._bus._register(subscription)
        return subscription

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Synchronous on purpose: cleanup cannot be interrupted by a cancellation.
        if self._subscription is not None:
            self._subscription._close()


@final
class _Handler:
    """One registration made by `MessageBus.on` (identity matters, not equality)."""

    __slots__ = ("function", "warned")

    def __init__(self, function: Callable[[Any], object]) -> None:
        self.function = function
        self.warned = False


@final
class _Route:
    """Everything listening on one topic string (tuples replaced, never mutated)."""

    __slots__ = ("handlers", "subscriptions")

    def __init__(self) -> None:
        self.subscriptions: tuple[Subscription[Any], ...] = ()
        self.handlers: tuple[_Handler, ...] = ()


def _frozen_counts(counts: Mapping[str, int]) -> Mapping[str, int]:
    """A read-only copy, so that a snapshot never changes after the fact."""
    return MappingProxyType(dict(counts))


@attrs.frozen
class BusStatistics:
    """A snapshot of a `MessageBus`, returned by `MessageBus.statistics`."""

    topics: int
    """Distinct topic strings (patterns included) with at least one listener."""
    subscriptions: int
    """Open subscriptions."""
    handlers: int
    """Registered handlers."""
    published: int
    """Calls to ``publish()`` so far."""
    delivered: int
    """Deliveries so far: the sum of ``publish()``'s return values."""
    dropped: int
    """Messages lost to overflow policies so far, all subscriptions together
    (including subscriptions that have ended); `Overflow.DROP_OLDEST` counts the
    evicted messages."""
    handler_errors: int
    """Handler calls that raised, or returned an awaitable instead of running."""
    dropped_by_topic: Mapping[str, int] = attrs.field(
        converter=_frozen_counts, hash=False
    )
    """The losses in `dropped` by the topic each subscription was opened on
    (a pattern such as ``"telemetry:*"`` is its own key), including
    subscriptions that have ended; only topics that lost a message appear. A
    read-only mapping whose values sum to `dropped`."""
    buffered: int
    """Messages waiting in open subscriptions right now, all together."""
    max_buffered: int
    """Messages waiting in the fullest open subscription right now: how far
    the slowest subscriber lags (0 without subscriptions)."""


@final
class MessageBus:
    """Routes payloads published on topics to subscriptions and handlers.

    A resource, not a value: compared by identity. Not thread-safe: use it from
    one Trio run (from a thread: ``trio.from_thread.run_sync(bus.publish, ...)``).

    Topics are plain strings, matched exactly on publish. A topic given to
    `subscribe` or `on` that ends in ``*`` is a prefix pattern:
    ``"telemetry:*"`` gets every topic that starts with ``"telemetry:"``,
    ``"*"`` gets everything. ``*`` anywhere else is an error.

    Each publish delivers to exact listeners first, then to patterns in the
    order they were first registered; within a topic string, subscriptions in
    registration order, then handlers in registration order. Every subscription
    receives its messages in publish order. A subscriber listening both exactly
    and by a pattern holds separate subscriptions, and each gets its copy.
    """

    __slots__ = (
        "_backlog",
        "_delivered",
        "_exact",
        "_handler_errors",
        "_pattern_list",
        "_pattern_prefixes",
        "_patterns",
        "_published",
    )

    def __init__(self) -> None:
        self._exact: dict[str, _Route] = {}
        self._patterns: dict[str, _Route] = {}  # keyed by the pattern, "*" included
        # (prefix, route) pairs scanned by publish(); rebuilt when patterns change.
        self._pattern_list: tuple[tuple[str, _Route], ...] = ()
        # Every prefix of _pattern_list, for one startswith() call per publish.
        self._pattern_prefixes: tuple[str, ...] = ()
        self._published = 0
        self._delivered = 0
        self._backlog = Backlog()  # drops by topic, congested subscriptions
        self._handler_errors = 0

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<MessageBus topics={stats.topics} subscriptions={stats.subscriptions} "
            f"handlers={stats.handlers}>"
        )

    # -- subscribing -----------------------------------------------------------

    @overload
    def subscribe(
        self,
        topic: Topic[_P],
        *,
        max_buffer: int = ...,
        overflow: Overflow = ...,
    ) -> AbstractAsyncContextManager[Subscription[_P]]: ...
    @overload
    def subscribe(
        self,
        topic: _PlainTopic,
        *,
        max_buffer: int = ...,
        overflow: Overflow = ...,
    ) -> AbstractAsyncContextManager[Subscription[Any]]: ...
    def subscribe(  # type: ignore[misc]  # a _PlainTopic is a str
        self,
        topic: str,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        overflow: Overflow = Overflow.DROP_OLDEST,
    ) -> AbstractAsyncContextManager[Subscription[Any]]:
        """Subscribe to a topic (or ``prefix*`` pattern) with a bounded buffer.

        Use as ``async with bus.subscribe(topic) as subscription:``. The
        subscription is registered when the block is entered (without a
        checkpoint, so nothing published from then on is missed) and removed
        when it exits, whatever the exit: exception, cancellation or
        `MessageBus.clear`. Each ``subscribe()`` call makes one context manager,
        to be entered once.

        Args:
            topic: The topic, or a prefix pattern ending in ``*``.
            max_buffer: How many messages may wait unreceived (``>= 1``); see
                `DEFAULT_MAX_BUFFER`. There is no unbounded option: a stalled
                subscriber would grow without limit.
            overflow: What to do with a message that finds the buffer full.

        Returns:
            An async context manager yielding the `Subscription`.

        Raises:
            ValueError: If the topic is empty, not a string, or has a ``*``
                other than at its end; if ``max_buffer`` is below 1.
            TypeError: If ``max_buffer`` is not an int, or ``overflow`` is not
                an `Overflow`.
        """
        _check_topic(topic)
        if isinstance(max_buffer, bool):
            raise TypeError(f"max_buffer must be an int, got {max_buffer!r}")
        try:
            max_buffer = operator.index(max_buffer)
        except TypeError:
            raise TypeError(f"max_buffer must be an int, got {max_buffer!r}") from None
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer!r}")
        if not isinstance(overflow, Overflow):
            raise TypeError(f"overflow must be an Overflow member, got {overflow!r}")
        return _SubscribeContext(self, topic, max_buffer, overflow)

    @overload
    def on(
        self, topic: Topic[_P], handler: Callable[[_P], object]
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self, topic: _PlainTopic, handler: Callable[[Any], object]
    ) -> Callable[[], None]: ...
    def on(  # type: ignore[misc]  # a _PlainTopic is a str
        self, topic: str, handler: Callable[[Any], object]
    ) -> Callable[[], None]:
        """Call ``handler(payload)`` synchronously for every message on ``topic``.

        The handler runs inside ``publish()``, so it must be quick and must not
        block. An exception it raises is logged (logger ``trio_ws_bus.bus``,
        with the topic) and counted in `BusStatistics.handler_errors`; the other
        listeners still get the message. Handlers must be plain functions: an
        ``async def`` handler is refused here, and a handler found returning an
        awaitable has that awaitable closed and counted as an error (logged
        once per registration). Each call is its own registration, even for
        the same function.

        Args:
            topic: The topic, or a prefix pattern ending in ``*``.
            handler: Called with the payload.

        Returns:
            A function that removes this registration; calling it again, or
            after `clear`, does nothing.

        Raises:
            ValueError: If the topic is invalid (see `subscribe`).
            TypeError: If ``handler`` is not callable, or is an ``async def``
                function.
        """
        _check_topic(topic)
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        if inspect.iscoroutinefunction(handler):
            raise TypeError(
                f"handler must be a synchronous function, got async {handler!r}; "
                "use subscribe() to consume messages from a task"
            )
        entry = _Handler(handler)
        route = self._route_for(topic)
        route.handlers = (*route.handlers, entry)

        def unsubscribe() -> None:
            routes = self._routes_of(topic)
            route = routes.get(topic)
            if route is not None and entry in route.handlers:
                route.handlers = tuple(h for h in route.handlers if h is not entry)
                self._drop_if_empty(topic, route)

        return unsubscribe

    def listener_count(self, topic: str) -> int:
        """Return how many subscriptions and handlers are registered on ``topic``.

        Exact string match: ``listener_count("telemetry:*")`` counts the
        listeners of that pattern, not those of ``"telemetry:dev1"``.

        Raises:
            ValueError: If the topic is invalid (see `subscribe`).
        """
        _check_topic(topic)
        route = self._routes_of(topic).get(topic)
        if route is None:
            return 0
        return len(route.subscriptions) + len(route.handlers)

    def clear(self) -> None:
        """Close every subscription and remove every handler.

        Closed subscriptions still deliver what they had buffered (and a
        pending `SubscriberLagged`); after that their ``receive()`` raises
        `trio.EndOfChannel`, so ``async for`` loops end. The bus stays usable.
        Counters in `statistics` are kept.
        """
        routes = [*self._exact.values(), *self._patterns.values()]
        self._exact = {}
        self._patterns = {}
        self._pattern_list = ()
        self._pattern_prefixes = ()
        for route in routes:
            for subscription in route.subscriptions:
                subscription._end()

    def statistics(self) -> BusStatistics:
        """Return counters and sizes of this bus (see `BusStatistics`)."""
        routes = [*self._exact.values(), *self._patterns.values()]
        waiting = [
            subscription.buffered
            for route in routes
            for subscription in route.subscriptions
        ]
        return BusStatistics(
            topics=len(routes),
            subscriptions=len(waiting),
            handlers=sum(len(route.handlers) for route in routes),
            published=self._published,
            delivered=self._delivered,
            dropped=sum(self._backlog.dropped.values()),
            handler_errors=self._handler_errors,
            dropped_by_topic=self._backlog.dropped,
            buffered=sum(waiting),
            max_buffered=max(waiting, default=0),
        )

    # -- publishing --------------------------------------------------------------

    @overload
    def publish(self, topic: Topic[_P], payload: _P) -> int: ...
    @overload
    def publish(self, topic: _PlainTopic, payload: object) -> int: ...
    @enable_ki_protection  # type: ignore[misc]  # a _PlainTopic is a str
    def publish(self, topic: str, payload: object) -> int:
        """Deliver ``payload`` to every listener of ``topic``; never blocks.

        The topic is taken literally (no validation, no pattern expansion):
        it reaches the exact listeners of that string and every pattern whose
        prefix it starts with. Nothing a subscriber or handler does makes this
        raise; a full buffer is handled by the subscription's `Overflow`
        policy. The payload object is shared, never copied.

        Args:
            topic: The topic to publish on.
            payload: Any object.

        Returns:
            How many listeners got the message: handlers that ran without
            raising, plus subscriptions that buffered it (with
            `Overflow.DROP_OLDEST`, also when an older message was evicted for
            it; a message discarded by `Overflow.DROP_NEWEST` or
            `Overflow.ERROR` does not count).
        """
        self._published += 1
        delivered = 0
        route = self._exact.get(topic)
        if route is not None:
            delivered = self._deliver(route, topic, payload)
        if self._pattern_prefixes and topic.startswith(self._pattern_prefixes):
            for prefix, route in self._pattern_list:
                if topic.startswith(prefix):
                    delivered += self._deliver(route, topic, payload)
        self._delivered += delivered
        return delivered

    def _deliver(self, route: _Route, topic: str, payload: object) -> int:
        delivered = 0
        for subscription in route.subscriptions:
            if subscription._offer(payload):
                delivered += 1
        handlers = route.handlers
        if handlers:
            delivered += self._call_handlers(handlers, topic, payload)
        return delivered

    # -- backpressure --------------------------------------------------------------

    @property
    def congested(self) -> bool:
        """Whether a subscription holds at least half its ``max_buffer``.

        A publisher that can wait (the connection's reader does) checks this
        after each ``publish()`` and, while it is true, awaits `drain` before
        taking in more. Subscriptions that fell behind for longer than a drain
        waited (`Subscription.lagging`) do not count.
        """
        return bool(self._backlog.congested)

    async def drain(self, patience: float = math.inf) -> None:
        """Give subscribers a turn: wait until no subscription is `congested`.

        Like asyncio's ``StreamWriter.drain()``: a publisher that awaits this
        whenever `congested` is true slows down to its subscribers' pace
        instead of making them drop messages. The wait is bounded: every
        subscription still congested after ``patience`` seconds becomes
        `Subscription.lagging` (its `Overflow` policy applies from then on),
        and stops holding publishers back until it drains to a quarter of its
        buffer. Always a checkpoint.

        Args:
            patience: The most seconds to wait for congested subscriptions;
                ``0`` never waits, ``math.inf`` waits for them however long.

        Raises:
            ValueError: If ``patience`` is negative or NaN.
        """
        if not patience >= 0:
            raise ValueError(f"patience must be >= 0 seconds, got {patience!r}")
        backlog = self._backlog
        if not backlog.congested or patience == 0:
            await trio.lowlevel.checkpoint()
        else:
            with trio.move_on_after(patience):
                await backlog.wait_drained()
        if backlog.congested:
            lagging = backlog.excuse()
            logger.info(
                "%d subscription(s) fell behind for %.3g s: they lose messages "
                "by their overflow policy until they catch up",
                lagging,
                patience,
            )

    def _call_handlers(
        self, handlers: tuple[_Handler, ...], topic: str, payload: object
    ) -> int:
        called = 0
        for entry in handlers:
            try:
                result = entry.function(payload)
            except Exception:
                self._handler_errors += 1
                logger.exception(
                    "MessageBus handler %r raised on topic %r", entry.function, topic
                )
                continue
            if result is not None and inspect.isawaitable(result):
                self._handler_errors += 1
                close = getattr(result, "close", None)
                if close is not None:
                    close()  # no "never awaited" warning: we report it ourselves
                if not entry.warned:
                    entry.warned = True
                    logger.error(
                        "MessageBus handler %r on topic %r returned an awaitable, "
                        "which was discarded; handlers must be synchronous "
                        "(use subscribe() to consume messages from a task). "
                        "Logged once per registration.",
                        entry.function,
                        topic,
                    )
                continue
            called += 1
        return called

    # -- bookkeeping -------------------------------------------------------------

    def _routes_of(self, topic: str) -> dict[str, _Route]:
        return self._patterns if topic.endswith("*") else self._exact

    def _route_for(self, topic: str) -> _Route:
        routes = self._routes_of(topic)
        route = routes.get(topic)
        if route is None:
            route = routes[topic] = _Route()
            if routes is self._patterns:
                self._rebuild_pattern_list()
        return route

    def _drop_if_empty(self, topic: str, route: _Route) -> None:
        if route.subscriptions or route.handlers:
            return
        routes = self._routes_of(topic)
        if routes.get(topic) is route:
            del routes[topic]
            if routes is self._patterns:
                self._rebuild_pattern_list()

    def _rebuild_pattern_list(self) -> None:
        self._pattern_list = tuple(
            (pattern[:-1], route) for pattern, route in self._patterns.items()
        )
        self._pattern_prefixes = tuple(prefix for prefix, _ in self._pattern_list)

    def _register(self, subscription: Subscription[Any]) -> None:
        route = self._route_for(subscription.topic)
        route.subscriptions = (*route.subscriptions, subscription)

    def _unregister(self, subscription: Subscription[Any]) -> None:
        """Remove ``subscription`` if registered (idempotent: by identity)."""
        topic = subscription.topic
        route = self._routes_of(topic).get(topic)
        if route is not None and subscription in route.subscriptions:
            route.subscriptions = tuple(
                s for s in route.subscriptions if s is not subscription
            )
            self._drop_if_empty(topic, route)
