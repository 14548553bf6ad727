"""The out-of-process WebSocket server of the end-to-end and reconnect benchmarks.

The server runs in its own process so that the client's cost is measured alone:
on a 2-core machine the client gets a core to itself, and nothing the server
does runs on the client's event loop.

It is a minimal trio-websocket server on ``127.0.0.1`` (port 0, so the OS picks
a free port) started with ``python -m bench._server_proc``. It prints
``PORT <n> DEFLATE <m>`` on its first line of output, then serves until its
standard input is closed (the parent exits) or ``--max-seconds`` have passed.
What each connection gets is chosen by the query string of the WebSocket
resource, so the same server serves every variant:

``mode=push&kind=telemetry|alerts&n=N[&devices=D]``
    After the first message from the client (the raw clients send ``go``, the
    manager sends its ``subscribe`` request), write N pre-encoded frames in one
    ``send_all`` of the whole buffer, so the server never limits the rate: the
    frames are encoded once per ``(kind, N, D)``, before any client measures
    anything. Telemetry cycles through D device ids (default 1). Then wait for
    the client to close.

``mode=paced&rate=R&n=N``
    After the client's first message, write N telemetry messages of
    ``DEVICE_ID`` at a steady R per second, each stamped with its write time
    on ``time.monotonic()`` in the metric ``"sent"`` (CLOCK_MONOTONIC is
    system-wide on Linux, so the client reads the same clock; the message stays
    valid telemetry for trio_ws_bus). Message i is due ``i / R`` seconds after
    the start; on every wake-up the server writes all that are due in one
    ``send_all`` (a small group: Trio's sleeps wake about once a millisecond at
    the finest, so about R / 1000 messages) and sleeps until the next is due,
    so a late wake-up never lowers the rate. A message's stamp is the moment
    its group was written, so the latency the client measures excludes the
    server's own lateness.

``mode=reconnect&run=ID&subs=S&cycles=C&settle=SECONDS``
    Acknowledge ``subscribe`` requests like the real backend. Once S of them
    arrived on a connection, print ``RECONNECT <ID> <seconds>`` (the time from
    the previous drop of this run to this moment) unless this is the run's
    first connection; then, for the first C connections of the run, wait
    ``settle`` seconds and drop the TCP connection without a close handshake
    (close code 1006 on the client side), leaving the listener open. Both
    timestamps are taken in this process, so no clock is compared across
    processes.

Port ``m`` serves ``mode=push`` alone, with permessage-deflate: trio-websocket's
server cannot negotiate extensions, so this one is websockets' sans-I/O
``ServerProtocol`` (default deflate settings) on a Trio stream. It compresses
the N frames before the client's first message, once per ``(kind, N, D)`` and
negotiated parameters: a fresh compressor gives the same bytes on every
connection, so the server never limits the rate here either.

The parent side is :func:`server_process`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
import trio_websocket
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from ._frames import DEVICE_ID, stream as frame_stream, telemetry_frame

HOST = "127.0.0.1"
#: The server never waits longer than this for a client to close (seconds).
_CLIENT_CLOSE_LIMIT = 120.0


@attrs.define
class _RunState:
    drops: int = 0
    dropped_at: float | None = None


@attrs.define
class _Server:
    frames: dict[tuple[str, ...], bytes] = attrs.Factory(dict)
    runs: dict[str, _RunState] = attrs.Factory(dict)

    def encoded(self, query: dict[str, str]) -> bytes:
        """The push's text frames, encoded as a server without extensions sends them."""
        key = _push_key(query)
        if key not in self.frames:
            encode = Connection(ConnectionType.SERVER).send
            self.frames[key] = b"".join(
                encode(TextMessage(data=text)) for text in _push_stream(key)
            )
        return self.frames[key]


def _push_key(query: dict[str, str]) -> tuple[str, str, str]:
    return (
        query.get("kind", "telemetry"),
        query.get("n", "1000"),
        query.get("devices", "1"),
    )


def _push_stream(key: tuple[str, ...]) -> list[str]:
    kind, count, devices = key[:3]
    return frame_stream(kind, int(count), int(devices))


def _paced_template() -> tuple[bytes, bytes]:
    """The telemetry frame's JSON before and after the value of ``"sent"``."""
    reading = json.loads(telemetry_frame(DEVICE_ID))
    reading["data"]["metrics"] = {"sent": "@", **reading["data"]["metrics"]}
    before, after = json.dumps(reading, separators=(",", ":")).split('"@"')
    return before.encode(), after.encode()


_PACED_BEFORE, _PACED_AFTER = _paced_template()


def paced_frame(sent: float) -> bytes:
    """One server text frame (unmasked, final) of telemetry stamped ``sent``."""
    payload = b"".join((_PACED_BEFORE, repr(sent).encode(), _PACED_AFTER))
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


async def _paced(
    connection: trio_websocket.WebSocketConnection,
    stream: trio.SocketStream,
    query: dict[str, str],
) -> None:
    rate, count = float(query["rate"]), int(query["n"])
    await connection.get_message()
    start = trio.current_time()
    sent = 0
    while sent < count:
        due = min(count, int((trio.current_time() - start) * rate) + 1)
        if due > sent:
            # Straight to the socket, as in _push: nothing else writes now.
            await stream.send_all(paced_frame(time.monotonic()) * (due - sent))
            sent = due
        await trio.sleep_until(start + sent / rate)


@asynccontextmanager
async def _serving(stream: trio.SocketStream) -> AsyncIterator[None]:
    """Close ``stream`` at the end; a failed connection must not stop the server."""
    try:
        yield
    except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError, OSError):
        pass
    except Exception as exc:  # keep serving the next connections
        print(f"server: connection failed: {exc!r}", file=sys.stderr, flush=True)
    finally:
        await trio.aclose_forcefully(stream)


async def _serve_connection(server: _Server, stream: trio.SocketStream) -> None:
    async with _serving(stream), trio.open_nursery() as nursery:
        request = await trio_websocket.wrap_server_stream(
            nursery, stream, message_queue_size=16, max_message_size=1 << 20
        )
        fields = parse_qs(urlsplit(request.path).query)
        query = {key: values[-1] for key, values in fields.items()}
        connection = await request.accept()
        try:
            with trio.move_on_after(_CLIENT_CLOSE_LIMIT):
                mode = query.get("mode", "push")
                if mode == "push":
                    await _push(server, connection, stream, query)
                elif mode == "paced":
                    await _paced(connection, stream, query)
                else:
                    await _reconnect(server, connection, stream, query)
                # Let the client close; answer its close frame.
                while True:
                    await connection.get_message()
        except trio_websocket.ConnectionClosed:
            pass
        nursery.cancel_scope.cancel()


async def _push(
    server: _Server,
    connection: trio_websocket.WebSocketConnection,
    stream: trio.SocketStream,
    query: dict[str, str],
) -> None:
    encoded = server.encoded(query)  # before the client's go: not timed
    await connection.get_message()
    # Straight to the socket, bypassing trio-websocket's per-message send path:
    # the frames are already encoded and nothing else writes while they go.
    await stream.send_all(encoded)


async def _reconnect(
    server: _Server,
    connection: trio_websocket.WebSocketConnection,
    stream: trio.SocketStream,
    query: dict[str, str],
) -> None:
    run = query["run"]
    subs, cycles = int(query["subs"]), int(query["cycles"])
    settle = float(query.get("settle", "0.05"))
    state = server.runs.setdefault(run, _RunState())
    seen = 0
    while seen < subs:
        request = json.loads(await connection.get_message())
        if request.get("action") != "subscribe":
            continue
        seen += 1
        if seen == subs:
            replayed_at = time.perf_counter()
            if state.dropped_at is not None:
                took = replayed_at - state.dropped_at
                print(f"RECONNECT {run} {took:.9f}", flush=True)
                state.dropped_at = None
        ack = {"type": "subscribed", "channel": request.get("type")}
        if request.get("device_id") is not None:
            ack["device_id"] = request["device_id"]
        await connection.send_message(json.dumps(ack))
    if state.drops < cycles:
        await trio.sleep(settle)
        state.drops += 1
        state.dropped_at = time.perf_counter()
        await trio.aclose_forcefully(stream)


async def _serve_deflate(server: _Server, stream: trio.SocketStream) -> None:
    protocol = ServerProtocol(
        extensions=[ServerPerMessageDeflateFactory()], max_size=1 << 20
    )
    async with _serving(stream):
        with trio.move_on_after(_CLIENT_CLOSE_LIMIT):
            request = (await _next_events(protocol, stream))[0]
            response = protocol.accept(request)  # type: ignore[arg-type]
            protocol.send_response(response)
            await stream.send_all(b"".join(protocol.data_to_send()))
            fields = parse_qs(urlsplit(request.path).query)  # type: ignore[attr-defined]
            query = {key: values[-1] for key, values in fields.items()}
            key = (
                *_push_key(query),
                response.headers.get("Sec-WebSocket-Extensions", ""),
            )
            if key not in server.frames:  # compressed through this connection
                for text in _push_stream(key):
                    protocol.send_text(text.encode())
                server.frames[key] = b"".join(protocol.data_to_send())
            while not any(
                isinstance(event, Frame) and event.opcode is Opcode.TEXT
                for event in await _next_events(protocol, stream)
            ):
                pass
            await stream.send_all(server.frames[key])
            # Let the client close; answer its close frame.
            while not protocol.close_expected():
                await _next_events(protocol, stream)
                await stream.send_all(b"".join(protocol.data_to_send()))


async def _next_events(
    protocol: ServerProtocol, stream: trio.SocketStream
) -> list[object]:
    """Read until ``protocol`` has events; :exc:`EOFError` if the client left."""
    while True:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError
        protocol.receive_data(data)
        events: list[object] = list(protocol.events_received())
        if events:
            return events


async def _main(max_seconds: float) -> None:
    server = _Server()

    async def handler(stream: trio.SocketStream) -> None:
        await _serve_connection(server, stream)

    async def deflate_handler(stream: trio.SocketStream) -> None:
        await _serve_deflate(server, stream)

    async def stop_when_stdin_closes(scope: trio.CancelScope) -> None:
        await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)
        scope.cancel()

    with trio.move_on_after(max_seconds) as scope:
        async with trio.open_nursery() as nursery:
            ports = []
            for serve in (handler, deflate_handler):
                start = functools.partial(trio.serve_tcp, serve, 0, host=HOST)
                listeners = await nursery.start(start)
                ports.append(listeners[0].socket.getsockname()[1])
            print(f"PORT {ports[0]} DEFLATE {ports[1]}", flush=True)
            nursery.start_soon(stop_when_stdin_closes, scope)


def main(argv: list[str] | None = None) -> None:
    """Serve until stdin closes or ``--max-seconds`` pass."""
    parser = argparse.ArgumentParser(prog="python -m bench._server_proc")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args(argv)
    trio.run(_main, args.max_seconds)


# ---------------------------------------------------------------------------
# The parent's side


@attrs.define
class ServerProcess:
    """A running server process: its ports, and its output lines once it ended."""

    port: int
    deflate_port: int
    process: subprocess.Popen[str]
    output: list[str] = attrs.Factory(list)

    def url(self, scheme: str = "ws", *, deflate: bool = False, **query: object) -> str:
        """The URL of the server with ``query`` as its query string.

        ``deflate`` picks the listener that negotiates permessage-deflate.
        """
        port = self.deflate_port if deflate else self.port
        text = "&".join(f"{key}={value}" for key, value in query.items())
        return f"{scheme}://{HOST}:{port}/bench?{text}"


@contextmanager
def server_process(max_seconds: float = 900.0) -> Iterator[ServerProcess]:
    """Start the server process; stop it (bounded) on exit and collect its output."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._server_proc", "--max-seconds", str(max_seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        first = process.stdout.readline()  # the server prints it once listening
        if not first.startswith("PORT "):
            raise RuntimeError(f"the benchmark server did not start: {first!r}")
        words = first.split()
        server = ServerProcess(int(words[1]), int(words[3]), process)
        yield server
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    server.output.extend(process.stdout.read().splitlines())
    process.stdout.close()


if __name__ == "__main__":
    main()
