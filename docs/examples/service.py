"""How-to: run a manager in a long-lived service that never stops trying.

Run: python docs/examples/service.py (needs the testing extra). It runs in
memory under Trio's mock clock, so the hour it spans passes at once.
"""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Callable

import trio
import trio.testing

from trio_ws_bus import (
    CONNECTION_TOPIC,
    Alert,
    Backoff,
    ConnectionEvent,
    ConnectionGaveUp,
    ConnectionStatus,
    WebSocketManager,
    open_websocket_manager,
)
from trio_ws_bus.testing import make_alert, open_reference_server

logger = logging.getLogger("alert_service")

# --- the settings --------------------------------------------------------------


def service_backoff(rng: random.Random | None = None) -> Backoff:
    """Retry forever, at most a minute apart, spread out across a fleet."""
    return Backoff(
        max_retries=None,  # an unreachable server is retried without end
        max_delay=60.0,
        jitter=0.5,  # each delay is 50 % to 100 % of the schedule's
        reset_after=60.0,  # a connection must last a minute to reset the delay
        rng=rng or random.Random(),
    )


#: How long the service waits before trying again after the manager gave up
#: (a failure that retrying cannot fix: a 403, a revoked credential).
REARM_DELAY = 600.0

# --- the service's tasks ---------------------------------------------------------


async def handle_alerts(
    manager: WebSocketManager, handle: Callable[[Alert], None]
) -> None:
    """Hand every alert to ``handle``, forever; after a give-up, re-arm later."""
    while True:
        try:
            async with manager.alerts() as alerts:
                async for batch in alerts:
                    for alert in batch:
                        handle(alert)
        except ConnectionGaveUp as exc:
            # Someone must look at this one: log it at ERROR, where alerting
            # rules look (no traceback: the reason says it all). Or let it
            # propagate and have systemd restart the service.
            reason = exc.reason
            logger.error("gave up: %s; again in %g s", reason, REARM_DELAY)  # noqa: TRY400
            await trio.sleep(REARM_DELAY)
            manager.connect()


async def report_health(manager: WebSocketManager, every: float = 300.0) -> None:
    """Log the manager's counters every ``every`` seconds, for dashboards."""
    while True:
        await trio.sleep(every)
        stats = manager.statistics()
        logger.info(
            "%s: %d attempts, %d connections, %d retries in a row, %d messages",
            stats.status,
            stats.attempts,
            stats.connections,
            stats.retries_used,
            stats.messages_received,
        )


# --- a run against a server that misbehaves ----------------------------------------


async def main() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    start = trio.current_time()

    def show(event: ConnectionEvent) -> None:
        if event.status is ConnectionStatus.CONNECTED:
            print(f"connected after {trio.current_time() - start:.0f} s")
        elif event.retry_count in (1, 20, 21, 40):
            print(f"retry {event.retry_count} in {event.retry_in:.1f} s")

    try:
        async with open_reference_server(listen=False) as server:
            server.reject_next(1, 403)  # a failure that retrying cannot fix
            server.transport.fail_next(40)  # then the server is down a while
            async with (
                open_websocket_manager(
                    "http://localhost",
                    token=server.issue_token,
                    backoff=service_backoff(random.Random(7)),
                    transport=server.transport,
                ) as manager,
                trio.open_nursery() as nursery,
            ):
                manager.bus.on(CONNECTION_TOPIC, show)
                handled = trio.Event()

                def handle(alert: Alert) -> None:
                    print(f"alert {alert.alert_id}: {alert.summary}")
                    handled.set()

                nursery.start_soon(handle_alerts, manager, handle)
                nursery.start_soon(report_health, manager)
                await server.wait_subscribed("alerts")
                await server.publish_alerts([make_alert(1, summary="Overheat")])
                await handled.wait()
                await trio.sleep(300.0)  # one more health report
                nursery.cancel_scope.cancel()
    finally:
        logger.removeHandler(handler)


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
