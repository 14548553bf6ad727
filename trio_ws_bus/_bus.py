"""The topic message bus: synchronous publish, one bounded channel per subscriber.

Rules the bus obeys (everything else follows from them):

1. ``publish()`` is synchronous and never blocks: each subscription has its own
   bounded buffer, and publishing either hands the message to a task waiting in
   ``receive()`` or appends it to that buffer. A full buffer is resolved by the
   subscription's `Overflow` policy, so one stalled subscriber never delays the
   publisher or the others.
2. Registration is copy-on-write: the routing tables hold tuples that are
   replaced, never mutated. A publish iterates the snapshot it started with, so a
   handler may subscribe, unsubscribe, publish or ``clear()`` safely; such
   changes take effect from the next publish.
3. Routing is an exact-topic dict lookup plus one ``str.startswith`` call with
   the tuple of every pattern's prefix (the patterns are scanned one by one only
   when one of them matches). Topics nobody listens to cost one failed lookup,
   however many other topics exist.
4. A subscription is registered when its context manager is entered and removed
   when it exits, whatever the exit; a receive side closed behind the bus's back
   is removed at the next publish that reaches it.
5. Each subscription is its own small channel (a buffer made on first use, the
   tasks waiting in ``receive()``), with the semantics of a Trio memory channel
   whose only sender is the bus: FIFO, ``receive()`` always a checkpoint, a
   cancelled ``receive()`` loses nothing, bookkeeping protected from
   ``KeyboardInterrupt`` (Trio's KI protection). It is not a Trio memory
   channel because an idle subscriber should cost as little as possible: a
   memory channel pair with its empty buffer and bookkeeping takes about 2 KB,
   more than everything else an idle subscriber holds (``bench/memory.py``
   measures it).
"""

from __future__ import annotations

import enum
import inspect
import operator
from abc import ABCMeta
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import MappingProxyType, TracebackType
from typing import (
    Any,
    Final,
    NoReturn,
    TypeVar,
    final,
    overload,
)

import attrs
import outcome
import trio
from trio.lowlevel import (
    Abort,
    Task,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_task,
    enable_ki_protection,
    reschedule,
    wait_task_rescheduled,
)

from ._errors import SubscriberLagged
from ._logs import get_logger
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

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)
_P = TypeVar("_P")
DEFAULT_MAX_BUFFER: Final = 256
"""Default buffer size of a subscription, in messages.

Large enough to ride out a consumer hiccup (a GC pause, a slow database write)
of a few seconds at typical telemetry rates without losing anything, small
enough that a subscriber that stopped reading holds at most a few KiB of
references (payloads are shared between subscribers, never copied).
"""


def _check_topic(topic: object) -> str:
    """Validate a topic given to ``subscribe``/``on``/``listener_count``."""
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    star = topic.find("*")
    if star != -1 and star != len(topic) - 1:
        raise ValueError(f"'*' may only end a topic (a prefix pattern), got {topic!r}")
    return topic


def _check_max_items(max_items: int | None) -> None:
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be >= 1 or None, got {max_items!r}")


class Overflow(enum.Enum):
    """What a subscription does with a message that finds its buffer full.

    Every lost message is counted in `Subscription.dropped` and in
    `BusStatistics.dropped` (per subscription topic in
    `BusStatistics.dropped_by_topic`).
    """

    DROP_OLDEST = "drop_oldest"
    """Evict the oldest buffered message to make room: the subscriber always
    sees the most recent ``max_buffer`` messages. The message is delivered (it
    counts in ``publish()``'s return value)."""

    DROP_NEWEST = "drop_newest"
    """Discard the new message: the subscriber keeps what it had buffered."""

    ERROR = "error"
    """Discard the new message, like `DROP_NEWEST`, and make the subscriber's
    next ``receive()`` raise `SubscriberLagged` once, *before* the messages
    still buffered (which were all published before the lost ones). Those
    buffered messages, then newer ones, follow on the next calls."""


class _NoPublicConstructor(ABCMeta):
    """Metaclass of classes that only this module may instantiate (``_create``)."""

    def __call__(cls, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor"
        )

    def _create(cls: type[_T], *args: object, **kwargs: object) -> _T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


@final
class Subscription(trio.abc.ReceiveChannel[_T_co], metaclass=_NoPublicConstructor):
    """One subscriber's own receive channel, made by `MessageBus.subscribe`.

    A `trio.abc.ReceiveChannel`: use ``await receive()``, ``receive_nowait()``
    or ``async for``. A consumer that must keep up with a fast feed takes what
    is buffered at once with `receive_batch` or ``async for batch in
    subscription.batches()``: ``receive()`` is a checkpoint, which costs a trip
    through Trio's scheduler per message.

    Iteration ends (`trio.EndOfChannel`) once the bus closed the subscription
    with `MessageBus.clear` and the messages buffered before that were
    received. Leaving the ``subscribe()`` context, or calling
    `aclose`, unregisters the subscription and closes this channel: any further
    ``receive()`` raises `trio.ClosedResourceError`.

    With `Overflow.ERROR`, every way of receiving raises `SubscriberLagged`
    once after a loss; the subscription stays usable, so catch it and keep
    receiving.

    Several tasks may receive from one subscription: each message goes to one
    of them, to the one that has waited longest.

    The type parameter is the payload type; the bus does not check it
    (``Subscription[Any]`` unless you annotate otherwise).
    """

    __slots__ = (
        "_buffer",
        "_bus",
        "_closed",
        "_dropped",
        "_ended",
        "_interrupt",
        "_limit",
        "_missed",
        "_registered",
        "_waiters",
        "max_buffer",
        "overflow",
        "topic",
    )

    def __init__(
        self, bus: MessageBus, topic: str, max_buffer: int, overflow: Overflow
    ) -> None:
        self.topic: Final[str] = topic
        """The topic or prefix pattern this subscription was made for."""
        self.max_buffer: Final[int] = max_buffer
        """How many messages wait in the buffer before `overflow` applies."""
        self.overflow: Final[Overflow] = overflow
        """The policy applied when a message finds the buffer full."""
        self._dropped = 0
        self._bus = bus
        # Messages published while no task waited, oldest first; made on first
        # use, since an empty deque alone takes more than half a KiB.
        self._buffer: deque[Any] | None = None
        # Tasks blocked in receive(), longest waiting first. Non-empty only
        # while the buffer is empty.
        self._waiters: list[Task] = []
        # What the publish fast path compares the buffer's length with:
        # max_buffer while the subscription accepts messages, 0 once it was
        # closed or ended, which sends every publish to the slow path.
        self._limit = max_buffer
        self._missed = 0  # Overflow.ERROR: losses not reported yet
        self._registered = False
        self._ended = False  # MessageBus.clear(): nothing comes after the buffer
        self._closed = False  # our receive side, closed by aclose() or the context
        # Set by _set_interrupt(): what a receive raises instead of waiting.
        self._interrupt: Callable[[], BaseException] | None = None

    def __repr__(self) -> str:
        return (
            f"<Subscription topic={self.topic!r} max_buffer={self.max_buffer} "
            f"overflow={self.overflow.name} dropped={self.dropped}>"
        )

    @property
    def dropped(self) -> int:
        """How many messages this subscription lost to its overflow policy so far."""
        return self._dropped

    @enable_ki_protection
    def receive_nowait(self) -> _T_co:
        """Return the next message if one is buffered, without blocking.

        Returns:
            The next payload, in publish order.

        Raises:
            SubscriberLagged: With `Overflow.ERROR`, once after messages were lost.
            trio.WouldBlock: If no message is buffered.
            trio.EndOfChannel: If `MessageBus.clear` closed the subscription and
                the buffer is drained.
            trio.ClosedResourceError: If this subscription was closed.
        """
        if self._closed:
            raise trio.ClosedResourceError
        if self._missed:
            missed, self._missed = self._missed, 0
            raise SubscriberLagged(missed)
        if self._buffer:
            return self._buffer.popleft()  # type: ignore[no-any-return]
        if self._ended:
            raise trio.EndOfChannel
        if self._interrupt is not None:
            raise self._interrupt()
        raise trio.WouldBlock

    @enable_ki_protection
    async def receive(self) -> _T_co:
        """Wait for the next message and return it.

        Always a checkpoint, and cancellable: a cancelled ``receive()`` loses
        no message.

        Returns:
            The next payload, in publish order.

        Raises:
            SubscriberLagged: With `Overflow.ERROR`, once after messages were lost,
                before the messages still buffered are returned.
            trio.EndOfChannel: If `MessageBus.clear` closed the subscription and
                the buffer is drained.
            trio.ClosedResourceError: If this subscription was closed.
        """
        await checkpoint_if_cancelled()
        buffer = self._buffer
        if buffer and not self._missed:
            # The common case first: a message is waiting.
            value = buffer.popleft()
            await cancel_shielded_checkpoint()
            return value  # type: ignore[no-any-return]
        if self._missed and not self._closed:
            await cancel_shielded_checkpoint()
            # Re-read: more may have been lost, or another task reported it.
            missed, self._missed = self._missed, 0
            if missed and not self._closed:
                raise SubscriberLagged(missed)
            # Another receiver reported it while we yielded: start over.
            return await self.receive()  # pragma: no cover - a race of receivers
        if buffer or self._closed or self._ended or self._interrupt is not None:
            return self.receive_nowait()  # a message, or why there is none
        # Nothing buffered: wait for publish() to hand us a message directly.
        task = current_task()
        waiters = self._waiters
        waiters.append(task)

        def abort(_: object) -> Abort:
            waiters.remove(task)
            return Abort.SUCCEEDED

        return await wait_task_rescheduled(abort)  # type: ignore[no-any-return]

    @enable_ki_protection
    async def receive_batch(self, max_items: int | None = None) -> tuple[_T_co, ...]:
        """Wait for at least one message, then return all that are buffered.

        One checkpoint for the whole batch, where ``receive()`` makes one per
        message: for a consumer that must keep up with the wire, that
        checkpoint can cost more than the message's parsing and routing. Like
        ``receive()``, cancellable without losing a message.

        Args:
            max_items: Return at most this many messages (``>= 1``); the rest
                stay buffered. ``None``: everything buffered.

        Returns:
            The messages, oldest first, at least one.

        Raises:
            ValueError: If ``max_items`` is below 1.
            SubscriberLagged: With `Overflow.ERROR`, once after messages were lost,
                before the messages still buffered are returned.
            trio.EndOfChannel: If `MessageBus.clear` closed the subscription and
                the buffer is drained.
            trio.ClosedResourceError: If this subscription was closed.
        """
        _check_max_items(max_items)
        await checkpoint_if_cancelled()
        if self._buffer and not self._missed:
            batch = self._take(max_items)
            await cancel_shielded_checkpoint()
            return batch
        # Nothing buffered (or a loss to report): receive() waits for the first.
        first = await self.receive()
        return (first, *self._take(None if max_items is None else max_items - 1))

    def batches(self, max_items: int | None = None) -> AsyncIterator[tuple[_T_co, ...]]:
        """Iterate over batches of messages: ``async for batch in sub.batches()``.

        Each batch is what `receive_batch` returns; the loop ends as
        ``async for`` over the subscription does.

        Args:
            max_items: At most this many messages per batch (``>= 1``), or
                ``None`` for everything buffered.

        Returns:
            An async iterator of non-empty tuples.

        Raises:
            ValueError: If ``max_items`` is below 1.
        """
        _check_max_items(max_items)
        return _Batches(self, max_items)

    def _take(self, max_items: int | None) -> tuple[_T_co, ...]:
        """Pop up to ``max_items`` buffered messages (all if None), oldest first."""
        buffer = self._buffer
        if not buffer:
            return ()
        if max_items is None or max_items >= len(buffer):
            batch = tuple(buffer)
            buffer.clear()
            return batch
        return tuple([buffer.popleft() for _ in range(max_items)])

    @enable_ki_protection
    def _set_interrupt(self, factory: Callable[[], BaseException] | None) -> None:
        """Make receives raise ``factory()`` instead of waiting; ``None`` re-arms.

        For the manager: while it has given up, a receive with nothing buffered
        raises at once (tasks already waiting are woken with it), so no consumer
        waits forever. What is buffered is still delivered first.
        """
        self._interrupt = factory
        if factory is not None:
            self._wake_all(factory)

    async def aclose(self) -> None:
        """Unregister from the bus and close this channel.

        Idempotent. Tasks waiting in ``receive()`` get `trio.ClosedResourceError`.
        Leaving the ``subscribe()`` context does the same.
        """
        self._close()
        await trio.lowlevel.checkpoint()

    @enable_ki_protection
    def _close(self) -> None:
        self._bus._unregister(self)
        self._close_receive_side()

    @enable_ki_protection
    def _close_receive_side(self) -> None:
        self._closed = True
        self._limit = 0
        self._buffer = None
        self._wake_all(trio.ClosedResourceError)

    @enable_ki_protection
    def _end(self) -> None:
        """No message will come after those buffered (`MessageBus.clear`)."""
        self._registered = False
        self._ended = True
        self._limit = 0
        self._wake_all(trio.EndOfChannel)

    def _wake_all(self, error: Callable[[], BaseException]) -> None:
        waiters, self._waiters = self._waiters, []
        for task in waiters:
            reschedule(task, outcome.Error(error()))

    @property
    def _receive(self) -> _ReceiveSide:
        """The receive side alone, for code that must close it behind our back."""
        return _ReceiveSide(self)


@final
class _Batches(AsyncIterator[tuple[_T_co, ...]]):
    """What `Subscription.batches` returns."""

    __slots__ = ("_max_items", "_subscription")

    def __init__(self, subscription: Subscription[_T_co], max_items: int | None):
        self._subscription = subscription
        self._max_items = max_items

    async def __anext__(self) -> tuple[_T_co, ...]:
        try:
            return await self._subscription.receive_batch(self._max_items)
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


@final
class _ReceiveSide:
    """Closes a subscription's receive side without telling the bus (rule 4)."""

    __slots__ = ("_subscription",)

    def __init__(self, subscription: Subscription[Any]) -> None:
        self._subscription = subscription

    def close(self) -> None:
        self._subscription._close_receive_side()


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
        subscription: Subscription[Any] = Subscription._create(
            self._bus, self._topic, self._max_buffer, self._overflow
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
        "_delivered",
        "_dropped",
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
        self._dropped: defaultdict[str, int] = defaultdict(int)  # by subscription topic
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
            len(subscription._buffer or ())
            for route in routes
            for subscription in route.subscriptions
        ]
        return BusStatistics(
            topics=len(routes),
            subscriptions=len(waiting),
            handlers=sum(len(route.handlers) for route in routes),
            published=self._published,
            delivered=self._delivered,
            dropped=sum(self._dropped.values()),
            handler_errors=self._handler_errors,
            dropped_by_topic=self._dropped,
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
        subscriptions = route.subscriptions
        delivered = len(subscriptions)
        for subscription in subscriptions:
            waiters = subscription._waiters
            if waiters:
                # A task waits in receive(), so the buffer is empty: hand over.
                reschedule(waiters.pop(0), outcome.Value(payload))
                continue
            buffer = subscription._buffer
            if buffer is not None and len(buffer) < subscription._limit:
                buffer.append(payload)
                continue
            if not self._buffer_slow(subscription, payload):
                delivered -= 1
        handlers = route.handlers
        if handlers:
            delivered += self._call_handlers(handlers, topic, payload)
        return delivered

    def _buffer_slow(self, subscription: Subscription[Any], payload: object) -> bool:
        """Buffer when the fast path could not; True if the message was delivered."""
        if subscription._closed or subscription._ended:
            # Receive side closed behind our back, or closed or ended by a
            # handler earlier in this publish (we iterate a snapshot).
            self._unregister(subscription)
            return False
        buffer = subscription._buffer
        if buffer is None:
            buffer = subscription._buffer = deque()
        if len(buffer) < subscription.max_buffer:
            buffer.append(payload)
            return True
        subscription._dropped += 1
        self._dropped[subscription.topic] += 1
        if subscription.overflow is Overflow.DROP_OLDEST:
            buffer.popleft()
            buffer.append(payload)
            return True
        if subscription.overflow is Overflow.ERROR:
            subscription._missed += 1
        return False

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
        subscription._registered = True

    def _unregister(self, subscription: Subscription[Any]) -> None:
        if not subscription._registered:
            return
        subscription._registered = False
        topic = subscription.topic
        route = self._routes_of(topic).get(topic)
        if route is not None:
            route.subscriptions = tuple(
                s for s in route.subscriptions if s is not subscription
            )
            self._drop_if_empty(topic, route)
