"""What the server should hold: the subscription ledger.

:class:`SubscriptionLedger` keeps the wanted subscriptions (pinned by
``subscribe()`` or referenced by an open ``alerts()`` / ``telemetry()``
context) and, while connected, what the server was told, so that it lists the
requests that make the two equal: the full replay after a reconnect, then
only the differences. Pure bookkeeping: no Trio, no clock, no socket; tested
synchronously and with Hypothesis state machines.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

import attrs

from ._protocol import SubscribeRequest, SubscriptionKey

__all__ = ["SubscriptionLedger"]


@attrs.define
class SubscriptionLedger:
    """Which server subscriptions are wanted, and what the server was told.

    A subscription is wanted while it is *pinned* (``subscribe()``) or
    *referenced* (an open ``manager.alerts()`` / ``manager.telemetry()``
    context). Wanted subscriptions keep the order in which they became wanted.
    While connected, :meth:`pending` lists the requests that make the server's
    view equal to the wanted list: unsubscribes first, then subscribes in
    order. After :meth:`connection_opened` the server knows nothing, so the
    first :meth:`pending` is the full replay.
    """

    _pinned: set[SubscriptionKey] = attrs.field(factory=set)
    _references: Counter[SubscriptionKey] = attrs.field(factory=Counter)
    _wanted: dict[SubscriptionKey, None] = attrs.field(factory=dict)
    _on_server: dict[SubscriptionKey, None] | None = None
    # While connected, what differs between the server's view and _wanted, in
    # the order it came to differ. Ordered dicts pop their first key in O(1),
    # so taking a slice of requests costs the slice, not the whole set.
    _to_unsubscribe: OrderedDict[SubscriptionKey, None] = attrs.field(
        factory=OrderedDict
    )
    _to_subscribe: OrderedDict[SubscriptionKey, None] = attrs.field(factory=OrderedDict)

    @property
    def wanted(self) -> list[SubscriptionKey]:
        """The persisted subscriptions, in the order they became wanted."""
        return list(self._wanted)

    def pin(self, key: SubscriptionKey) -> bool:
        """Want ``key`` until :meth:`unpin` (explicit ``subscribe()``).

        Returns whether the pin is new (it was not pinned already).
        """
        if key in self._pinned:
            return False
        self._pinned.add(key)
        self._refresh(key)
        return True

    def unpin(self, key: SubscriptionKey) -> None:
        """Drop the pin on ``key``; it stays wanted while referenced."""
        self._pinned.discard(key)
        self._refresh(key)

    def acquire(self, key: SubscriptionKey) -> None:
        """Add one reference to ``key`` (entering a subscription context)."""
        self._references[key] += 1
        self._refresh(key)

    def release(self, key: SubscriptionKey) -> None:
        """Remove one reference to ``key`` (leaving a subscription context)."""
        if self._references[key] <= 1:
            del self._references[key]
        else:
            self._references[key] -= 1
        self._refresh(key)

    def _refresh(self, key: SubscriptionKey) -> None:
        if key in self._pinned or key in self._references:
            self._wanted.setdefault(key, None)
        else:
            self._wanted.pop(key, None)
        self._compare(key)

    def _compare(self, key: SubscriptionKey) -> None:
        """Note whether the server must be told about ``key`` (while connected)."""
        on_server = self._on_server
        if on_server is None:
            return
        wanted, known = key in self._wanted, key in on_server
        self._to_subscribe.pop(key, None)
        self._to_unsubscribe.pop(key, None)
        if wanted and not known:
            self._to_subscribe[key] = None
        elif known and not wanted:
            self._to_unsubscribe[key] = None

    def connection_opened(self) -> None:
        """A new connection: the server holds nothing yet."""
        self._on_server = {}
        self._to_unsubscribe = OrderedDict()
        self._to_subscribe = OrderedDict.fromkeys(self._wanted)

    def connection_lost(self) -> None:
        """No connection: nothing is pending until the next one opens."""
        self._on_server = None
        self._to_unsubscribe = OrderedDict()
        self._to_subscribe = OrderedDict()

    def pending(self) -> list[SubscribeRequest]:
        """The requests to send now, in order (empty while disconnected).

        Unsubscribes first, then subscribes in the order they became wanted.
        """
        return [
            *(SubscribeRequest.unsubscribe(*key) for key in self._to_unsubscribe),
            *(SubscribeRequest.subscribe(*key) for key in self._to_subscribe),
        ]

    def take_pending(self, max_items: int) -> list[SubscribeRequest]:
        """The first ``max_items`` of :meth:`pending`, marked as sent.

        Costs what it takes, so a large set is replayed a slice at a time.
        """
        taken: list[SubscribeRequest] = []
        for keys, make in (
            (self._to_unsubscribe, SubscribeRequest.unsubscribe),
            (self._to_subscribe, SubscribeRequest.subscribe),
        ):
            while keys and len(taken) < max_items:
                key, _ = keys.popitem(last=False)
                taken.append(make(*key))
                self.mark_sent(taken[-1])
        return taken

    def mark_sent(self, request: SubscribeRequest) -> None:
        """Record that ``request`` went out on the current connection."""
        on_server = self._on_server
        if on_server is None:
            return
        if request.action == "subscribe":
            on_server[request.key] = None
        else:
            on_server.pop(request.key, None)
        self._compare(request.key)
