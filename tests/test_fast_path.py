"""The session's fast path equals websockets, and the session returns events.

The fast path takes complete plain text frames straight from the read buffer;
everything else goes to websockets' ``ClientProtocol``. The property below
drives random server byte streams (valid messages, compressed or not,
fragments with control frames between them, invalid UTF-8, frames breaking
the protocol, lengths over the limit, garbage, a close anywhere, an EOF or
not), cut at random points, through two sessions, one with the fast path and
one without, and asserts the same events, the same bytes out and the same
outcome.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sansio import ALERTS, PLAIN, TELEMETRY, Client, client_frames, close_payload
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from trio_ws_bus._session import (
    Finished,
    HandshakeOptions,
    MessageRejected,
    Opened,
    SessionState,
)
from trio_ws_bus.testing import Opcode, encode_frame

# --- what the server sends --------------------------------------------------------

_texts = st.one_of(st.sampled_from([ALERTS, TELEMETRY, "{}", ""]), st.text(max_size=80))
_pieces = st.one_of(
    st.tuples(st.just("text"), _texts),
    st.tuples(st.just("binary"), st.binary(max_size=40)),
    st.tuples(
        st.just("fragments"),
        st.booleans(),  # text or binary
        st.lists(_texts, min_size=2, max_size=4),
        st.sampled_from([None, "ping", "pong"]),  # a control frame between
    ),
    st.tuples(st.just("ping"), st.binary(max_size=20)),
    st.tuples(st.just("pong"), st.binary(max_size=20)),
    st.tuples(st.just("raw text"), st.binary(max_size=120)),  # UTF-8 or not
    st.tuples(
        st.just("raw frame"),
        st.integers(0, 15),  # any opcode
        st.booleans(),  # fin
        st.integers(0, 7),  # RSV bits
        st.booleans(),  # masked
        st.binary(max_size=140),
    ),
    st.tuples(
        st.just("big header"), st.sampled_from([126, 127]), st.integers(0, 2**64 - 1)
    ),
    st.tuples(st.just("garbage"), st.binary(min_size=1, max_size=12)),
    st.tuples(
        st.just("close"),
        st.sampled_from([1000, 1001, 4000, 1005]),
        st.text(max_size=10),
    ),
)


def _server(request: bytes, deflate: bool) -> tuple[ServerProtocol, bytes]:
    server = ServerProtocol(
        extensions=[ServerPerMessageDeflateFactory()] if deflate else None
    )
    server.receive_data(request)
    (event,) = server.events_received()
    assert isinstance(event, Request)
    server.send_response(server.accept(event))
    return server, b"".join(server.data_to_send())


def _piece_bytes(server: ServerProtocol, piece: tuple[Any, ...]) -> bytes:
    """The bytes of one piece, through websockets' server while it is open."""
    kind, *args = piece
    open_ = server.state is State.OPEN
    if kind == "text" and open_:
        server.send_text(args[0].encode())
    elif kind == "binary" and open_:
        server.send_binary(args[0])
    elif kind == "fragments" and open_:
        is_text, parts, control = args
        datas = [part.encode() for part in parts]
        (server.send_text if is_text else server.send_binary)(datas[0], fin=False)
        for index, data in enumerate(datas[1:], start=2):
            if control == "ping":
                server.send_ping(b"between")
            elif control == "pong":
                server.send_pong(b"between")
            server.send_continuation(data, fin=index == len(datas))
    elif kind == "ping" and open_:
        server.send_ping(args[0])
    elif kind == "pong" and open_:
        server.send_pong(args[0])
    elif kind == "close" and open_:
        code, reason = args
        if code == 1005:
            server.send_close()
        else:
            server.send_close(code, reason)
    elif kind == "raw text":
        return encode_frame(Opcode.TEXT, args[0])
    elif kind == "raw frame":
        opcode, fin, rsv, masked, payload = args
        return encode_frame(
            opcode, payload, fin=fin, rsv=rsv, mask=b"abcd" if masked else None
        )
    elif kind == "big header":
        marker, length = args
        size = 2 if marker == 126 else 8
        return bytes([0x81, marker]) + (length % 256**size).to_bytes(size, "big")
    elif kind == "garbage":
        return bytes(args[0])
    return b"".join(server.data_to_send())


def run_session(
    fast_path: bool,
    deflate: bool,
    pieces: list[tuple[Any, ...]],
    cuts: list[int],
    eof: bool,
    max_message_size: int,
) -> tuple[list[object], list[tuple[int, bytes]], object, list[str]]:
    """Feed one server stream, cut at ``cuts``; return what the session did."""
    options = HandshakeOptions(compression="deflate" if deflate else None)
    client = Client(options, fast_path=fast_path, max_message_size=max_message_size)
    server, answer = _server(client.request, deflate)
    data = answer + b"".join(_piece_bytes(server, piece) for piece in pieces)
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    for start, end in itertools.pairwise(bounds):
        client.receive(data[start:end], 1.0)
    if eof:
        client.eof(2.0)
    out = client_frames(client.output())
    return client.events, out, client.session.outcome, client.topics


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    deflate=st.booleans(),
    pieces=st.lists(_pieces, max_size=12),
    cuts=st.lists(st.integers(min_value=0), max_size=10),
    eof=st.booleans(),
    max_message_size=st.sampled_from([1 << 20, 100]),
)
def test_the_fast_path_acts_exactly_as_websockets(
    deflate: bool,
    pieces: list[tuple[Any, ...]],
    cuts: list[int],
    eof: bool,
    max_message_size: int,
) -> None:
    """Any server stream, cut anywhere: same events, bytes out and outcome."""
    fast = run_session(True, deflate, pieces, cuts, eof, max_message_size)
    slow = run_session(False, deflate, pieces, cuts, eof, max_message_size)
    assert fast == slow


# --- the fast path is really taken ----------------------------------------------


@pytest.fixture
def fed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the chunks handed to websockets' ClientProtocol, in order."""
    sizes: list[int] = []
    receive_data = ClientProtocol.receive_data

    def counting(self: ClientProtocol, data: bytes | bytearray) -> None:
        sizes.append(len(data))
        receive_data(self, data)

    monkeypatch.setattr(ClientProtocol, "receive_data", counting)
    return sizes


def test_plain_text_frames_never_reach_websockets(fed: list[int]) -> None:
    """After the handshake, plain text frames are parsed without websockets."""
    client = Client()
    client.accept()
    handshake = sum(fed)
    stream = b"".join(encode_frame(Opcode.TEXT, TELEMETRY.encode()) for _ in range(50))
    for start in range(0, len(stream), 1000):  # frames cut across reads
        client.receive(stream[start : start + 1000], 1.0)
    assert client.topics.count("telemetry:d1") == 50
    assert sum(fed) == handshake
    client.receive(encode_frame(Opcode.PING, b"p"), 1.0)  # a control frame: websockets'
    assert sum(fed) == handshake + 3
    assert client_frames(client.output()) == [(Opcode.PONG, b"p")]


def test_the_wire_log_at_debug_turns_the_fast_path_off(fed: list[int]) -> None:
    """With the wire logger at DEBUG every frame goes through websockets (logged)."""
    wire = logging.getLogger("tests.fast_path.wire")
    wire.setLevel(logging.DEBUG)
    client = Client(logger=wire)
    client.accept()
    before = sum(fed)
    frame = encode_frame(Opcode.TEXT, TELEMETRY.encode())
    client.receive(frame, 1.0)
    assert sum(fed) == before + len(frame)
    assert client.topics[-1] == "telemetry:d1"


# --- the session returns events --------------------------------------------------


def test_events_in_order_opened_messages_finished() -> None:
    """One read holding the 101, messages and a close: every event, in order."""
    client = Client(PLAIN)
    from trio_ws_bus.testing import upgrade_response

    events = client.receive(
        upgrade_response(client.request)
        + encode_frame(Opcode.TEXT, b"hello")
        + encode_frame(Opcode.BINARY, b"\x01\x02")
        + encode_frame(Opcode.CLOSE, close_payload(1001, "bye")),
        3.0,
    )
    assert events[:3] == [Opened(None, None), "hello", b"\x01\x02"]
    (finished,) = events[3:]
    assert isinstance(finished, Finished)
    assert (finished.outcome.close_code, finished.outcome.reason) == (1001, "bye")
    assert client.session.state is SessionState.FINISHED
    assert client.session.receive_data(b"more", 4.0) == []


def test_a_message_over_the_limit_is_a_rejected_event() -> None:
    """A frame over max_message_size: MessageRejected, then Finished with 1009."""
    client = Client(PLAIN, max_message_size=10)
    client.accept()
    events = client.receive(encode_frame(Opcode.TEXT, b"x" * 11), 1.0)
    assert events[0] == MessageRejected("message larger than max_message_size")
    assert isinstance(events[1], Finished)
    assert events[1].outcome.close_code == 1009


def test_timers_and_commands_return_finished_too() -> None:
    """close() before the answer, a lost transport: each returns Finished."""
    client = Client(PLAIN)
    (event,) = client.session.close(0.0)
    assert isinstance(event, Finished)
    assert event.outcome.close_code == 1000
    other = Client(PLAIN)
    other.accept()
    (lost,) = other.session.connection_lost(5.0)
    assert isinstance(lost, Finished)
    assert lost.outcome.close_code == 1006
    assert other.session.connection_lost(6.0) == []


def test_send_requests_needs_an_open_session() -> None:
    """Subscription requests are refused before the handshake, not queued."""
    client = Client(PLAIN)
    with pytest.raises(RuntimeError, match="connecting"):
        client.session.send_requests([])
