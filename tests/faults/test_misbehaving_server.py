"""A misbehaving server: broken frames, wrong handshake answers, bad input.

Frame-level and message-level scenarios run the real protocol over in-memory
streams under ``autojump_clock``; the raw-HTTP answers (non-101 statuses,
redirects, huge or junk answers) come from a real loopback socket and the real
clock, bounded by ``fail_after``.
"""

from __future__ import annotations

import json
import logging
import struct

import pytest
import trio
import trio.testing
from _fault_helpers import (
    assert_tidy_logs,
    errors,
    log_lines,
    losses,
    max_per_window,
    retries,
    wait_given_up,
)
from helpers import NO_RETRY, SCENARIO_CAP, SEED_ATTEMPT_TIMES, TokenLog, manager_on

from trio_ws_bus import (
    ALERTS_TOPIC,
    ERROR_TOPIC,
    Backoff,
    ConnectionEvent,
    ConnectionFailure,
    FailureKind,
    MessageBus,
    RetryRules,
    RetryVerdict,
    open_websocket_manager,
    seed_retry_policy,
)
from trio_ws_bus.testing import (
    Opcode,
    RawAnswer,
    encode_frame,
    http_response,
    make_alert,
    open_raw_http_server,
    open_reference_server,
    upgrade_response,
)

ALERT_2 = json.dumps({"type": "alerts", "alerts": [make_alert(2)]}).encode()

# --- 7. frame-level violations ----------------------------------------------------

VIOLATIONS = {
    # id: (raw bytes, the close code the protocol prescribes)
    "invalid-utf8": (
        encode_frame(Opcode.TEXT, b'{"type":"error","message":"\xff"}'),
        1007,
    ),
    "lone-surrogate-utf8": (encode_frame(Opcode.TEXT, b'"\xed\xa0\x80"'), 1007),
    "utf8-broken-across-fragments": (
        encode_frame(Opcode.TEXT, ALERT_2[:30] + b"\xe2\x82", fin=False)
        + encode_frame(Opcode.CONTINUATION, b"A" + ALERT_2[30:]),
        1007,
    ),
    "masked-server-frame": (encode_frame(Opcode.TEXT, ALERT_2, mask=b"abcd"), 1002),
    "masked-continuation": (
        encode_frame(Opcode.TEXT, ALERT_2[:30], fin=False)
        + encode_frame(Opcode.CONTINUATION, ALERT_2[30:], mask=b"abcd"),
        1002,
    ),
    "reserved-bits": (encode_frame(Opcode.TEXT, ALERT_2, rsv=4), 1002),
    "oversized-control-frame": (encode_frame(Opcode.PING, b"p" * 126), 1002),
    "fragmented-control-frame": (encode_frame(Opcode.PING, b"p", fin=False), 1002),
    "unknown-opcode": (encode_frame(0x3, b"?"), 1002),
    "orphan-continuation": (encode_frame(Opcode.CONTINUATION, ALERT_2), 1002),
    "new-message-inside-fragmented": (
        encode_frame(Opcode.TEXT, ALERT_2[:30], fin=False)
        + encode_frame(Opcode.TEXT, ALERT_2),
        1002,
    ),
    "close-with-invalid-code": (
        encode_frame(Opcode.CLOSE, struct.pack("!H", 999)),
        1002,
    ),
    "close-with-one-byte": (encode_frame(Opcode.CLOSE, b"\x03"), 1002),
}


@pytest.mark.parametrize(("raw", "code"), VIOLATIONS.values(), ids=list(VIOLATIONS))
async def test_frame_violation_fails_with_the_protocol_code_and_reconnects(
    raw: bytes,
    code: int,
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broken frame: close with 1002/1007, nothing partial delivered, reconnect.

    A text frame that is not UTF-8 is counted as invalid.
    """
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, events):
            async with manager.alerts() as alerts:
                await server.wait_subscribed("alerts")
                await server.publish_alerts([make_alert(1)])
                first = server.connections[0]
                assert await first.write_raw(raw)
                await server.wait_until(lambda s: first.closed)
                # The server was told why, with the protocol's close code.
                assert first.close_code == code
                await server.wait_until(
                    lambda s: len(s.connections) == 1 and s.connections[0] is not first
                )
                await server.wait_subscribed("alerts")
                await server.publish_alerts([make_alert(3)])
                got = [(await alerts.receive())[0].alert_id for _ in range(2)]
                assert got == [1, 3]
                with pytest.raises(trio.WouldBlock):
                    alerts.receive_nowait()
            [(lost_code, reason)] = losses(events)
            assert lost_code == code
            assert reason is not None
            assert reason.startswith("Protocol error: ")
            assert retries(events) == [1.0]
            stats = manager.statistics()
            # A text frame refused for its UTF-8 is a message lost: counted.
            refused = 1 if code == 1007 else 0
            assert (stats.connections, stats.invalid_messages) == (2, refused)
    assert_tidy_logs(caplog)
    assert any("broke the WebSocket protocol" in line for line in log_lines(caplog))


# --- 8. handshake answers other than 101 (real loopback sockets) ------------------

FAST = Backoff(base=0.01, max_delay=0.01, max_retries=2)

NOT_101 = {
    "200": (http_response(200, body=b"<html>hello</html>"), 200, None),
    "400": (http_response(400, body=b"bad request"), 400, None),
    "404": (http_response(404, body=b"not found"), 404, None),
    "429": (http_response(429, headers=[("Retry-After", "120")]), 429, None),
    "500": (http_response(500, body=b"oops"), 500, None),
    "502": (http_response(502, body=b"bad gateway"), 502, None),
    "503": (http_response(503, headers=[("Retry-After", "5")]), 503, None),
    "junk-text": (
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        None,
        "Invalid handshake answer: answer is not HTTP",
    ),
    "junk-binary": (
        bytes(range(256)) * 8,
        None,
        "Invalid handshake answer: answer is not HTTP",
    ),
    "101-bad-accept-key": (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n",
        None,
        "Invalid handshake answer: not a WebSocket upgrade",
    ),
    "101-without-upgrade": (
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        None,
        "Invalid handshake answer: not a WebSocket upgrade",
    ),
}


class PolicySpy:
    """A retry policy that records every failure it is asked about."""

    def __init__(self, rules: RetryRules | None = None) -> None:
        self.failures: list[ConnectionFailure] = []
        self._rules = rules

    def __call__(self, failure: ConnectionFailure) -> RetryVerdict:
        self.failures.append(failure)
        if self._rules is not None:
            return self._rules(failure)
        return seed_retry_policy(failure)


@pytest.mark.parametrize(
    ("answer", "status", "message"), NOT_101.values(), ids=list(NOT_101)
)
async def test_non_101_answer_is_a_counted_failed_attempt(
    answer: bytes,
    status: int | None,
    message: str | None,
    no_tasks_left: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Statuses, junk, bad upgrades: classified, retried to the budget, no task left."""
    spy = PolicySpy()
    with trio.fail_after(SCENARIO_CAP):
        async with open_raw_http_server(answer) as raw:
            async with open_websocket_manager(
                raw.url, token="tok-123", backoff=FAST, retry_policy=spy
            ) as manager:
                events: list[ConnectionEvent] = []
                manager.bus.on("connection", events.append)
                assert (
                    await wait_given_up(manager) == "Max reconnection attempts reached"
                )
            assert raw.connections == 3
    if status is not None:
        assert [(f.kind, f.status_code) for f in spy.failures] == [
            (FailureKind.REJECTED, status)
        ] * 3
        assert errors(events)[:-1] == [f"Handshake rejected with HTTP {status}"] * 3
    else:
        assert [f.kind for f in spy.failures] == [FailureKind.PROTOCOL_ERROR] * 3
        assert errors(events)[:-1] == [message] * 3
    assert [f.repeats for f in spy.failures] == [0, 1, 2]
    assert_tidy_logs(caplog, "tok-123")


@pytest.mark.parametrize(
    ("answer", "attempts", "given_up"),
    [
        (http_response(401), 1, "Connection rejected with HTTP 401 (not retried)"),
        (http_response(404), 1, "Connection rejected with HTTP 404 (not retried)"),
        (
            b"junk\r\n\r\n",
            1,
            "Invalid handshake answer: answer is not HTTP (not retried)",
        ),
        (http_response(503), 3, "Max reconnection attempts reached"),
    ],
    ids=["401", "404", "junk", "503"],
)
async def test_policy_rules_stop_on_fatal_answers(
    answer: bytes, attempts: int, given_up: str, no_tasks_left: None
) -> None:
    """RetryRules: fatal statuses and kinds stop at once; others use the budget."""
    policy = RetryRules(
        fatal_statuses={400, 401, 403, 404}, fatal_kinds={FailureKind.PROTOCOL_ERROR}
    )
    with trio.fail_after(SCENARIO_CAP):
        async with open_raw_http_server(answer) as raw:
            async with open_websocket_manager(
                raw.url, token="t", backoff=FAST, retry_policy=policy
            ) as manager:
                assert await wait_given_up(manager) == given_up
            assert raw.connections == attempts


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_never_followed(status: int, no_tasks_left: None) -> None:
    """A redirect is a rejection: the token never goes to the Location host."""
    with trio.fail_after(SCENARIO_CAP):
        async with open_raw_http_server(http_response(101)) as elsewhere:
            location = elsewhere.url + "/api/v2/ws?token=stolen"
            answer = http_response(status, headers=[("Location", location)])
            async with open_raw_http_server(answer) as raw:
                async with open_websocket_manager(
                    raw.url, token="tok-redirect", backoff=FAST
                ) as manager:
                    events: list[ConnectionEvent] = []
                    manager.bus.on("connection", events.append)
                    await wait_given_up(manager)
                assert raw.connections == 3
            assert elsewhere.connections == 0
    assert errors(events)[0] == f"Handshake rejected with HTTP {status}"
    port = raw.url.rpartition(":")[2]
    for request in raw.requests:
        assert f"Host: 127.0.0.1:{port}\r\n".encode() in request
        assert b"token=tok-redirect" in request


def accept_then(*frames: bytes) -> RawAnswer:
    """A raw answer: a valid 101 for the request, then ``frames`` as they are."""
    return lambda request: upgrade_response(request) + b"".join(frames)


@pytest.mark.parametrize("chunk_size", [1, 7, 64 * 1024])
async def test_answers_split_anywhere_are_parsed(
    chunk_size: int, no_tasks_left: None
) -> None:
    """An answer dribbled in pieces: a 401 is still a 401, a 101 still connects."""
    alert = encode_frame(Opcode.TEXT, ALERT_2)
    with trio.fail_after(SCENARIO_CAP):
        async with open_raw_http_server(
            [http_response(401, body=b"no"), accept_then(alert)],
            chunk_size=chunk_size,
            hold_open=True,
        ) as raw:
            spy = PolicySpy()
            bus = MessageBus()
            async with (
                bus.subscribe(ALERTS_TOPIC) as alerts,
                open_websocket_manager(
                    raw.url,
                    token="t",
                    bus=bus,
                    backoff=Backoff(base=0.01),
                    retry_policy=spy,
                    close_timeout=0.1,  # the raw server never answers a close
                ) as manager,
            ):
                assert [a.alert_id for a in await alerts.receive()] == [2]
                assert manager.is_connected
            assert [(f.kind, f.status_code) for f in spy.failures] == [
                (FailureKind.REJECTED, 401)
            ]


HEAD_TOO_LONG = (
    "Handshake rejected with HTTP 401 (answer head longer than 16384 bytes, not read)"
)
SECRET_BODY = b"BODY-SECRET-" * (8 * 1024 * 1024 // 12)  # about 8 MiB
HUGE = {
    "401-with-8MiB-body": (
        http_response(
            401,
            headers=[("Set-Cookie", "session=abc123; HttpOnly")],
            body=SECRET_BODY,
        ),
        64 * 1024,
        "Handshake rejected with HTTP 401 (answer longer than 65536 bytes, not read)",
    ),
    "401-8MiB-in-1KiB-chunks": (
        http_response(401, headers=[("Set-Cookie", "s=1")], body=SECRET_BODY),
        1024,
        "Handshake rejected with HTTP 401 (answer longer than 65536 bytes, not read)",
    ),
    "401-with-huge-headers": (
        http_response(
            401,
            headers=[("Set-Cookie", "x=" + "y" * 100)]
            + [(f"X-Filler-{i}", "BODY-SECRET-" * 80) for i in range(120)],
        ),
        64 * 1024,
        HEAD_TOO_LONG,
    ),
    "endless-status-line": (
        b"HTTP/1.1 401 " + b"BODY-SECRET-" * 10_000,
        64 * 1024,
        HEAD_TOO_LONG,
    ),
}


@pytest.mark.parametrize(
    ("answer", "chunk_size", "message"), HUGE.values(), ids=list(HUGE)
)
async def test_huge_rejection_is_cut_short_and_never_shown(
    answer: bytes,
    chunk_size: int,
    message: str,
    no_tasks_left: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 401 with an 8 MiB body or huge headers: fast, short messages, no Set-Cookie."""
    caplog.set_level(logging.DEBUG)
    spy = PolicySpy()
    shown: list[str] = []
    with trio.fail_after(SCENARIO_CAP):
        async with open_raw_http_server(answer, chunk_size=chunk_size) as raw:
            started = trio.current_time()
            async with open_websocket_manager(
                raw.url,
                token="tok-huge",
                backoff=NO_RETRY,
                retry_policy=spy,
            ) as manager:
                events: list[ConnectionEvent] = []
                manager.bus.on("connection", events.append)
                reason = await wait_given_up(manager)
                shown.append(reason)
                shown.append(repr(manager.statistics()))
            elapsed = trio.current_time() - started
    assert elapsed < 5.0  # neither open_timeout nor reading 8 MiB
    assert [(f.kind, f.status_code) for f in spy.failures] == [
        (FailureKind.REJECTED, 401)
    ]
    assert errors(events) == [message, "Max reconnection attempts reached"]
    shown.extend(repr(event) for event in events)
    shown.extend(repr(failure) for failure in spy.failures)
    for text in shown:
        assert len(text) < 400
        assert "Set-Cookie" not in text
        assert "BODY-SECRET" not in text
    assert_tidy_logs(caplog, "Set-Cookie", "BODY-SECRET", "tok-huge")


# --- 9. bad input interleaved with valid alerts -----------------------------------

GARBAGE: list[str | bytes] = [
    "not json at all",
    "",
    "null",
    "[]",
    "42",
    '{"type":"nope"}',
    '{"no_type":true}',
    '{"type":"alerts","alerts":"not a list"}',
    '{"type":"alerts","alerts":[{"alert_id":"1"}]}',  # wrong field type
    '{"type":"telemetry","device_id":"d1","data":{"timestamp":"2024-01-01T00:00:00Z",'
    '"metrics":{"t":NaN}}}',
    '{"type":"telemetry","device_id":"d1","data":{"timestamp":"2024-01-01T00:00:00Z",'
    '"metrics":{"t":Infinity}}}',
    '{"type":"telemetry","device_id":"d1","data":{"timestamp":"2024-01-01T00:00:00Z",'
    '"metrics":{"t":1e400}}}',
    '{"type":"alerts","alerts":[{"alert_id":' + "9" * 5000 + "}]}",
    '{"type":"alerts","alerts":[' + "[" * 10_000 + "]" * 10_000 + "]}",
    '{"type":"error","message":"\\ud800"}',  # a lone surrogate, escaped
    '{"type":"alerts","alerts":[{"summary":"\\udfff"}]}',
    '{"type":"x\u001b[31m\r\nFAKE LOG LINE"}',
    "\x1b[2J\x1b[H" + "A" * 3000,
    b"\x00\x01binary frame",
    b"",
]


async def test_garbage_is_counted_logged_once_and_valid_alerts_flow(
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Garbage amid valid alerts: alerts in order, one connection, rate-limited logs."""
    caplog.set_level(logging.WARNING)
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, _):
            async with manager.alerts(max_buffer=1000) as alerts:
                await server.wait_subscribed("alerts")
                for i, bad in enumerate(GARBAGE):
                    await server.publish_alerts([make_alert(i)])
                    assert await server.send_raw(bad) == 1
                await server.publish_alerts([make_alert(len(GARBAGE))])
                got = [
                    (await alerts.receive())[0].alert_id
                    for _ in range(len(GARBAGE) + 1)
                ]
                assert got == list(range(len(GARBAGE) + 1))
                stats = manager.statistics()
                assert stats.invalid_messages == len(GARBAGE)
                assert stats.alerts_messages == len(GARBAGE) + 1
                assert stats.connections == 1
                assert manager.is_connected
    lines = log_lines(caplog)
    summaries = [line for line in lines if "more not logged one by one" in line]
    notice = [line for line in lines if "further ones on this connection" in line]
    one_by_one = [
        line
        for line in lines
        if line.startswith("ignored an invalid message: ")
        and line not in summaries + notice
    ]
    assert len(one_by_one) == 10  # the first ten of the connection, each once
    assert len(notice) == 1
    assert summaries == [
        f"ignored an invalid message: {len(GARBAGE) - 10} more not logged one by one"
    ]
    assert_tidy_logs(caplog, "FAKE LOG LINE\n")
    assert len(lines) <= 14


async def test_garbage_flood_is_summarised_at_most_once_a_minute(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    no_tasks_left: None,
) -> None:
    """A server sending garbage every second for 10 minutes: ~20 log lines, not 600."""
    caplog.set_level(logging.WARNING)
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, _):
            await manager.wait_connected()
            for _ in range(600):
                await server.send_raw("garbage")
                await trio.sleep(1.0)
            assert manager.statistics().invalid_messages == 600
            assert manager.statistics().connections == 1
    lines = [line for line in log_lines(caplog) if "invalid message" in line]
    assert 10 + 1 + 9 <= len(lines) <= 10 + 1 + 11
    summarised = sum(
        int(line.split(": ")[1].split()[0])
        for line in lines
        if "more not logged one by one" in line
    )
    assert summarised == 600 - 10


# --- 10. messages over max_message_size -------------------------------------------


def alerts_message_of_size(size: int, *, fill: str = "é") -> str:
    """A valid alerts message exactly ``size`` bytes long in UTF-8."""
    base = json.dumps({"type": "alerts", "alerts": [make_alert(1, summary="")]})
    padding = size - len(base.encode())
    width = len(fill.encode())
    text = fill * (padding // width) + "x" * (padding % width)
    message = json.dumps(
        {"type": "alerts", "alerts": [make_alert(1, summary=text)]}, ensure_ascii=False
    )
    assert len(message.encode()) == size
    return message


@pytest.mark.parametrize(
    ("size", "fill", "delivered"),
    [
        (4000, "é", True),  # exactly the limit: 2 bytes per character
        (4001, "é", False),  # one byte over, fewer characters than the limit
        (4001, "x", False),  # one byte over, ASCII (trio-websocket's own check)
        (4000 * 3, "€", False),  # 3 bytes per character
    ],
    ids=["at-limit-2-byte", "over-2-byte", "over-ascii", "3x-over-3-byte"],
)
async def test_max_message_size_is_measured_in_bytes(
    size: int,
    fill: str,
    delivered: bool,
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
) -> None:
    """The limit counts UTF-8 bytes; over it: 1009, counted, retried, earlier kept."""
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, max_message_size=4000) as (manager, events):
            async with manager.alerts() as alerts:
                await server.wait_subscribed("alerts")
                first = server.connections[0]
                await server.publish_alerts([make_alert(7)])
                await server.send_raw(alerts_message_of_size(size, fill=fill))
                assert (await alerts.receive())[0].alert_id == 7
                if delivered:
                    assert (await alerts.receive())[0].summary.startswith(fill)
                    assert manager.statistics().invalid_messages == 0
                    assert losses(events) == []
                else:
                    await server.wait_until(
                        lambda s: (
                            len(s.connections) == 1 and s.connections[0] is not first
                        )
                    )
                    await server.wait_subscribed("alerts")  # reconnected, replayed
                    assert first.close_code == 1009
                    assert losses(events) == [(1009, "Message too big")]
                    assert manager.statistics().invalid_messages == 1
                    assert retries(events) == [1.0]


async def test_frame_claiming_exabytes_costs_at_most_max_message_size(
    autojump_clock: trio.testing.MockClock, no_tasks_left: None
) -> None:
    """A text frame whose header promises 2**62 bytes is refused at its header: 1009.

    websockets' parser checks the announced length against the limit before
    it buffers a byte of payload, so the frame costs nothing at all.
    """
    header = bytes([0x80 | Opcode.TEXT, 127]) + struct.pack("!Q", 2**62)
    async with open_reference_server(listen=False) as server:
        async with manager_on(server, max_message_size=4000) as (manager, events):
            await manager.wait_connected()
            first = server.connections[0]
            assert await first.write_raw(header)
            await server.wait_until(lambda s: len(s.all_connections) == 2)
            assert first.close_code == 1009
            assert losses(events) == [(1009, "Message too big")]
            assert manager.statistics().invalid_messages == 1


async def test_oversized_resend_after_every_subscribe_follows_the_backoff(
    autojump_clock: trio.testing.MockClock, no_tasks_left: None
) -> None:
    """Too big after every subscribe: with reset_after, the seed schedule, give up."""
    async with open_reference_server(listen=False) as server:
        server.send_after_subscribe("x" * 2000)
        tokens = TokenLog(server)
        async with manager_on(
            server,
            token=tokens,
            max_message_size=1000,
            backoff=Backoff(reset_after=10.0),  # the opt-in defence
        ) as (manager, events):
            manager.subscribe("alerts")
            assert await wait_given_up(manager) == "Max reconnection attempts reached"
            await trio.sleep(3600)
        assert tokens.relative_times() == SEED_ATTEMPT_TIMES
        assert max_per_window(tokens.times) == 6
        assert set(losses(events)) == {(1009, "Message too big")}
        assert manager.statistics().invalid_messages == 21
        assert [c.close_code for c in server.all_connections] == [1009] * 21


# --- 11. server error messages ----------------------------------------------------

ERROR_TEXTS = [
    "line one\r\nline two\nINFO fake log line",
    "\x1b[31mred\x1b[0m \x1b]0;title\x07 \x00 nul",
    "E" * 1_000_000,
    "\x1b" * 5000,  # four characters each once escaped
]


async def test_server_errors_are_published_whole_and_logged_escaped_and_short(
    autojump_clock: trio.testing.MockClock,
    no_tasks_left: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Hostile error texts reach ERROR_TOPIC verbatim; their log lines are tame."""
    caplog.set_level(logging.DEBUG)
    async with open_reference_server(listen=False) as server:
        async with manager_on(server) as (manager, _):
            async with manager.bus.subscribe(ERROR_TOPIC) as server_errors:
                await manager.wait_connected()
                for text in ERROR_TEXTS:
                    assert await server.send_error(text) == 1
                received = [await server_errors.receive() for _ in ERROR_TEXTS]
            assert received == ERROR_TEXTS
            assert manager.statistics().server_errors == len(ERROR_TEXTS)
            assert manager.is_connected
    lines = [line for line in log_lines(caplog) if line.startswith("server error: ")]
    assert len(lines) == len(ERROR_TEXTS)
    assert "\\r\\n" in lines[0]
    assert "\\x1b[31m" in lines[1]
    assert lines[2].endswith("(1000000 chars)")
    assert_tidy_logs(caplog, "EEEEEEEEEE" * 30)
