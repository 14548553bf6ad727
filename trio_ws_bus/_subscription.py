"""One subscriber's channel: its own bounded buffer, overflow policy and pressure.

A :class:`Subscription` is what :meth:`MessageBus.subscribe
<trio_ws_bus.MessageBus.subscribe>` hands out. The bus offers it each payload
(:meth:`Subscription._offer`, synchronous, never blocking); the subscription
decides what happens: hand it to a waiting task, buffer it, or resolve a full
buffer by its :class:`Overflow` policy, counting every loss.

Rules:

1. FIFO, with the semantics of a Trio memory channel whose only sender is the
   bus: a cancelled receive loses no message; bookkeeping is protected from
   ``KeyboardInterrupt``.
2. **Pressure.** A subscription whose buffer reaches its *high-water mark*
   (half of ``max_buffer``) is *congested*: publishers that care (the
   connection's reader, through :meth:`MessageBus.drain
   <trio_ws_bus.MessageBus.drain>`) give subscribers a turn before they read
   more, so TCP slows the server instead of the buffer overflowing. It stops
   being congested when it drains to its *low-water mark* (a quarter of
   ``max_buffer``), or closes.
3. A congested subscription that does not drain within the publisher's
   patience is *lagging*: it stops holding publishers back, and its overflow
   policy applies, until it drains to its low-water mark. One slow subscriber
   therefore costs the others at most that patience per burst.
4. ``receive()`` is always a checkpoint. ``async for`` and
   :meth:`~Subscription.receive_batch` take what is buffered without a trip
   through the scheduler per item: ``async for`` checks for cancellation on
   every item (a cancelled loop loses nothing: an item is handed out or stays
   buffered) and passes through the scheduler whenever its buffer is empty and
   otherwise at least every :data:`SCHEDULE_INTERVAL` seconds (Trio's clock,
   read every 16 items), so it never starves other tasks for longer than that
   plus 16 items' work.
5. An idle subscription costs little: its buffer is made on first use (an
   empty deque alone takes more than half a KiB).
"""

from __future__ import annotations

import enum
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, TypeVar, final

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
from ._util import NoPublicConstructor

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "SCHEDULE_INTERVAL",
    "Backlog",
    "Overflow",
    "Subscription",
]

_T_co = TypeVar("_T_co", covariant=True)

DEFAULT_MAX_BUFFER: Final = 256
"""Default buffer size of a subscription, in messages.

With the connection's backpressure (rule 2 above), a consumer that keeps up on
average loses nothing of a burst of any length: the reader waits for it at the
high-water mark (128) instead of overflowing. The buffer itself rides out a
consumer pause of a few seconds at typical telemetry rates, and a subscriber
that stopped reading holds at most a few KiB of references (payloads are
shared between subscribers, never copied).
"""

SCHEDULE_INTERVAL: Final = 0.001
"""Seconds an ``async for`` over a subscription may take buffered items
without passing through Trio's scheduler (rule 4): 1 ms."""

#: ``async for`` reads the clock once per this many buffered items.
_CLOCK_EVERY: Final = 16
_NONE, _CONGESTED, _LAGGING = 0, 1, 2


def check_max_items(max_items: int | None) -> None:
    """Validate ``max_items`` of :meth:`Subscription.receive_batch` and friends."""
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


@final
class Backlog:
    """What the subscriptions of one bus share: their losses and their pressure.

    The bus reads it for statistics and :meth:`MessageBus.drain
    <trio_ws_bus.MessageBus.drain>`; subscriptions write it.
    """

    __slots__ = ("_drained", "congested", "dropped")

    def __init__(self) -> None:
        self.dropped: defaultdict[str, int] = defaultdict(int)
        """Messages lost to overflow, by the topic each subscription was made for."""
        self.congested: set[Subscription[Any]] = set()
        """Subscriptions at or above their high-water mark, holding publishers."""
        self._drained: trio.Event | None = None

    def relieve(self, subscription: Subscription[Any]) -> None:
        """``subscription`` no longer holds publishers back."""
        congested = self.congested
        congested.discard(subscription)
        if not congested and self._drained is not None:
            self._drained.set()
            self._drained = None

    async def wait_drained(self) -> None:
        """Wait until no subscription is congested."""
        while self.congested:
            if self._drained is None:
                self._drained = trio.Event()
            await self._drained.wait()

    def excuse(self) -> int:
        """Mark every congested subscription lagging (rule 3); return how many."""
        lagging, self.congested = self.congested, set()
        for subscription in lagging:
            subscription._lag()
        if self._drained is not None:  # other publishers waiting: nothing holds them
            self._drained.set()
            self._drained = None
        return len(lagging)


@final
class Subscription(trio.abc.ReceiveChannel[_T_co], metaclass=NoPublicConstructor):
    """One subscriber's own receive channel, made by `MessageBus.subscribe`.

    A `trio.abc.ReceiveChannel`: use ``async for``, ``await receive()``,
    ``receive_nowait()``, or `receive_batch` / `batches` for a tuple of
    everything buffered at once. ``async for`` takes buffered items without a
    trip through Trio's scheduler per item (it still checks for cancellation
    on each, and yields to other tasks at least every millisecond), so it
    keeps up with the wire; ``receive()`` is always a checkpoint.

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
        "_backlog",
        "_buffer",
        "_closed",
        "_countdown",
        "_dropped",
        "_ended",
        "_fast_limit",
        "_high_water",
        "_interrupt",
        "_low_water",
        "_missed",
        "_pressure",
        "_unregister",
        "_waiters",
        "_yield_at",
        "max_buffer",
        "overflow",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        max_buffer: int,
        overflow: Overflow,
        backlog: Backlog,
        unregister: Callable[[Subscription[Any]], None],
    ) -> None:
        self.topic: Final[str] = topic
        """The topic or prefix pattern this subscription was made for."""
        self.max_buffer: Final[int] = max_buffer
        """How many messages wait in the buffer before `overflow` applies."""
        self.overflow: Final[Overflow] = overflow
        """The policy applied when a message finds the buffer full."""
        self._backlog = backlog
        self._unregister = unregister
        self._dropped = 0
        # Messages published while no task waited, oldest first; made on first
        # use, since an empty deque alone takes more than half a KiB.
        self._buffer: deque[Any] | None = None
        # Tasks blocked in receive(), longest waiting first. Non-empty only
        # while the buffer is empty.
        self._waiters: list[Task] = []
        self._high_water = max(max_buffer // 2, 1)
        self._low_water = max_buffer // 4
        # The offer fast path appends while the buffer is shorter than this:
        # just under the high-water mark normally, max_buffer while congested
        # or lagging, 0 once closed or ended (every offer takes the slow path).
        self._fast_limit = self._high_water - 1
        self._pressure = _NONE
        self._missed = 0  # Overflow.ERROR: losses not reported yet
        self._ended = False  # MessageBus.clear(): nothing comes after the buffer
        self._closed = False  # our receive side, closed by aclose() or the context
        # Set by _set_interrupt(): what a receive raises instead of waiting.
        self._interrupt: Callable[[], BaseException] | None = None
        self._yield_at = 0.0  # async for: when to pass through the scheduler
        self._countdown = 1  # async for: buffered items until the next clock read

    def __repr__(self) -> str:
        return (
            f"<Subscription topic={self.topic!r} max_buffer={self.max_buffer} "
            f"overflow={self.overflow.name} dropped={self.dropped}>"
        )

    @property
    def dropped(self) -> int:
        """How many messages this subscription lost to its overflow policy so far."""
        return self._dropped

    @property
    def buffered(self) -> int:
        """How many messages wait in the buffer right now."""
        return len(self._buffer or ())

    @property
    def lagging(self) -> bool:
        """Whether this subscription fell behind for longer than the publisher waits.

        A lagging subscription no longer slows the connection down: its
        overflow policy applies until it drains to a quarter of its buffer.
        """
        return self._pressure == _LAGGING

    # -- the bus's side ----------------------------------------------------------

    def _offer(self, payload: object) -> bool:
        """Take one published payload; True if it was delivered (rule 1-3)."""
        waiters = self._waiters
        if waiters:
            # A task waits in receive(), so the buffer is empty: hand over.
            reschedule(waiters.pop(0), outcome.Value(payload))
            return True
        buffer = self._buffer
        if buffer is not None and len(buffer) < self._fast_limit:
            buffer.append(payload)
            return True
        return self._offer_slow(payload)

    def _offer_slow(self, payload: object) -> bool:
        if self._closed or self._ended:
            # Receive side closed behind the bus's back, or closed or ended by
            # a handler earlier in this publish (the bus iterates a snapshot).
            self._unregister(self)
            return False
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = deque()
        if len(buffer) < self.max_buffer:
            buffer.append(payload)
            if self._pressure == _NONE and len(buffer) >= self._high_water:
                self._pressure = _CONGESTED
                self._fast_limit = self.max_buffer
                self._backlog.congested.add(self)
            return True
        self._dropped += 1
        self._backlog.dropped[self.topic] += 1
        if self.overflow is Overflow.DROP_OLDEST:
            buffer.popleft()
            buffer.append(payload)
            return True
        if self.overflow is Overflow.ERROR:
            self._missed += 1
        return False

    def _lag(self) -> None:
        """The publisher's patience ran out (rule 3): stop holding it back."""
        if self._pressure == _CONGESTED:
            self._pressure = _LAGGING

    def _relieve(self) -> None:
        """Drained to the low-water mark, or gone: no pressure any more."""
        if self._pressure == _CONGESTED:
            self._backlog.relieve(self)
        self._pressure = _NONE
        if not (self._closed or self._ended):
            self._fast_limit = self._high_water - 1

    # -- receiving -----------------------------------------------------------------

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
        buffer = self._buffer
        if buffer:
            value = buffer.popleft()
            if self._pressure and len(buffer) <= self._low_water:
                self._relieve()
            return value  # type: ignore[no-any-return]
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
            if self._pressure and len(buffer) <= self._low_water:
                self._relieve()
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
        # Nothing buffered: wait for the bus to hand us a message directly.
        task = current_task()
        waiters = self._waiters
        waiters.append(task)

        def abort(_: object) -> Abort:
            waiters.remove(task)
            return Abort.SUCCEEDED

        return await wait_task_rescheduled(abort)  # type: ignore[no-any-return]

    @enable_ki_protection
    async def __anext__(self) -> _T_co:
        # Rule 4: a buffered item costs no trip through the scheduler, except
        # once per SCHEDULE_INTERVAL.
        await checkpoint_if_cancelled()  # yields only when cancelled
        buffer = self._buffer
        if buffer and not self._missed:
            value = buffer.popleft()
            if self._pressure and len(buffer) <= self._low_water:
                self._relieve()
            # The clock is read every few items only (it costs more than an
            # item); Trio's clock, so that a MockClock run is deterministic.
            self._countdown -= 1
            if self._countdown <= 0:
                self._countdown = _CLOCK_EVERY
                now = trio.current_time()
                if now >= self._yield_at:
                    self._yield_at = now + SCHEDULE_INTERVAL
                    await cancel_shielded_checkpoint()
            return value  # type: ignore[no-any-return]
        try:
            value = await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        self._yield_at = trio.current_time() + SCHEDULE_INTERVAL
        return value

    @enable_ki_protection
    async def receive_batch(self, max_items: int | None = None) -> tuple[_T_co, ...]:
        """Wait for at least one message, then return all that are buffered.

        One checkpoint for the whole batch, where ``receive()`` makes one per
        message. Like ``receive()``, cancellable without losing a message.

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
        check_max_items(max_items)
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
        check_max_items(max_items)
        return _Batches(self, max_items)

    def _take(self, max_items: int | None) -> tuple[_T_co, ...]:
        """Pop up to ``max_items`` buffered messages (all if None), oldest first."""
        buffer = self._buffer
        if not buffer:
            return ()
        if max_items is None or max_items >= len(buffer):
            batch = tuple(buffer)
            buffer.clear()
        else:
            batch = tuple([buffer.popleft() for _ in range(max_items)])
        if self._pressure and len(buffer) <= self._low_water:
            self._relieve()
        return batch

    # -- the manager's and the bus's controls ----------------------------------------

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
        self._unregister(self)
        self._close_receive_side()

    @enable_ki_protection
    def _close_receive_side(self) -> None:
        self._closed = True
        self._fast_limit = 0
        self._buffer = None
        self._relieve()
        self._wake_all(trio.ClosedResourceError)

    @enable_ki_protection
    def _end(self) -> None:
        """No message will come after those buffered (`MessageBus.clear`)."""
        self._ended = True
        self._fast_limit = 0
        self._relieve()
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
    """Closes a subscription's receive side without telling the bus."""

    __slots__ = ("_subscription",)

    def __init__(self, subscription: Subscription[Any]) -> None:
        self._subscription = subscription

    def close(self) -> None:
        self._subscription._close_receive_side()
