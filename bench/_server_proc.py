"""The out-of-process WebSocket server of the end-to-end and reconnect benchmarks.

The server runs in its own process so that the client's cost is measured alone:
on a 2-core machine the client gets a core to itself, and nothing the server
does runs on the client's event loop.

It is a minimal trio-websocket server on ``127.0.0.1`` (port 0, so the OS picks
a free port) started with ``python -m bench._server_proc``. It prints
``PORT <n>`` on its first line of output, then serves until its standard input
is closed (the parent exits) or ``--max-seconds`` have passed. What each
connection gets is chosen by the query string of the WebSocket resource, so
the same server serves every variant:

``mode=push&kind=telemetry|alerts&n=N``
    After the first message from the client (the raw clients send ``go``, the
    manager sends its ``subscribe`` request), write N identical pre-encoded
    frames in one ``send_all`` of the whole buffer, so the server never limits
    the rate: the frames are encoded once per ``(kind, N)``, before any
    client measures anything. Then wait for the client to close.

``mode=reconnect&run=ID&subs=S&cycles=C&settle=SECONDS``
    Acknowledge ``subscribe`` requests like the real backend. Once S of them
    arrived on a connection, print ``RECONNECT <ID> <seconds>`` (the time from
    the previous drop of this run to this moment) unless this is the run's
    first connection; then, for the first C connections of the run, wait
    ``settle`` seconds and drop the TCP connection without a close handshake
    (close code 1006 on the client side), leaving the listener open. Both
    timestamps are taken in this process, so no clock is compared across
    processes.

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
import trio_websocket
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from ._frames import FRAMES

HOST = "127.0.0.1"
#: The server never waits longer than this for a client to close (seconds).
_CLIENT_CLOSE_LIMIT = 120.0


@attrs.define
class _RunState:
    drops: int = 0
    dropped_at: float | None = None


@attrs.define
class _Server:
    frames: dict[tuple[str, int], bytes] = attrs.Factory(dict)
    runs: dict[str, _RunState] = attrs.Factory(dict)

    def encoded(self, kind: str, count: int) -> bytes:
        """``count`` text frames of ``kind``, encoded as a server sends them."""
        key = (kind, count)
        if key not in self.frames:
            frame = Connection(ConnectionType.SERVER).send(
                TextMessage(data=FRAMES[kind]())
            )
            self.frames[key] = frame * count
        return self.frames[key]


async def _serve_connection(server: _Server, stream: trio.SocketStream) -> None:
    try:
        async with trio.open_nursery() as nursery:
            request = await trio_websocket.wrap_server_stream(
                nursery, stream, message_queue_size=16, max_message_size=1 << 20
            )
            fields = parse_qs(urlsplit(request.path).query)
            query = {key: values[-1] for key, values in fields.items()}
            connection = await request.accept()
            try:
                with trio.move_on_after(_CLIENT_CLOSE_LIMIT):
                    if query.get("mode", "push") == "push":
                        await _push(server, connection, stream, query)
                    else:
                        await _reconnect(server, connection, stream, query)
                    # Let the client close; answer its close frame.
                    while True:
                        await connection.get_message()
            except trio_websocket.ConnectionClosed:
                pass
            nursery.cancel_scope.cancel()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    except Exception as exc:  # keep serving the next connections
        print(f"server: connection failed: {exc!r}", file=sys.stderr, flush=True)
    finally:
        await trio.aclose_forcefully(stream)


async def _push(
    server: _Server,
    connection: trio_websocket.WebSocketConnection,
    stream: trio.SocketStream,
    query: dict[str, str],
) -> None:
    kind, count = query.get("kind", "telemetry"), int(query.get("n", "1000"))
    encoded = server.encoded(kind, count)  # before the client's go: not timed
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


async def _main(max_seconds: float) -> None:
    server = _Server()

    async def handler(stream: trio.SocketStream) -> None:
        await _serve_connection(server, stream)

    async def stop_when_stdin_closes(scope: trio.CancelScope) -> None:
        await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)
        scope.cancel()

    with trio.move_on_after(max_seconds) as scope:
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, handler, 0, host=HOST)
            listeners = await nursery.start(serve)
            port = listeners[0].socket.getsockname()[1]
            print(f"PORT {port}", flush=True)
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
    """A running server process: its port, and its output lines once it ended."""

    port: int
    process: subprocess.Popen[str]
    output: list[str] = attrs.Factory(list)

    def url(self, scheme: str = "ws", **query: object) -> str:
        """The URL of the server with ``query`` as its query string."""
        text = "&".join(f"{key}={value}" for key, value in query.items())
        return f"{scheme}://{HOST}:{self.port}/bench?{text}"


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
        server = ServerProcess(int(first.split()[1]), process)
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
