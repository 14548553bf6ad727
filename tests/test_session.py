"""ClientSession, bytes in and bytes out: handshake, messages, every close path."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, strategies as st
from sansio import (
    ALERTS,
    OPENED,
    PLAIN,
    TELEMETRY,
    TOKEN,
    Client,
    Peer,
    client_frames,
    close_payload,
)

from trio_ws_bus import ALERTS_TOPIC, ERROR_TOPIC, INVALID_TOPIC, InvalidItem
from trio_ws_bus._failures import ConnectionFailure, FailureKind
from trio_ws_bus._protocol import Alert, SubscribeRequest
from trio_ws_bus._session import (
    ANSWER_LIMIT,
    HEAD_LIMIT,
    HandshakeOptions,
    SessionState,
)
from trio_ws_bus.testing import (
    Opcode,
    encode_frame,
    http_response,
    upgrade_response,
)


def text(message: str) -> bytes:
    """A server text frame."""
    return encode_frame(Opcode.TEXT, message.encode())


def message(opcode: int, payload: bytes, split_at: int | None = None) -> bytes:
    """One server message: a single frame, or two fragments cut at ``split_at``."""
    if split_at is None:
        return encode_frame(opcode, payload)
    return encode_frame(opcode, payload[:split_at], fin=False) + encode_frame(
        Opcode.CONTINUATION, payload[split_at:]
    )


def opened(**settings: object) -> Client:
    """A client whose handshake a hand-built 101 answer accepted."""
    client = Client(**settings)  # type: ignore[arg-type]
    client.accept()
    assert client.session.state is SessionState.OPEN
    return client


def answered(answer: bytes) -> ConnectionFailure | None:
    """The outcome of feeding ``answer`` to a fresh client's handshake."""
    client = Client()
    client.receive(answer, 0.0)
    assert client.output() == b""
    return client.session.outcome


def closed(code: int, reason: str | None, connected_for: float = 0.0) -> object:
    """The outcome of a connection that closed with ``code`` and ``reason``."""
    return ConnectionFailure(
        FailureKind.CLOSED, close_code=code, reason=reason, connected_for=connected_for
    )


def refused(why: str) -> ConnectionFailure:
    """The outcome of an answer that is not a valid upgrade."""
    return ConnectionFailure(
        FailureKind.PROTOCOL_ERROR, reason=f"Invalid handshake answer: {why}"
    )


def not_read(status: int, why: str) -> ConnectionFailure:
    """The outcome of a non-101 answer refused before it was read whole."""
    reason = f"Handshake rejected with HTTP {status} ({why}, not read)"
    return ConnectionFailure(FailureKind.REJECTED, status_code=status, reason=reason)


def closes_with(client: Client, code: int, reason: str) -> bool:
    """Whether the client wrote exactly one close frame, with ``code``."""
    return client_frames(client.output()) == [
        (Opcode.CLOSE, close_payload(code, reason))
    ]


# --- handshake: the request ------------------------------------------------------


def test_request_carries_path_and_query_token() -> None:
    """The request line asks for the URL's path with the token in its query."""
    peer = Peer()
    peer.exchange()
    assert peer.request is not None
    assert peer.request.path == f"/api/v2/ws?token={TOKEN}"
    assert peer.request.headers["Host"] == "127.0.0.1:8080"


def test_request_headers_from_options() -> None:
    """Bearer token, User-Agent, Origin and extra headers go out as given."""
    options = HandshakeOptions(
        headers=(("X-Tenant", "t1"), ("X-Trace", "abc")),
        user_agent="bus/1",
        origin="http://127.0.0.1",
        bearer_token="tok-123",
    )
    peer = Peer(Client(options, url="ws://127.0.0.1:8080/ws"))
    peer.exchange()
    assert peer.request is not None
    headers = peer.request.headers
    assert headers["Authorization"] == "Bearer tok-123"
    assert headers["User-Agent"] == "bus/1"
    assert headers["Origin"] == "http://127.0.0.1"
    assert (headers["X-Tenant"], headers["X-Trace"]) == ("t1", "abc")
    assert "tok-123" not in repr(options)


def test_request_without_options_sends_no_optional_header() -> None:
    """No Authorization, User-Agent, Origin, subprotocol or extension by default."""
    head = Client(PLAIN).request.lower()
    for name in (b"authorization", b"user-agent", b"origin", b"sec-websocket-p"):
        assert name not in head
    assert b"sec-websocket-extensions" not in head


def test_request_offers_subprotocols_and_deflate() -> None:
    """Subprotocols are offered in order; compression offers permessage-deflate."""
    options = HandshakeOptions(subprotocols=("v2", "v1"), compression="deflate")
    peer = Peer(Client(options))
    peer.exchange()
    assert peer.request is not None
    assert peer.request.headers["Sec-WebSocket-Protocol"] == "v2, v1"
    assert "permessage-deflate" in peer.request.headers["Sec-WebSocket-Extensions"]


# --- handshake: the answer -------------------------------------------------------


def test_open_reports_negotiated_subprotocol_and_compression() -> None:
    """The server's choices are on the session once it is open."""
    options = HandshakeOptions(subprotocols=("v2", "v1"), compression="deflate")
    peer = Peer(Client(options), subprotocols=["v1"])
    peer.exchange()
    session = peer.client.session
    assert session.state is SessionState.OPEN
    assert (session.subprotocol, session.compression) == ("v1", "deflate")


def test_open_without_offers_negotiates_nothing() -> None:
    """Nothing offered, nothing negotiated."""
    peer = Peer()
    peer.exchange()
    session = peer.client.session
    assert session.state is SessionState.OPEN
    assert (session.subprotocol, session.compression) == (None, None)


def test_on_open_runs_before_messages_in_the_same_bytes() -> None:
    """A message that came with the 101 answer is routed after on_open."""
    client = Client()
    client.accept(text(ALERTS), now=3.0)
    assert client.topics == [OPENED[0], ALERTS_TOPIC]


@pytest.mark.parametrize(
    ("answer", "retry_after"),
    [
        (http_response(401), None),
        (http_response(503, headers=[("Retry-After", "7")]), 7.0),
        (http_response(503, headers=[("Retry-After", " 12 ")]), 12.0),
        (http_response(429, headers=[("Retry-After", "Wed, 21 Oct 2015")]), None),
    ],
)
def test_non_101_answer_is_rejected_with_status(
    answer: bytes, retry_after: float | None
) -> None:
    """A non-101 status is REJECTED with it, and Retry-After seconds are kept."""
    status = int(answer.split()[1])
    assert answered(answer) == ConnectionFailure(
        FailureKind.REJECTED,
        status_code=status,
        reason=f"Handshake rejected with HTTP {status}",
        retry_after=retry_after,
    )


@pytest.mark.parametrize("answer", [b"SSH-2.0-OpenSSH_9.6", b"\x16\x03\x01", b"X"])
def test_answer_that_is_not_http_fails_at_once(answer: bytes) -> None:
    """Bytes that cannot start an HTTP answer fail without waiting for a line."""
    assert answered(answer) == refused("answer is not HTTP")


def test_a_prefix_of_http_waits_for_more() -> None:
    """b"HTTP/1." could still become an answer: no verdict yet."""
    assert answered(b"HTTP/1.") is None


def test_garbled_status_code_is_not_http() -> None:
    """A status line whose code is not three digits is not HTTP."""
    assert answered(b"HTTP/1.1 abc OK\r\n\r\n") == refused("answer is not HTTP")


def upgrade_without(client: Client, header: bytes) -> bytes:
    """A 101 answer to ``client`` with the line holding ``header`` removed."""
    lines = upgrade_response(client.request).split(b"\r\n")
    return b"\r\n".join(line for line in lines if not line.startswith(header))


@pytest.mark.parametrize("header", [b"Sec-WebSocket-Accept", b"Upgrade", b"Connection"])
def test_101_without_a_valid_upgrade_is_refused(header: bytes) -> None:
    """A 101 missing its accept key or upgrade headers is not a WebSocket upgrade."""
    client = Client()
    client.receive(upgrade_without(client, header), 0.0)
    assert client.session.outcome == refused("not a WebSocket upgrade")


def test_101_with_a_wrong_accept_key_is_refused() -> None:
    """An accept key computed from another request is not a WebSocket upgrade."""
    client, other = Client(), Client()
    client.receive(upgrade_without(other, b"\0"), 0.0)
    assert client.session.outcome == refused("not a WebSocket upgrade")


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 101 Switching"])
def test_eof_during_handshake_is_unreachable(sent: bytes) -> None:
    """EOF before the answer is complete: the server went away mid-handshake."""
    client = Client()
    client.receive(sent, 0.0)
    client.eof(1.0)
    assert client.session.outcome == ConnectionFailure(
        FailureKind.UNREACHABLE,
        reason="Connection closed during the opening handshake",
    )


def test_connection_lost_during_handshake_is_unreachable() -> None:
    """A broken transport before the answer is the same as EOF."""
    client = Client()
    client.session.connection_lost(1.0)
    assert client.session.outcome is not None
    assert client.session.outcome.kind is FailureKind.UNREACHABLE


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (b"101", refused(f"answer head longer than {HEAD_LIMIT} bytes")),
        (b"401", not_read(401, f"answer head longer than {HEAD_LIMIT} bytes")),
    ],
)
@pytest.mark.parametrize("header_size", [100, 10_000])
def test_answer_head_over_the_limit(
    status: bytes, expected: ConnectionFailure, header_size: int
) -> None:
    """A head over 16 KiB fails (status kept); many short or few long headers."""
    header = b"X-Pad: " + b"a" * header_size + b"\r\n"
    head = b"HTTP/1.1 " + status + b" X\r\n" + header * (HEAD_LIMIT // header_size + 1)
    assert answered(head) == expected


def test_long_non_101_answer_keeps_its_status() -> None:
    """A non-101 answer over 64 KiB is REJECTED with its status, unread."""
    answer = http_response(500, body=b"x" * ANSWER_LIMIT)
    assert answered(answer) == not_read(500, f"answer longer than {ANSWER_LIMIT} bytes")


def test_long_non_101_answer_fails_chunk_by_chunk() -> None:
    """The same, fed in 4 KiB chunks: it fails once 64 KiB have arrived."""
    client = Client()
    answer = http_response(500, body=b"x" * 2 * ANSWER_LIMIT)
    fed = 0
    while client.session.outcome is None and fed < len(answer):
        client.receive(answer[fed : fed + 4096], 0.0)
        fed += 4096
    assert fed == ANSWER_LIMIT + 4096
    assert client.session.outcome is not None
    assert client.session.outcome.status_code == 500


def test_huge_content_length_is_rejected_with_status() -> None:
    """A Content-Length of 10 GB is not waited for: REJECTED with the status."""
    answer = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 10000000000\r\n\r\n"
    outcome = answered(answer)
    assert outcome is not None
    assert (outcome.kind, outcome.status_code) == (FailureKind.REJECTED, 401)


@pytest.mark.parametrize("start", [b"HTTP/1.1 ", b"HTTP/1.1 200 "])
def test_endless_status_line_is_cut_off(start: bytes) -> None:
    """A status line that never ends fails within the head limit."""
    client = Client()
    for fed in range(HEAD_LIMIT // 1024 + 2):
        if client.session.outcome is not None:
            break
        client.receive(start if fed == 0 else b"9" * 1024, 0.0)
    assert client.session.outcome == (
        not_read(200, f"answer head longer than {HEAD_LIMIT} bytes")
        if b"200" in start
        else refused("answer is not HTTP")
    )


def test_close_while_connecting_finishes_at_once() -> None:
    """close() before the answer finishes as a clean 1000 without sending."""
    client = Client()
    client.session.close(0.0)
    assert client.session.outcome == ConnectionFailure(
        FailureKind.CLOSED, close_code=1000, reason="Client disconnect"
    )
    assert client.output() == b""


# --- messages --------------------------------------------------------------------


def test_text_messages_are_routed_and_counted() -> None:
    """Alerts, telemetry and errors are published; acks only counted."""
    client = opened()
    ack = json.dumps({"type": "subscribed", "channel": "alerts"})
    error = json.dumps({"type": "error", "message": "quota exceeded"})
    client.receive(text(ALERTS) + text(TELEMETRY) + text(ack) + text(error), 1.0)
    (_, alerts), (_, telemetry), (_, message) = client.routed[1:]
    assert client.topics[1:] == [ALERTS_TOPIC, "telemetry:d1", ERROR_TOPIC]
    assert isinstance(alerts, tuple)
    assert isinstance(alerts[0], Alert)
    assert alerts[0].alert_id == 1
    assert telemetry.metrics == {"t": 1.5}  # type: ignore[attr-defined]
    assert message == "quota exceeded"
    counters = client.counters
    assert (counters.messages_received, counters.acks) == (4, 1)
    assert (counters.alerts_messages, counters.telemetry_messages) == (1, 1)


def test_fragmented_text_is_reassembled_around_a_ping() -> None:
    """Fragments make one message; a ping between them is answered with a pong."""
    client = opened()
    data = ALERTS.encode()
    client.receive(
        encode_frame(Opcode.TEXT, data[:10], fin=False)
        + encode_frame(Opcode.PING, b"are you there")
        + encode_frame(Opcode.CONTINUATION, data[10:20], fin=False)
        + encode_frame(Opcode.CONTINUATION, data[20:]),
        1.0,
    )
    assert client.topics == [OPENED[0], ALERTS_TOPIC]
    assert client_frames(client.output()) == [(Opcode.PONG, b"are you there")]


def test_invalid_text_is_published_as_invalid() -> None:
    """Text that is not a server message lands on INVALID_TOPIC."""
    client = opened()
    client.receive(text('{"type": "nope"}'), 1.0)
    assert client.topics == [OPENED[0], INVALID_TOPIC]
    assert client.counters.invalid_messages == 1


@pytest.mark.parametrize("split_at", [None, 1])
def test_binary_message_is_rejected(split_at: int | None) -> None:
    """Binary messages (whole or fragmented) are refused onto INVALID_TOPIC."""
    client = opened()
    client.receive(message(Opcode.BINARY, b"\x00\x01", split_at), 1.0)
    assert client.routed[1:] == [
        (INVALID_TOPIC, InvalidItem("binary frame", "\x00\x01"))
    ]
    assert client.session.state is SessionState.OPEN


def test_compressed_messages_with_deflate() -> None:
    """With permessage-deflate negotiated, compressed messages are routed."""
    peer = Peer(Client(HandshakeOptions(compression="deflate")))
    peer.exchange()
    peer.wire.clear()
    peer.server.send_text(ALERTS.encode())
    peer.server.send_text(TELEMETRY.encode())
    peer.exchange()
    assert peer.client.topics == [OPENED[0], ALERTS_TOPIC, "telemetry:d1"]
    assert all(chunk[0] & 0x40 for chunk in peer.wire)  # RSV1: compressed


# --- every close path ------------------------------------------------------------


def test_server_close_is_answered_and_finishes_at_once() -> None:
    """The server's close frame: FINISHED at once, its code and reason kept."""
    client = opened()
    client.receive(encode_frame(Opcode.CLOSE, close_payload(1001, "going away")), 4.0)
    assert client.session.outcome == closed(1001, "going away", 4.0)
    assert closes_with(client, 1001, "going away")  # the close frame, echoed


def test_server_close_through_a_real_peer() -> None:
    """With websockets' server, the client answers and the server finishes too."""
    peer = Peer()
    peer.exchange()
    peer.server.send_close(4000, "maintenance")
    peer.exchange(2.0)
    assert peer.client.session.outcome == closed(4000, "maintenance", 2.0)
    assert peer.server.close_rcvd is not None
    assert peer.server.close_rcvd.code == 4000


def test_our_close_finishes_when_the_server_answers() -> None:
    """close(): 1000 "Client disconnect" goes out; FINISHED on the server's answer."""
    peer = Peer()
    peer.exchange()
    peer.client.session.close(1.0)
    assert peer.client.session.state is SessionState.CLOSING
    peer.exchange(2.0)
    assert peer.client.session.outcome == closed(1000, "Client disconnect", 2.0)
    assert peer.server.close_rcvd is not None
    assert (peer.server.close_rcvd.code, peer.server.close_rcvd.reason) == (
        1000,
        "Client disconnect",
    )


def test_our_close_gives_up_at_close_deadline() -> None:
    """A server that never answers our close frame: FINISHED at close_deadline."""
    client = opened(close_timeout=5.0)
    client.session.close(10.0)
    assert closes_with(client, 1000, "Client disconnect")
    assert client.session.close_deadline == client.session.deadline() == 15.0
    client.session.on_timer(14.999)
    assert client.session.state is SessionState.CLOSING
    client.session.on_timer(15.0)
    assert client.session.outcome == closed(1000, "Client disconnect", 15.0)


def test_eof_after_our_close_without_an_answer() -> None:
    """The server drops TCP after our close frame: a clean 1000 all the same."""
    client = opened()
    client.session.close(1.0)
    client.output()
    client.eof(2.0)
    assert client.session.outcome == closed(1000, "Client disconnect", 2.0)
    assert client.output() == b""


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(Opcode.TEXT, b"{}", rsv=4),  # RSV1 without an extension
        encode_frame(3, b""),  # a reserved opcode
        encode_frame(Opcode.TEXT, b"{}", mask=b"abcd"),  # a masked server frame
        encode_frame(Opcode.PING, b"x" * 126),  # control frame too long
        encode_frame(Opcode.CONTINUATION, b"{}"),  # nothing to continue
    ],
)
def test_protocol_violation_closes_with_1002(frame: bytes) -> None:
    """A frame breaking RFC 6455: 1002 sent, reason "Protocol error: ..."."""
    client = opened()
    client.receive(frame, 1.0)
    outcome = client.session.outcome
    assert outcome is not None
    assert outcome.close_code == 1002
    assert outcome.reason is not None
    assert outcome.reason.startswith("Protocol error: ")
    ((opcode, payload),) = client_frames(client.output())
    assert (opcode, payload[:2]) == (Opcode.CLOSE, close_payload(1002))


@pytest.mark.parametrize("split_at", [None, 3])
def test_invalid_utf8_text_closes_with_1007(split_at: int | None) -> None:
    """A text message that is not UTF-8: 1007 sent and reported, the item counted."""
    client = opened()
    client.receive(message(Opcode.TEXT, b'"ok\xff', split_at), 1.0)
    why = "invalid UTF-8 at byte 3"
    assert client.session.outcome == closed(1007, f"Protocol error: {why}", 1.0)
    assert closes_with(client, 1007, why)
    assert client.routed[1:] == [(INVALID_TOPIC, InvalidItem(why, '"ok\\xff'))]
    assert client.counters.invalid_messages == 1


def test_a_close_in_the_middle_of_a_fragmented_message_keeps_its_code() -> None:
    """The server's close cuts a fragmented message: its code and reason stand.

    The abandoned fragments are counted as one invalid message.
    """
    client = opened()
    client.receive(
        encode_frame(Opcode.TEXT, b'{"type": "al', fin=False)
        + encode_frame(Opcode.CLOSE, close_payload(1001, "going away")),
        2.0,
    )
    assert client.session.outcome == closed(1001, "going away", 2.0)
    assert client.routed[1:] == [
        (
            INVALID_TOPIC,
            InvalidItem(
                "fragmented message cut short by a close frame", '{"type": "al'
            ),
        )
    ]
    assert client.counters.invalid_messages == 1


@pytest.mark.parametrize("split_at", [None, 600])
def test_message_over_max_size_closes_with_1009(split_at: int | None) -> None:
    """A message over max_message_size: 1009 "Message too big", counted invalid."""
    client = opened(max_message_size=1024)
    client.receive(message(Opcode.TEXT, b"x" * 1025, split_at), 1.0)
    assert client.session.outcome == closed(1009, "Message too big", 1.0)
    assert client.routed[1:] == [
        (INVALID_TOPIC, InvalidItem("message larger than max_message_size", ""))
    ]
    assert client.counters.invalid_messages == 1
    ((opcode, payload),) = client_frames(client.output())
    assert (opcode, payload[:2]) == (Opcode.CLOSE, close_payload(1009))


def test_frame_header_announcing_2_62_bytes_closes_at_once() -> None:
    """A header announcing 2**62 bytes fails with 1009 before any payload."""
    client = opened()
    client.receive(b"\x81\x7f" + (2**62).to_bytes(8, "big"), 1.0)
    assert client.session.outcome == closed(1009, "Message too big", 1.0)


def test_eof_while_open_is_1006_and_sends_nothing() -> None:
    """The server drops TCP without a close frame: 1006, no close frame sent."""
    client = opened()
    client.eof(3.0)
    assert client.session.outcome == closed(1006, None, 3.0)
    assert client.output() == b""


def test_connection_lost_while_open_is_1006() -> None:
    """A broken transport while open: 1006."""
    client = opened()
    client.session.connection_lost(3.0)
    assert client.session.outcome == closed(1006, None, 3.0)


def test_peer_stalled_drops_without_sending() -> None:
    """A peer that stopped reading: 1006 "Write stalled", queued bytes dropped."""
    client = opened()
    client.ledger.pin(("alerts", None))
    client.flush()
    client.session.peer_stalled(3.0)
    assert client.session.outcome == closed(1006, "Write stalled", 3.0)
    assert client.output() == b""


def test_finished_is_final() -> None:
    """Nothing fed or asked after FINISHED changes the outcome or sends bytes."""
    client = opened()
    client.eof(1.0)
    outcome = client.session.outcome
    client.receive(text(ALERTS), 2.0)
    client.session.close(2.0)
    client.session.peer_stalled(2.0)
    client.session.on_timer(1e9)
    assert client.session.outcome is outcome
    assert client.topics == [OPENED[0]]
    assert client.output() == b""


# --- subscriptions ---------------------------------------------------------------


def sub(action: str, kind: str, device_id: str | None = None) -> str:
    """The JSON text of one subscription request."""
    return json.dumps(
        {"action": action, "type": kind}
        | ({} if device_id is None else {"device_id": device_id}),
        separators=(",", ":"),
    )


def test_the_ledger_is_replayed_after_open_then_only_changes_go_out() -> None:
    """After open the ledger is replayed in order; later only changes go out."""
    peer = Peer(Client(HandshakeOptions(compression="deflate")))
    ledger, client = peer.client.ledger, peer.client
    ledger.pin(("alerts", None))
    ledger.pin(("device", "d1"))
    client.flush()  # not open yet: nothing
    assert peer.client.output() == b""
    peer.exchange()
    client.flush()
    ledger.pin(("device", "d2"))
    ledger.unpin(("alerts", None))
    client.flush()
    client.flush()  # nothing pending: nothing sent
    peer.exchange()
    assert peer.texts == [
        sub("subscribe", "alerts"),
        sub("subscribe", "device", "d1"),
        sub("unsubscribe", "alerts"),
        sub("subscribe", "device", "d2"),
    ]
    assert ledger.pending() == []


def test_requests_after_finish_stay_pending_and_nothing_is_written() -> None:
    """Once FINISHED, pending requests stay pending and nothing is written."""
    client = opened()
    client.session.connection_lost(1.0)
    client.ledger.pin(("alerts", None))
    client.flush()
    assert client.output() == b""
    assert client.ledger.pending() == [SubscribeRequest.subscribe("alerts")]


# --- any split, any garbage ------------------------------------------------------

_SERVER_FRAMES = (
    text(ALERTS)
    + encode_frame(Opcode.TEXT, TELEMETRY.encode()[:7], fin=False)
    + encode_frame(Opcode.PING, b"p")
    + encode_frame(Opcode.CONTINUATION, TELEMETRY.encode()[7:])
    + encode_frame(Opcode.BINARY, b"\x01")
    + text(json.dumps({"type": "subscribed", "channel": "alerts"}))
    + encode_frame(Opcode.CLOSE, close_payload(1001, "bye"))
)


def fed_in_pieces(cuts: list[int]) -> Client:
    """A client fed a 101 answer and :data:`_SERVER_FRAMES`, cut at ``cuts``."""
    client = Client()
    data = upgrade_response(client.request) + _SERVER_FRAMES
    bounds = sorted({0, len(data), *(cut % len(data) for cut in cuts)})
    for start, end in itertools.pairwise(bounds):
        client.receive(data[start:end], 1.0)
    return client


@given(st.lists(st.integers(min_value=0), max_size=12))
def test_any_split_of_the_servers_bytes_acts_the_same(cuts: list[int]) -> None:
    """Chunked or whole, the server's bytes give the same routing, outcome, output."""
    whole, split = fed_in_pieces([]), fed_in_pieces(cuts)
    assert split.routed == whole.routed
    assert len(whole.routed) == 4  # opened, alerts, telemetry, binary; ack counted
    assert split.session.outcome == whole.session.outcome == closed(1001, "bye")
    assert client_frames(split.output()) == client_frames(whole.output())
    assert split.counters == whole.counters


@given(st.binary(max_size=300))
def test_garbage_after_101_never_raises(garbage: bytes) -> None:
    """Any bytes after a valid 101 end in a defined outcome or leave it open."""
    client = opened()
    client.receive(garbage, 1.0)
    session = client.session
    assert session.state in (SessionState.OPEN, SessionState.FINISHED)
    if session.state is SessionState.OPEN:
        client.eof(2.0)
    assert session.outcome is not None
    assert session.outcome.kind is FailureKind.CLOSED
    assert isinstance(session.outcome.close_code, int)
    client.output()
