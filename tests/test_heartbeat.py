"""The heartbeat: pure clock first, then through the session with on_timer."""

from __future__ import annotations

import math

from hypothesis import given, strategies as st
from sansio import Client, Peer, client_frames

from trio_ws_bus._failures import ConnectionFailure, FailureKind
from trio_ws_bus._heartbeat import LIVELINESS_BYTES, Heartbeat, HeartbeatAction
from trio_ws_bus._session import SessionState
from trio_ws_bus.testing import Opcode, encode_frame

NOTHING, PING, TIMEOUT = HeartbeatAction  # in declaration order


def started(interval: float | None = 10.0, timeout: float = 5.0) -> Heartbeat:
    """A heartbeat whose connection opened at t=100."""
    heartbeat = Heartbeat(interval, timeout)
    heartbeat.start(100.0)
    return heartbeat


# --- the pure clock --------------------------------------------------------------


def test_first_ping_is_due_one_interval_after_start() -> None:
    """deadline() is start + interval exactly; nothing happens before it."""
    heartbeat = started()
    assert heartbeat.deadline() == 110.0
    assert heartbeat.poll(109.999) is NOTHING
    assert heartbeat.poll(110.0) is PING


def test_after_a_ping_the_deadline_is_the_pong_due_time() -> None:
    """With a ping out, the next deadline is the earlier of pong due and next ping."""
    heartbeat = started(interval=10.0, timeout=5.0)
    heartbeat.poll(110.0)
    assert heartbeat.deadline() == 115.0
    slow = started(interval=2.0, timeout=5.0)
    slow.poll(102.0)
    assert slow.deadline() == 104.0


def test_pong_with_the_payload_clears_the_ping() -> None:
    """The pong for the outstanding ping clears it: the next ping comes on time."""
    heartbeat = started()
    heartbeat.poll(110.0)
    heartbeat.on_pong(heartbeat.payload)
    assert heartbeat.deadline() == 120.0
    assert heartbeat.poll(115.0) is NOTHING
    assert heartbeat.poll(120.0) is PING


def test_pong_with_another_payload_does_not_count() -> None:
    """A stale or unsolicited pong leaves the ping outstanding."""
    heartbeat = started()
    heartbeat.poll(110.0)
    heartbeat.on_pong(b"\x00\x00\x00\x00")
    heartbeat.on_pong(b"other")
    assert heartbeat.poll(115.0) is TIMEOUT


def test_each_ping_has_a_new_payload() -> None:
    """Ping payloads count up, so an old pong never answers a new ping."""
    heartbeat = started()
    payloads = []
    for now in (110.0, 120.0, 130.0):
        assert heartbeat.poll(now) is PING
        payloads.append(heartbeat.payload)
        heartbeat.on_pong(heartbeat.payload)
    assert payloads == [b"\x00\x00\x00\x01", b"\x00\x00\x00\x02", b"\x00\x00\x00\x03"]


def test_unanswered_ping_times_out() -> None:
    """No pong and a quiet link for timeout seconds: the peer is gone."""
    heartbeat = started()
    heartbeat.poll(110.0)
    heartbeat.on_bytes(LIVELINESS_BYTES - 1)
    assert heartbeat.poll(114.999) is NOTHING
    assert heartbeat.poll(115.0) is TIMEOUT


def test_one_ping_outstanding_at_a_time() -> None:
    """An interval shorter than the timeout does not stack pings."""
    heartbeat = started(interval=2.0, timeout=5.0)
    assert [heartbeat.poll(t) for t in (102.0, 104.0, 106.0)] == [
        PING,
        NOTHING,
        NOTHING,
    ]
    assert heartbeat.payload == b"\x00\x00\x00\x01"
    assert heartbeat.poll(107.0) is TIMEOUT


def test_busy_connection_stays_alive_window_after_window() -> None:
    """1 KiB per timeout window keeps a connection whose pong is late alive."""
    heartbeat = started()
    heartbeat.poll(110.0)
    due = 115.0
    for _ in range(5):
        heartbeat.on_bytes(LIVELINESS_BYTES)
        assert heartbeat.poll(due) is NOTHING
        due += 5.0
        assert heartbeat.deadline() == due
    assert heartbeat.poll(due) is TIMEOUT  # the data stopped


def test_trickle_is_cut_off() -> None:
    """A few bytes per window do not keep a connection alive."""
    heartbeat = started()
    heartbeat.poll(110.0)
    heartbeat.on_bytes(10)
    assert heartbeat.poll(115.0) is TIMEOUT


def test_bytes_add_up_within_a_window() -> None:
    """1 KiB in small reads counts as much as 1 KiB in one."""
    heartbeat = started()
    heartbeat.poll(110.0)
    for _ in range(4):
        heartbeat.on_bytes(LIVELINESS_BYTES // 4)
    assert heartbeat.poll(115.0) is NOTHING


def test_each_window_needs_its_own_kibibyte() -> None:
    """After a busy window, one byte short of 1 KiB in the next one times out."""
    heartbeat = started()
    heartbeat.poll(110.0)
    heartbeat.on_bytes(LIVELINESS_BYTES)
    assert heartbeat.poll(115.0) is NOTHING
    heartbeat.on_bytes(LIVELINESS_BYTES - 1)
    assert heartbeat.poll(120.0) is TIMEOUT


def test_the_payload_wraps_after_2_to_the_32_pings() -> None:
    """The ping after payload ff ff ff ff carries 00 00 00 00, and is answered by it."""
    heartbeat = Heartbeat(10.0, 5.0, pings_sent=2**32 - 1)
    heartbeat.start(100.0)
    assert heartbeat.poll(110.0) is PING
    assert heartbeat.payload == b"\x00\x00\x00\x00"
    heartbeat.on_pong(b"\x00\x00\x00\x00")
    assert heartbeat.poll(115.0) is NOTHING


def test_disabled_heartbeat_never_pings() -> None:
    """interval=None: no deadline, no ping, no timeout, whatever happens."""
    heartbeat = started(interval=None)
    assert heartbeat.deadline() == math.inf
    assert heartbeat.poll(1e12) is NOTHING


@given(
    interval=st.floats(0.01, 100.0),
    timeout=st.floats(0.01, 100.0),
    answered=st.lists(st.booleans(), min_size=1, max_size=20),
)
def test_polling_at_each_deadline_follows_the_rules(
    interval: float, timeout: float, answered: list[bool]
) -> None:
    """Polled at every deadline: pings interval apart, timeout for a missing pong."""
    heartbeat = started(interval, timeout)
    last_ping = 100.0
    for answer in answered:
        now = heartbeat.deadline()
        action = heartbeat.poll(now)
        if action is TIMEOUT:
            assert now == last_ping + timeout
            return
        if action is PING:
            assert now >= last_ping + interval
            last_ping = now
            if answer:
                heartbeat.on_pong(heartbeat.payload)
        assert heartbeat.deadline() > now


# --- through the session ---------------------------------------------------------


def pinging(**settings: object) -> Client:
    """An open session with ping_interval=10, ping_timeout=5, opened at t=100."""
    client = Client(**{"ping_interval": 10.0, "ping_timeout": 5.0, **settings})  # type: ignore[arg-type]
    client.accept(now=100.0)
    return client


def heartbeat_timeout(at: float) -> ConnectionFailure:
    """The outcome of a heartbeat timeout at ``at`` (opened at t=100)."""
    return ConnectionFailure(
        FailureKind.CLOSED,
        close_code=1006,
        reason="Heartbeat timeout",
        connected_for=at - 100.0,
    )


def test_session_pings_at_its_deadline() -> None:
    """on_timer at deadline() sends a ping with the heartbeat's payload."""
    client = pinging()
    assert client.session.deadline() == 110.0
    client.session.on_timer(109.0)
    assert client.output() == b""
    client.session.on_timer(110.0)
    assert client_frames(client.output()) == [(Opcode.PING, b"\x00\x00\x00\x01")]
    assert client.session.deadline() == 115.0


def test_session_pong_from_a_real_server_keeps_it_open() -> None:
    """The websockets server answers each ping: the session outlives the timeout."""
    peer = Peer(Client(ping_interval=10.0, ping_timeout=5.0))
    peer.exchange(100.0)
    session = peer.client.session
    for now in (110.0, 120.0, 130.0):
        session.on_timer(now)
        peer.exchange(now)
        session.on_timer(now + 5.0)
        assert session.state is SessionState.OPEN
    assert [frame.opcode.name for frame in peer.received] == ["PING"] * 3


def test_session_timeout_is_1006_and_sends_nothing() -> None:
    """No pong: 1006 "Heartbeat timeout", and no close frame goes out."""
    client = pinging()
    client.session.on_timer(110.0)
    client.output()
    client.session.on_timer(115.0)
    assert client.session.outcome == heartbeat_timeout(115.0)
    assert client.output() == b""


def test_session_busy_connection_outlives_the_timeout() -> None:
    """A large message arriving slowly (>= 1 KiB per window) is not cut off."""
    client = pinging(max_message_size=1 << 20)
    client.session.on_timer(110.0)
    client.output()
    client.receive(encode_frame(Opcode.TEXT, b"x", fin=False), 110.0)
    for window in range(1, 6):
        chunk = encode_frame(Opcode.CONTINUATION, b" " * LIVELINESS_BYTES, fin=False)
        client.receive(chunk, 110.0 + 5 * window - 1)
        client.session.on_timer(110.0 + 5 * window)
        assert client.session.state is SessionState.OPEN
    client.session.on_timer(140.0)
    assert client.session.outcome == heartbeat_timeout(140.0)


def test_session_trickle_is_cut_off() -> None:
    """A frame that trickles in a few bytes per window times out."""
    client = pinging()
    client.session.on_timer(110.0)
    client.receive(b"\x81\x7e\x10", 112.0)  # a 4 KiB frame, begun
    client.session.on_timer(115.0)
    assert client.session.outcome == heartbeat_timeout(115.0)


def test_session_without_ping_interval_never_pings() -> None:
    """ping_interval=None: deadline() is inf and on_timer sends nothing."""
    client = pinging(ping_interval=None)
    assert client.session.deadline() == math.inf
    client.session.on_timer(1e9)
    assert client.output() == b""
    assert client.session.state is SessionState.OPEN


def test_session_closing_deadline_is_the_earlier_of_heartbeat_and_close() -> None:
    """While CLOSING, deadline() is the earlier of the next ping and close_deadline."""
    client = pinging(close_timeout=30.0)
    client.session.close(101.0)
    assert client.session.deadline() == 110.0
    client.session.on_timer(110.0)
    client.session.on_timer(115.0)  # the heartbeat still watches a closing link
    assert client.session.outcome == heartbeat_timeout(115.0)
