"""MessageBus, Subscription and Overflow: routing, overflow policies, lifecycle."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings, strategies as st

from trio_ws_bus._bus import (
    ALERTS_TOPIC,
    CONNECTION_TOPIC,
    DEFAULT_MAX_BUFFER,
    ERROR_TOPIC,
    INVALID_TOPIC,
    BusStatistics,
    MessageBus,
    Overflow,
    Subscription,
    Topic,
    telemetry_topic,
)
from trio_ws_bus._errors import SubscriberLagged

CAP = 5  # seconds of real time any single test may take


async def collect(iterator: AsyncIterator[Any], into: list[Any]) -> None:
    """Append what an async iterator yields until it ends or raises."""
    async for item in iterator:
        into.append(item)


def drain(subscription: Subscription[Any]) -> list[Any]:
    """Receive everything buffered right now, without blocking."""
    out = []
    while True:
        try:
            out.append(subscription.receive_nowait())
        except trio.WouldBlock:
            return out


# -- topics and validation -----------------------------------------------------


def test_topic_helpers() -> None:
    """Topic constants and telemetry_topic() follow the wire protocol's names."""
    assert (ALERTS_TOPIC, CONNECTION_TOPIC, ERROR_TOPIC, INVALID_TOPIC) == (
        "alerts",
        "connection",
        "error",
        "invalid",
    )
    assert telemetry_topic("dev-1") == "telemetry:dev-1"
    with pytest.raises(ValueError, match="device_id"):
        telemetry_topic("")


def test_typed_topics_are_plain_strings_to_the_bus() -> None:
    """A Topic equals, hashes and routes as its plain string, both ways round."""
    topics = [ALERTS_TOPIC, CONNECTION_TOPIC, telemetry_topic("dev-1")]
    for topic in topics:
        assert isinstance(topic, Topic)
        assert isinstance(topic, str)
        assert hash(topic) == hash(str(topic))
        assert {str(topic): 1}[topic] == 1
        assert repr(topic) == repr(str(topic))
    bus = MessageBus()
    seen: list[tuple[str, object]] = []
    bus.on("alerts", lambda payload: seen.append(("plain", payload)))
    bus.on(ALERTS_TOPIC, lambda payload: seen.append(("typed", payload)))
    bus.on(Topic("telemetry:*"), lambda payload: seen.append(("pattern", payload)))
    assert bus.listener_count("alerts") == bus.listener_count(ALERTS_TOPIC) == 2
    assert bus.publish(ALERTS_TOPIC, ()) == 2
    assert bus.publish("alerts", ()) == 2
    assert bus.publish("telemetry:dev-1", 1) == 1
    typed: Topic[int] = Topic("telemetry:dev-1")
    assert bus.publish(typed, 2) == 1
    assert seen == [
        ("plain", ()),
        ("typed", ()),
        ("plain", ()),
        ("typed", ()),
        ("pattern", 1),
        ("pattern", 2),
    ]


@pytest.mark.parametrize("topic", ["", "a*b", "**", "*a", "tele*metry:*", 42, None])
async def test_invalid_topics_are_refused(topic: Any) -> None:
    """subscribe(), on(), listener_count() refuse empty, non-str, mid-`*` topics."""
    bus = MessageBus()
    with pytest.raises(ValueError, match="topic"):
        bus.subscribe(topic)
    with pytest.raises(ValueError, match="topic"):
        bus.on(topic, lambda payload: None)
    with pytest.raises(ValueError, match="topic"):
        bus.listener_count(topic)
    assert bus.statistics().topics == 0


async def test_invalid_subscribe_options_are_refused() -> None:
    """max_buffer must be an int >= 1 and overflow an Overflow member."""
    bus = MessageBus()
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_buffer"):
            bus.subscribe("a", max_buffer=bad)
    for wrong_type in (1.5, "4", True):
        with pytest.raises(TypeError, match="max_buffer"):
            bus.subscribe("a", max_buffer=wrong_type)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="overflow"):
        bus.subscribe("a", overflow="drop_oldest")  # type: ignore[call-overload]


async def test_on_refuses_non_callables_and_async_functions() -> None:
    """on() refuses a non-callable and an async def handler at registration."""
    bus = MessageBus()

    async def async_handler(payload: object) -> None:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="callable"):
        bus.on("a", 42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="synchronous"):
        bus.on("a", async_handler)
    assert bus.listener_count("a") == 0


def test_subscription_has_no_public_constructor() -> None:
    """Subscription objects come only from MessageBus.subscribe()."""
    with pytest.raises(TypeError, match="no public constructor"):
        Subscription(MessageBus(), "a", 4, Overflow.DROP_OLDEST)


# -- subscribing and delivery --------------------------------------------------


async def test_registration_happens_on_enter_and_exit_removes() -> None:
    """A subscription exists from __aenter__ to __aexit__, not from subscribe()."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        context = bus.subscribe("a", max_buffer=8)
        assert bus.listener_count("a") == 0
        assert bus.publish("a", "before") == 0
        async with context as subscription:
            assert bus.listener_count("a") == 1
            assert bus.publish("a", "during") == 1
            assert subscription.topic == "a"
            assert subscription.max_buffer == 8
            assert subscription.overflow is Overflow.DROP_OLDEST
            assert subscription.dropped == 0
            assert drain(subscription) == ["during"]
        assert bus.listener_count("a") == 0
        assert bus.publish("a", "after") == 0
        with pytest.raises(trio.ClosedResourceError):
            subscription.receive_nowait()
        with pytest.raises(RuntimeError, match="once"):
            await context.__aenter__()


async def test_default_subscription_options() -> None:
    """The defaults are DEFAULT_MAX_BUFFER (256) messages and DROP_OLDEST."""
    with trio.fail_after(CAP):
        async with MessageBus().subscribe("a") as subscription:
            assert subscription.max_buffer == DEFAULT_MAX_BUFFER == 256
            assert subscription.overflow is Overflow.DROP_OLDEST


async def test_each_subscriber_receives_in_publish_order() -> None:
    """Every subscriber receives its topic's messages in publish order, awaited live."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        results: dict[str, list[int]] = {"a": [], "b": [], "*": []}

        async def consume(topic: str, *, task_status: trio.TaskStatus[None]) -> None:
            async with bus.subscribe(topic, max_buffer=3) as subscription:
                task_status.started()
                async for payload in subscription:
                    results[topic].append(payload)

        async with trio.open_nursery() as nursery:
            for topic in results:
                await nursery.start(consume, topic)
            for i in range(60):
                topic = "a" if i % 3 else "b"
                bus.publish(topic, i)
                if i % 2:  # sometimes two in a row before the consumers run
                    await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
            bus.clear()

        assert results["a"] == [i for i in range(60) if i % 3]
        assert results["b"] == list(range(0, 60, 3))
        assert results["*"] == list(range(60))
        assert bus.statistics().dropped == 0


async def test_publish_returns_number_of_listeners_reached() -> None:
    """publish() counts subscriptions and handlers that got the message."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        seen: list[object] = []
        bus.on("a", seen.append)
        bus.on("*", seen.append)
        async with bus.subscribe("a") as s1, bus.subscribe("a") as s2:
            assert bus.publish("a", 1) == 4
            assert bus.publish("b", 2) == 1
            assert bus.publish("nobody:listens", 3) == 1
            assert drain(s1) == drain(s2) == [1]
        assert seen == [1, 1, 2, 3]
        assert bus.publish("a", 4) == 2


async def test_receive_is_a_cancellable_checkpoint_that_loses_nothing() -> None:
    """receive() always checkpoints, and a cancelled receive() leaves the message."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a", overflow=Overflow.ERROR, max_buffer=1) as sub:
            bus.publish("a", 1)
            with trio.testing.assert_checkpoints():
                assert await sub.receive() == 1
            bus.publish("a", 2)
            bus.publish("a", 3)  # lost: a lag is pending now
            with trio.CancelScope() as scope:
                scope.cancel()
                await sub.receive()
            assert scope.cancelled_caught
            with trio.testing.assert_checkpoints(), pytest.raises(SubscriberLagged):
                await sub.receive()
            with trio.CancelScope() as scope:
                scope.cancel()
                await sub.receive()
            assert scope.cancelled_caught
            assert sub.receive_nowait() == 2


# -- overflow policies -----------------------------------------------------------


async def test_drop_oldest_keeps_the_newest_messages() -> None:
    """DROP_OLDEST with buffer 4 and 10 unread messages keeps 6..9 and drops 6."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a", max_buffer=4) as sub:
            counts = [bus.publish("a", i) for i in range(10)]
            assert counts == [1] * 10  # an eviction still delivers the new one
            assert sub.dropped == 6
            assert drain(sub) == [6, 7, 8, 9]
        stats = bus.statistics()
        assert (stats.dropped, stats.delivered, stats.published) == (6, 10, 10)


async def test_drop_newest_keeps_the_oldest_messages() -> None:
    """DROP_NEWEST with buffer 4 and 10 unread messages keeps 0..3 and drops 6."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe(
            "a", max_buffer=4, overflow=Overflow.DROP_NEWEST
        ) as sub:
            counts = [bus.publish("a", i) for i in range(10)]
            assert counts == [1] * 4 + [0] * 6
            assert sub.dropped == 6
            assert drain(sub) == [0, 1, 2, 3]
            assert bus.publish("a", 10) == 1
            assert drain(sub) == [10]
        assert bus.statistics().dropped == 6


async def test_error_policy_reports_lag_once_before_buffered_messages() -> None:
    """ERROR: the next receive() raises SubscriberLagged(6) first, then 0..3 follow."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a", max_buffer=4, overflow=Overflow.ERROR) as sub:
            counts = [bus.publish("a", i) for i in range(10)]
            assert counts == [1] * 4 + [0] * 6
            assert sub.dropped == 6
            with pytest.raises(SubscriberLagged) as excinfo:
                await sub.receive()
            assert excinfo.value.missed == 6
            assert [await sub.receive() for _ in range(4)] == [0, 1, 2, 3]
            with pytest.raises(trio.WouldBlock):
                sub.receive_nowait()
            # Delivery goes on; the next loss is reported with its own count.
            assert bus.publish("a", 10) == 1
            assert drain(sub) == [10]
            for i in range(11, 17):
                bus.publish("a", i)
            with pytest.raises(SubscriberLagged) as excinfo:
                sub.receive_nowait()
            assert excinfo.value.missed == 2
            assert drain(sub) == [11, 12, 13, 14]
            assert sub.dropped == 8


async def test_error_policy_lag_surfaces_from_async_for() -> None:
    """ERROR: `async for` raises SubscriberLagged and a new loop carries on."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        received: list[int] = []
        async with bus.subscribe("a", max_buffer=2, overflow=Overflow.ERROR) as sub:
            for i in range(5):
                bus.publish("a", i)
            bus.clear()

            async def loop() -> None:
                async for payload in sub:
                    received.append(payload)

            with pytest.raises(SubscriberLagged, match="missed 3"):
                await loop()
            await loop()  # a new loop carries on, then ends after clear()
        assert received == [0, 1]


async def test_stalled_subscriber_never_delays_others() -> None:
    """A subscriber that never reads loses messages; the others get every one."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        received: list[int] = []

        async def consume(*, task_status: trio.TaskStatus[None]) -> None:
            async with bus.subscribe("a", max_buffer=1) as sub:
                task_status.started()
                async for payload in sub:
                    received.append(payload)

        async with bus.subscribe(
            "a", max_buffer=4, overflow=Overflow.DROP_NEWEST
        ) as stalled:
            async with trio.open_nursery() as nursery:
                await nursery.start(consume)
                counts = []
                for i in range(100):
                    counts.append(bus.publish("a", i))
                    await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
            assert received == list(range(100))
            assert counts == [2] * 4 + [1] * 96
            assert stalled.dropped == 96
            assert drain(stalled) == [0, 1, 2, 3]


# -- handlers --------------------------------------------------------------------


async def test_raising_handler_is_logged_and_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A raising handler is logged with the topic; the other listeners still get it."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        seen: list[object] = []

        def broken(payload: object) -> None:
            raise RuntimeError("boom")

        bus.on(ALERTS_TOPIC, broken)
        bus.on(ALERTS_TOPIC, seen.append)
        async with bus.subscribe(ALERTS_TOPIC) as sub:
            with caplog.at_level(logging.ERROR, logger="trio_ws_bus.bus"):
                assert bus.publish("alerts", "x") == 2
            assert drain(sub) == ["x"]
        assert seen == ["x"]
        assert bus.statistics().handler_errors == 1
        [record] = caplog.records
        assert record.name == "trio_ws_bus.bus"
        assert record.levelno == logging.ERROR
        assert "'alerts'" in record.getMessage()
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)


def test_handler_returning_a_coroutine_is_closed_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that returns a coroutine has it closed, counted, and logged once."""
    bus = MessageBus()
    ran: list[object] = []

    async def body(payload: object) -> None:
        ran.append(payload)  # pragma: no cover - must never run

    bus.on("a", lambda payload: body(payload))
    with caplog.at_level(logging.ERROR, logger="trio_ws_bus.bus"):
        assert bus.publish("a", 1) == 0
        assert bus.publish("a", 2) == 0
    assert ran == []
    assert bus.statistics().handler_errors == 2
    assert len(caplog.records) == 1
    assert "awaitable" in caplog.records[0].getMessage()
    # An unclosed coroutine would warn "never awaited": filterwarnings=error.


def test_unsubscribe_function_is_idempotent_and_per_registration() -> None:
    """on() registrations are separate; each unsubscribe removes only its own, once."""
    bus = MessageBus()
    seen: list[object] = []
    off1 = bus.on("a", seen.append)
    off2 = bus.on("a", seen.append)
    assert bus.listener_count("a") == 2
    assert bus.publish("a", 1) == 2
    off1()
    off1()
    assert bus.listener_count("a") == 1
    assert bus.publish("a", 2) == 1
    bus.clear()
    off3 = bus.on("a", seen.append)
    off2()  # after clear(): must not touch the new registration
    assert bus.listener_count("a") == 1
    off3()
    assert bus.listener_count("a") == 0
    assert bus.statistics().topics == 0
    assert seen == [1, 1, 2]


async def test_tasks_waiting_on_two_subscriptions_both_get_one_publish() -> None:
    """One publish wakes a waiting task on each subscription of the topic."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        got: list[tuple[int, object]] = []

        async def wait(index: int, sub: Subscription[object]) -> None:
            got.append((index, await sub.receive()))

        async with (
            bus.subscribe("a") as first,
            bus.subscribe("a") as second,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(wait, 1, first)
            nursery.start_soon(wait, 2, second)
            await trio.testing.wait_all_tasks_blocked()
            assert bus.publish("a", "x") == 2
        assert sorted(got) == [(1, "x"), (2, "x")]


def test_handler_errors_counts_every_failure() -> None:
    """Each raising call and each returned awaitable adds one to handler_errors."""
    bus = MessageBus()

    def broken(payload: object) -> None:
        raise RuntimeError(payload)

    async def body() -> None:
        pass  # pragma: no cover - closed unawaited

    bus.on("a", broken)
    bus.on("a", broken)
    bus.on("*", lambda payload: body())
    for i in range(3):
        assert bus.publish("a", i) == 0
    assert bus.publish("b", 3) == 0
    assert bus.statistics().handler_errors == 3 * 3 + 1


def test_handler_returning_a_plain_value_is_delivered() -> None:
    """A handler's non-None, non-awaitable return value is ignored, not an error."""
    bus = MessageBus()
    bus.on("a", lambda payload: 42)
    bus.on("a", lambda payload: [payload])
    assert bus.publish("a", 1) == 2
    assert bus.statistics().handler_errors == 0


class _BareAwaitable:
    """An awaitable with no close() method."""

    def __await__(self) -> Any:
        return iter(())  # pragma: no cover - never awaited


def test_awaitable_without_close_never_makes_publish_raise() -> None:
    """A handler returning an awaitable that has no close() is counted, not raised."""
    bus = MessageBus()
    seen: list[object] = []
    bus.on("a", lambda payload: _BareAwaitable())
    bus.on("a", seen.append)
    assert bus.publish("a", 1) == 1
    assert bus.publish("a", 2) == 1
    assert seen == [1, 2]
    assert bus.statistics().handler_errors == 2


def test_later_handlers_run_after_one_returns_a_coroutine() -> None:
    """A handler after one that returned a coroutine still runs, in order."""
    bus = MessageBus()
    seen: list[object] = []

    async def body(payload: object) -> None:
        pass  # pragma: no cover - closed unawaited

    bus.on("a", seen.append)
    bus.on("a", lambda payload: body(payload))
    bus.on("a", lambda payload: seen.append(("after", payload)))
    assert bus.publish("a", 1) == 2
    assert seen == [1, ("after", 1)]


def test_changes_made_by_a_handler_apply_from_the_next_publish() -> None:
    """A handler may unsubscribe, subscribe and publish during a publish safely."""
    bus = MessageBus()
    seen: list[tuple[str, object]] = []
    offs: list[Any] = []

    def first(payload: object) -> None:
        seen.append(("first", payload))
        offs[0]()  # remove itself
        offs[1]()  # remove the second one: it still gets this message
        bus.on("a", lambda p: seen.append(("late", p)))
        if payload == 1:
            bus.publish("b", "nested")

    offs.append(bus.on("a", first))
    offs.append(bus.on("a", lambda p: seen.append(("second", p))))
    bus.on("b", lambda p: seen.append(("b", p)))
    assert bus.publish("a", 1) == 2
    assert seen == [("first", 1), ("b", "nested"), ("second", 1)]
    seen.clear()
    assert bus.publish("a", 2) == 1
    assert seen == [("late", 2)]


# -- wildcards -------------------------------------------------------------------


async def test_wildcard_patterns_route_by_prefix() -> None:
    """`telemetry:*` gets every device, `*` everything, exact+pattern get two copies."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with AsyncExitStack() as stack:
            every = await stack.enter_async_context(bus.subscribe("*"))
            telemetry = await stack.enter_async_context(bus.subscribe("telemetry:*"))
            dev1 = await stack.enter_async_context(
                bus.subscribe(telemetry_topic("dev1"))
            )
            assert bus.publish("telemetry:dev1", "t1") == 3
            assert bus.publish("telemetry:dev2", "t2") == 2
            assert bus.publish("alerts", "alert") == 1
            assert bus.publish("telemetry", "no colon") == 1
            assert drain(every) == ["t1", "t2", "alert", "no colon"]
            assert drain(telemetry) == ["t1", "t2"]
            assert drain(dev1) == ["t1"]
            assert bus.listener_count("telemetry:*") == 1
            assert bus.listener_count("*") == 1
            assert bus.listener_count("telemetry:dev2") == 0
        assert bus.publish("telemetry:dev1", "gone") == 0
        assert bus.statistics().topics == 0


# -- lifecycle and leaks ---------------------------------------------------------


async def test_clear_ends_async_for_after_buffered_messages() -> None:
    """clear() ends every `async for` once the already buffered messages are read."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        results: list[list[int]] = []

        async def consume(topic: str, *, task_status: trio.TaskStatus[None]) -> None:
            got: list[int] = []
            results.append(got)
            async with bus.subscribe(topic) as sub:
                task_status.started()
                async for payload in sub:
                    got.append(payload)

        handled: list[object] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(consume, "a")
            await nursery.start(consume, "a*")
            bus.on("a", handled.append)
            bus.publish("a", 1)
            await trio.testing.wait_all_tasks_blocked()
            bus.publish("a", 2)
            bus.publish("a", 3)
            bus.clear()  # 2 and 3 are still buffered
            assert bus.statistics().subscriptions == 0
            assert bus.publish("a", 4) == 0
        assert results == [[1, 2, 3], [1, 2, 3]]
        assert handled == [1, 2, 3]
        assert bus.statistics().topics == 0


async def test_subscriber_leaving_by_exception_leaves_no_trace() -> None:
    """A subscribe() block left by an exception unregisters its subscription."""
    with trio.fail_after(CAP):
        bus = MessageBus()

        async def body() -> None:
            async with bus.subscribe("telemetry:*"), bus.subscribe("a"):
                assert bus.statistics().subscriptions == 2
                raise KeyError("boom")

        with pytest.raises(KeyError):
            await body()
        assert bus.listener_count("a") == bus.listener_count("telemetry:*") == 0
        stats = bus.statistics()
        assert (stats.subscriptions, stats.topics) == (0, 0)
        assert bus.publish("telemetry:x", 1) == 0


async def test_subscriber_cancelled_in_receive_leaves_no_trace() -> None:
    """A task cancelled while waiting in receive() leaves no subscription behind."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        waiting: list[Subscription[Any]] = []

        async def subscriber() -> None:
            async with bus.subscribe("a") as sub, bus.subscribe("*"):
                waiting.append(sub)
                await sub.receive()
                raise AssertionError("nothing was published")  # pragma: no cover

        async with trio.open_nursery() as nursery:
            nursery.start_soon(subscriber)
            await trio.testing.wait_all_tasks_blocked()
            assert waiting
            assert bus.statistics().subscriptions == 2
            nursery.cancel_scope.cancel()
        assert bus.listener_count("a") == bus.listener_count("*") == 0
        stats = bus.statistics()
        assert (stats.subscriptions, stats.topics) == (0, 0)
        assert bus.publish("a", 1) == 0


async def test_aclose_unregisters_the_subscription() -> None:
    """Subscription.aclose() removes it from the bus; receive() then raises Closed."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a") as sub, bus.subscribe("a") as other:
            await sub.aclose()
            await sub.aclose()  # idempotent
            assert bus.listener_count("a") == 1
            assert bus.publish("a", 1) == 1
            assert drain(other) == [1]
            with pytest.raises(trio.ClosedResourceError):
                await sub.receive()
        assert bus.statistics().subscriptions == 0


async def test_publish_removes_a_subscription_closed_behind_its_back() -> None:
    """publish() skips and unregisters a subscription whose receive side is closed."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a") as sub, bus.subscribe("a") as other:
            sub._receive.close()  # e.g. closed by code that bypassed aclose()
            assert bus.listener_count("a") == 2
            assert bus.publish("a", 1) == 1
            assert bus.listener_count("a") == 1
            assert drain(other) == [1]
        assert bus.statistics().subscriptions == 0


async def test_statistics_snapshot() -> None:
    """statistics() reports sizes and cumulative counters as a frozen record."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        off = bus.on("b", lambda payload: 1 / 0)
        async with bus.subscribe("a", max_buffer=1) as sub, bus.subscribe("a*"):
            bus.publish("a", 1)
            bus.publish("a", 2)
            bus.publish("b", 3)
            stats = bus.statistics()
            assert stats == BusStatistics(
                topics=3,
                subscriptions=2,
                handlers=1,
                published=3,
                delivered=4,
                dropped=1,
                handler_errors=1,
                dropped_by_topic={"a": 1},
                buffered=3,
                max_buffered=2,
            )
            assert hash(stats) == hash(bus.statistics())
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                stats.published = 0  # type: ignore[misc]
            with pytest.raises(TypeError):
                stats.dropped_by_topic["a"] = 0  # type: ignore[index]
            assert drain(sub) == [2]
            bus.publish("a", 4)
            bus.publish("a", 5)
            assert stats.dropped_by_topic == {"a": 1}  # a snapshot stays put
        off()
        assert bus.statistics().topics == 0
        assert "subscriptions=0" in repr(bus)


async def test_dropped_by_topic_counts_each_subscription_topic() -> None:
    """Losses are counted per subscription topic, patterns and ended ones included."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a", max_buffer=1) as a:
            async with (
                bus.subscribe("a", max_buffer=2),
                bus.subscribe("*", max_buffer=1, overflow=Overflow.DROP_NEWEST),
            ):
                for i in range(4):
                    bus.publish("a", i)
                bus.publish("b", 4)
            assert (a.dropped, bus.statistics().subscriptions) == (3, 1)
            bus.publish("a", 5)
        stats = bus.statistics()
        assert stats.dropped_by_topic == {"a": 3 + 2 + 1, "*": 4}
        assert stats.dropped == 10
        bus.clear()
        assert bus.statistics().dropped_by_topic == {"a": 6, "*": 4}


async def test_buffered_and_max_buffered_show_the_lag() -> None:
    """The buffered total sums open subscriptions; max_buffered is the fullest."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        stats = bus.statistics()
        assert (stats.buffered, stats.max_buffered) == (0, 0)
        async with (
            bus.subscribe("a", max_buffer=3) as stalled,
            bus.subscribe("a*") as reader,
        ):
            for i in range(5):
                bus.publish("a", i)
            stats = bus.statistics()
            assert (stats.buffered, stats.max_buffered) == (3 + 5, 5)
            assert drain(reader) == [0, 1, 2, 3, 4]
            stats = bus.statistics()
            assert (stats.buffered, stats.max_buffered) == (3, 3)
            stalled.receive_nowait()
            assert bus.statistics().buffered == 2
            bus.publish("a", 5)
            await stalled.aclose()  # what it held is gone, not waiting
            stats = bus.statistics()
            assert (stats.buffered, stats.max_buffered) == (1, 1)
            bus.clear()  # reader still drains its buffer, but it is no longer open
            stats = bus.statistics()
            assert (stats.buffered, stats.max_buffered) == (0, 0)
            assert reader.receive_nowait() == 5


# -- batch receive ---------------------------------------------------------------


async def test_receive_batch_takes_everything_buffered_in_order() -> None:
    """receive_batch() returns every buffered message, oldest first, at a checkpoint."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a") as sub:
            for i in range(5):
                bus.publish("a", i)
            with trio.testing.assert_checkpoints():
                assert await sub.receive_batch() == (0, 1, 2, 3, 4)
            for i in range(5, 10):
                bus.publish("a", i)
            assert await sub.receive_batch(max_items=2) == (5, 6)
            assert await sub.receive_batch(2) == (7, 8)
            assert await sub.receive_batch(2) == (9,)
            with pytest.raises(trio.WouldBlock):
                sub.receive_nowait()


@pytest.mark.parametrize("bad", [0, -1])
async def test_max_items_below_one_is_refused(bad: int) -> None:
    """receive_batch() and batches() refuse max_items < 1 before taking anything."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a") as sub:
            bus.publish("a", 1)
            with pytest.raises(ValueError, match="max_items"):
                await sub.receive_batch(bad)
            with pytest.raises(ValueError, match="max_items"):
                sub.batches(bad)
            assert drain(sub) == [1]


async def test_receive_batch_waits_for_one_then_takes_what_followed() -> None:
    """A waiting receive_batch() gets the first message and all published with it."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        batches: list[tuple[int, ...]] = []

        async def consume(sub: Subscription[int], max_items: int | None) -> None:
            batches.append(await sub.receive_batch(max_items))

        async with bus.subscribe("a") as sub, trio.open_nursery() as nursery:
            nursery.start_soon(consume, sub, None)
            await trio.testing.wait_all_tasks_blocked()
            assert batches == []
            for i in range(3):
                bus.publish("a", i)
            await trio.testing.wait_all_tasks_blocked()
            assert batches == [(0, 1, 2)]
            nursery.start_soon(consume, sub, 2)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(3, 6):
                bus.publish("a", i)
            await trio.testing.wait_all_tasks_blocked()
            assert batches == [(0, 1, 2), (3, 4)]
            assert drain(sub) == [5]


async def test_cancelled_receive_batch_loses_nothing() -> None:
    """A cancelled receive_batch() loses nothing, even after a message was handed."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a") as sub:
            bus.publish("a", 1)
            with trio.CancelScope() as scope:
                scope.cancel()
                await sub.receive_batch()
            assert scope.cancelled_caught
            assert drain(sub) == [1]

            got: list[tuple[int, ...]] = []
            async with trio.open_nursery() as nursery:
                scope = trio.CancelScope()

                async def consume() -> None:
                    with scope:
                        got.append(await sub.receive_batch())

                nursery.start_soon(consume)
                await trio.testing.wait_all_tasks_blocked()
                bus.publish("a", 2)  # handed over to the waiting task...
                scope.cancel()  # ...which is cancelled before it runs
            assert got == [(2,)]
            assert not scope.cancelled_caught

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sub.receive_batch)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
            bus.publish("a", 3)
            assert drain(sub) == [3]


async def test_receive_batch_keeps_the_overflow_policies() -> None:
    """Lag is raised once before the buffered batch; dropped counts stay the same."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with (
            bus.subscribe("a", max_buffer=3, overflow=Overflow.ERROR) as error,
            bus.subscribe("a", max_buffer=3) as oldest,
        ):
            for i in range(8):
                bus.publish("a", i)
            with pytest.raises(SubscriberLagged) as excinfo:
                await error.receive_batch()
            assert excinfo.value.missed == 5
            assert await error.receive_batch() == (0, 1, 2)
            assert await oldest.receive_batch() == (5, 6, 7)
            assert (error.dropped, oldest.dropped) == (5, 5)
            bus.publish("a", 8)
            assert await error.receive_batch() == (8,)


async def test_batches_iterates_until_the_bus_is_cleared() -> None:
    """`async for batch in sub.batches()` yields tuples and ends on clear()."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        got: list[tuple[int, ...]] = []

        async def consume(*, task_status: trio.TaskStatus[None]) -> None:
            async with bus.subscribe("a") as sub:
                task_status.started()
                async for batch in sub.batches(max_items=3):
                    got.append(batch)

        async with trio.open_nursery() as nursery:
            await nursery.start(consume)
            bus.publish("a", 0)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(1, 6):
                bus.publish("a", i)
            bus.clear()
        assert got == [(0,), (1, 2, 3), (4, 5)]


async def test_batches_raises_when_closed_and_on_lag() -> None:
    """batches() propagates SubscriberLagged and ClosedResourceError like async for."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a", max_buffer=1, overflow=Overflow.ERROR) as sub:
            bus.publish("a", 0)
            bus.publish("a", 1)
            got: list[tuple[int, ...]] = []
            with pytest.raises(SubscriberLagged, match="missed 1"):
                await collect(sub.batches(), got)
            assert got == []
            assert await sub.batches().__anext__() == (0,)
            await sub.aclose()
            with pytest.raises(trio.ClosedResourceError):
                await collect(sub.batches(), got)
            assert got == []


_burst = st.tuples(st.integers(0, 6), st.integers(0, 3))  # (publishes, yields)


async def _publish_against_batch_consumer(
    max_buffer: int,
    overflow: Overflow,
    bursts: list[tuple[int, int]],
    takes: list[int | None],
) -> None:
    bus = MessageBus()
    received: list[int] = []
    lagged = 0

    async def consume(sub: Subscription[int]) -> None:
        nonlocal lagged
        for step in range(10_000):  # bounded: ends at EndOfChannel long before
            take = takes[step % len(takes)]
            try:
                if take == 0:
                    batch: tuple[int, ...] = (await sub.receive(),)
                else:
                    batch = await sub.receive_batch(take)
            except SubscriberLagged as exc:
                lagged += exc.missed
                continue
            except trio.EndOfChannel:
                return
            assert 1 <= len(batch) <= (take or max_buffer + 1)
            received.extend(batch)
        raise AssertionError("the consumer never saw the end")  # pragma: no cover

    published = 0
    with trio.fail_after(CAP):
        async with (
            bus.subscribe("a", max_buffer=max_buffer, overflow=overflow) as sub,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(consume, sub)
            for count, yields in bursts:
                for _ in range(count):
                    bus.publish("a", published)
                    published += 1
                for _ in range(yields):
                    await trio.lowlevel.checkpoint()
            bus.clear()
    assert received == sorted(set(received))  # in order, each at most once
    assert len(received) + sub.dropped == published  # nothing lost uncounted
    assert lagged == (sub.dropped if overflow is Overflow.ERROR else 0)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 4),
    st.sampled_from(Overflow),
    st.lists(_burst, max_size=30),
    st.lists(st.one_of(st.none(), st.integers(0, 4)), min_size=1, max_size=5),
)
def test_batch_receives_deliver_every_kept_message_once_in_order(
    max_buffer: int,
    overflow: Overflow,
    bursts: list[tuple[int, int]],
    takes: list[int | None],
) -> None:
    """Any mix of publishes, receive() and receive_batch() loses only counted drops."""
    trio.run(_publish_against_batch_consumer, max_buffer, overflow, bursts, takes)


# -- interrupt: what the manager sets while it has given up ----------------------


class _GaveUp(Exception):
    pass


async def test_interrupt_raises_once_the_buffer_is_drained() -> None:
    """While set, receives deliver what is buffered, then raise the factory's error."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a") as sub:
            bus.publish("a", 1)
            bus.publish("a", 2)
            bus.publish("a", 3)
            sub._set_interrupt(_GaveUp)
            assert await sub.receive() == 1
            assert await sub.receive_batch() == (2, 3)
            with pytest.raises(_GaveUp):
                await sub.receive()
            with pytest.raises(_GaveUp):
                await sub.receive_batch()
            with pytest.raises(_GaveUp):
                sub.receive_nowait()
            bus.publish("a", 4)  # still buffered while interrupted
            assert sub.receive_nowait() == 4


async def test_interrupt_wakes_waiting_tasks_and_none_rearms() -> None:
    """Setting an interrupt wakes every waiting receive; None makes them wait again."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        outcomes: list[object] = []

        async def wait(receive: Any) -> None:
            try:
                outcomes.append(await receive())
            except _GaveUp as exc:
                outcomes.append(exc)

        async with bus.subscribe("a") as sub, trio.open_nursery() as nursery:
            nursery.start_soon(wait, sub.receive)
            nursery.start_soon(wait, sub.receive_batch)
            await trio.testing.wait_all_tasks_blocked()
            sub._set_interrupt(_GaveUp)
            await trio.testing.wait_all_tasks_blocked()
            assert len(outcomes) == 2
            assert all(isinstance(o, _GaveUp) for o in outcomes)
            assert outcomes[0] is not outcomes[1]  # one error per receive

            sub._set_interrupt(None)
            outcomes.clear()
            nursery.start_soon(wait, sub.receive)
            await trio.testing.wait_all_tasks_blocked()
            assert outcomes == []
            bus.publish("a", 5)
            await trio.testing.wait_all_tasks_blocked()
            assert outcomes == [5]


async def test_interrupt_ends_async_for_and_batches() -> None:
    """`async for` and batches() raise the interrupt after the buffered messages."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a") as sub:
            got: list[object] = []
            bus.publish("a", 1)
            sub._set_interrupt(_GaveUp)
            with pytest.raises(_GaveUp):
                await collect(sub, got)
            bus.publish("a", 2)
            with pytest.raises(_GaveUp):
                await collect(sub.batches(), got)
            assert got == [1, (2,)]


async def test_closing_and_clearing_win_over_an_interrupt() -> None:
    """An interrupted subscription still ends on clear() and closes on aclose()."""
    with trio.fail_after(CAP):
        bus = MessageBus()
        async with bus.subscribe("a") as ended, bus.subscribe("a") as closed:
            ended._set_interrupt(_GaveUp)
            closed._set_interrupt(_GaveUp)
            await closed.aclose()
            with pytest.raises(trio.ClosedResourceError):
                await closed.receive_batch()
            bus.clear()
            assert [batch async for batch in ended.batches()] == []
            with pytest.raises(trio.EndOfChannel):
                ended.receive_nowait()


# -- property: the bus behaves like a simple model ---------------------------------

PUBLISH_TOPICS = ["alerts", "telemetry:a", "telemetry:b"]
SUBSCRIBE_TOPICS = [*PUBLISH_TOPICS, "telemetry:*", "*"]

_op = st.one_of(
    st.tuples(
        st.just("subscribe"),
        st.sampled_from(SUBSCRIBE_TOPICS),
        st.integers(1, 4),
        st.sampled_from(Overflow),
    ),
    st.tuples(st.just("on"), st.sampled_from(SUBSCRIBE_TOPICS)),
    st.tuples(st.just("leave"), st.integers(0, 7)),
    # Publishing twice as likely as anything else, so buffers do overflow.
    st.tuples(st.just("publish"), st.sampled_from(PUBLISH_TOPICS)),
    st.tuples(st.just("publish"), st.sampled_from(PUBLISH_TOPICS)),
    st.tuples(st.just("receive"), st.integers(0, 7), st.integers(1, 5)),
)


@attrs.define
class _ModelSubscription:
    topic: str
    max_buffer: int
    overflow: Overflow
    queue: deque[int] = attrs.Factory(deque)
    missed: int = 0
    dropped: int = 0

    def offer(self, message: int) -> bool:
        if len(self.queue) < self.max_buffer:
            self.queue.append(message)
            return True
        self.dropped += 1
        if self.overflow is Overflow.DROP_OLDEST:
            self.queue.popleft()
            self.queue.append(message)
            return True
        if self.overflow is Overflow.ERROR:
            self.missed += 1
        return False

    def take(self) -> tuple[str, int | None]:
        if self.missed:
            missed, self.missed = self.missed, 0
            return ("lagged", missed)
        if self.queue:
            return ("message", self.queue.popleft())
        return ("empty", None)


def _matches(pattern: str, topic: str) -> bool:
    if pattern.endswith("*"):
        return topic.startswith(pattern[:-1])
    return pattern == topic


def _take(subscription: Subscription[Any]) -> tuple[str, int | None]:
    try:
        return ("message", subscription.receive_nowait())
    except SubscriberLagged as exc:
        return ("lagged", exc.missed)
    except trio.WouldBlock:
        return ("empty", None)


def _check_drops_and_lag(
    stats: BusStatistics, live: list[tuple[str, Any, Any, Any]], ended: dict[str, int]
) -> None:
    """Per-topic drops sum to the total; buffered/max_buffered match the queues."""
    models = [model for kind, _, model, _ in live if kind == "sub"]
    by_topic = dict(ended)
    for model in models:
        by_topic[model.topic] = by_topic.get(model.topic, 0) + model.dropped
    assert stats.dropped_by_topic == {t: n for t, n in by_topic.items() if n}
    assert sum(stats.dropped_by_topic.values()) == stats.dropped
    waiting = [len(model.queue) for model in models]
    assert (stats.buffered, stats.max_buffered) == (sum(waiting), max(waiting or [0]))


async def _run_against_model(ops: list[tuple[Any, ...]]) -> None:
    bus = MessageBus()
    # Each live listener: (kind, real object or handler log, model, context/off).
    live: list[tuple[str, Any, Any, Any]] = []
    published = delivered = dropped = 0
    ended: dict[str, int] = {}  # drops of the subscriptions that left, by topic
    for op in ops:
        if op[0] == "subscribe":
            _, topic, max_buffer, overflow = op
            context = bus.subscribe(topic, max_buffer=max_buffer, overflow=overflow)
            real = await context.__aenter__()
            live.append(
                ("sub", real, _ModelSubscription(topic, max_buffer, overflow), context)
            )
        elif op[0] == "on":
            log: list[int] = []
            off = bus.on(op[1], log.append)
            live.append(("handler", log, (op[1], []), off))
        elif op[0] == "leave" and live:
            kind, real, model, closer = live.pop(op[1] % len(live))
            if kind == "sub":
                dropped += model.dropped
                ended[model.topic] = ended.get(model.topic, 0) + model.dropped
                await closer.__aexit__(None, None, None)
            else:
                closer()
        elif op[0] == "publish":
            message = published
            published += 1
            expected = 0
            for kind, _, model, _ in live:
                if kind == "sub" and _matches(model.topic, op[1]):
                    expected += model.offer(message)
                elif kind == "handler" and _matches(model[0], op[1]):
                    model[1].append(message)
                    expected += 1
            assert bus.publish(op[1], message) == expected
            delivered += expected
        elif op[0] == "receive" and live:
            kind, real, model, _ = live[op[1] % len(live)]
            if kind == "sub":
                for _ in range(op[2]):
                    assert _take(real) == model.take()
                assert real.dropped == model.dropped
            else:
                assert real == model[1]
        for topic in SUBSCRIBE_TOPICS:
            assert bus.listener_count(topic) == sum(
                1
                for kind, _, model, _ in live
                if (model.topic if kind == "sub" else model[0]) == topic
            )
        _check_drops_and_lag(bus.statistics(), live, ended)
    # Whatever is left must drain exactly as the model says.
    for kind, real, model, _ in live:
        if kind == "sub":
            while (step := model.take())[0] != "empty":
                assert _take(real) == step
            assert _take(real) == ("empty", None)
            dropped += model.dropped
        else:
            assert real == model[1]
    stats = bus.statistics()
    assert (stats.published, stats.delivered, stats.dropped) == (
        published,
        delivered,
        dropped,
    )
    assert stats.subscriptions == sum(kind == "sub" for kind, *_ in live)
    assert stats.handlers == sum(kind == "handler" for kind, *_ in live)
    assert stats.topics == len(
        {model.topic if kind == "sub" else model[0] for kind, _, model, _ in live}
    )
    bus.clear()
    assert bus.statistics().topics == 0


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(_op, min_size=10, max_size=80))
def test_bus_behaves_like_the_model(ops: list[tuple[Any, ...]]) -> None:
    """Random subscribe/on/leave/publish/receive runs match a simple queue model.

    Along the way, ``sum(dropped_by_topic.values()) == dropped`` after every step.
    """
    trio.run(_run_against_model, ops)
