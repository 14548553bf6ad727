"""The ``trio-ws-bus`` commands, each an async function: demo, listen, serve.

Each command gets its settings, an :class:`~._output.Output` and a
:class:`Stop`; Ctrl-C (SIGINT) and SIGTERM cancel the command's main scope,
so the manager closes its connection with 1000 and the command still prints
its summary before it returns 128 + the signal number.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import tempfile
import textwrap
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import trio

from .._backoff import Backoff
from .._bus import (
    ALERTS_TOPIC,
    CONNECTION_TOPIC,
    ERROR_TOPIC,
    INVALID_TOPIC,
    MessageBus,
    Subscription,
    telemetry_topic,
)
from .._errors import ConnectionGaveUp
from .._events import ConnectionStatus
from .._manager import WebSocketManager
from .._open import open_websocket_manager
from .._proxy import PROXY_FROM_ENV, ProxyFromEnv, ProxyURL
from .._retry import NOT_RETRIED
from .._secrets import Redactor
from .._settings import is_loopback
from .._transport import Transport
from .._url import redact_url
from .._util import open_nursery_body_as_itself
from ._output import EVENT_BUFFER, Output, Tally, plural, records_from
from ._tokens import CommandToken, TokenSource, TokenSourceError, token_provider

if TYPE_CHECKING:
    from ..testing._server import ReferenceServer

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandFailed",
    "DemoSettings",
    "ListenSettings",
    "ServeSettings",
    "Stop",
    "UsageError",
    "give_up_message",
    "run_demo",
    "run_listen",
    "run_serve",
    "wait_for_give_up",
]

# --- exit codes and errors ---------------------------------------------------

EXIT_OK: Final = 0
"""The command finished: its duration ended, or the demo ran to the end."""
EXIT_FAILURE: Final = 1
"""The manager gave up (retries used up, no token), or another runtime failure."""
EXIT_USAGE: Final = 2
"""Bad input: an unknown option, a bad URL, an unusable token source."""
EXIT_INTERRUPTED: Final = 130
"""Interrupted by Ctrl-C (SIGINT); SIGTERM gives 143 (128 + signal number)."""

_INTERRUPTED_HELP: Final = "interrupted by Ctrl-C (143 for SIGTERM)"


def _exit_statuses(ok: str, failure: str, usage: str, interrupted: str) -> str:
    codes = (EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED)
    texts = (ok, failure, usage, interrupted)
    return "exit status:\n" + "".join(
        textwrap.fill(
            text, 79, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7
        )
        + "\n"
        for code, text in zip(codes, texts, strict=True)
    )


EXIT_STATUS_HELP: Final = {
    "trio-ws-bus": _exit_statuses(
        "the command finished",
        "a runtime failure (each command's --help says which)",
        "usage error: a bad option or argument",
        _INTERRUPTED_HELP,
    ),
    "demo": _exit_statuses(
        "the demo ran to the end",
        "it never connected, or another runtime failure, such as the missing "
        "'testing' extra (PyJWT)",
        "usage error: a bad option",
        _INTERRUPTED_HELP + "; the summary is still printed",
    ),
    "listen": _exit_statuses(
        "--duration ran out after a connection was made",
        "gave up (retries used up, no token, a failure retrying cannot fix), "
        "or --duration ran out without ever connecting",
        "usage error: a bad option, URL or token source",
        _INTERRUPTED_HELP + "; the connection is closed with code 1000 and "
        "the summary is still printed",
    ),
    "serve": _exit_statuses(
        "--duration ran out; clients were closed with 1001 (going away)",
        "cannot listen (port in use, no IPv6), cannot write the token file, or "
        "the missing 'testing' extra (PyJWT)",
        "usage error: a bad option or secret source",
        _INTERRUPTED_HELP,
    ),
}
"""The ``exit status:`` section of each command's ``--help``, by command."""


class UsageError(Exception):
    """Bad input from the command line: exit status 2, one line on stderr."""


class CommandFailed(Exception):
    """A runtime failure that a one-line message explains: exit status 1."""


# --- showing what arrives -----------------------------------------------------


def _topics(*, alerts: bool, devices: Sequence[str]) -> list[str]:
    """The topics a command prints: what it subscribed to, and every notice."""
    topics: list[str] = [CONNECTION_TOPIC, ERROR_TOPIC, INVALID_TOPIC]
    if alerts:
        topics.append(ALERTS_TOPIC)
    topics.extend(telemetry_topic(device_id) for device_id in devices)
    return topics


@attrs.define(eq=False)
class _Printer:
    """Shows what the command's subscriptions receive, one subscription a topic.

    Each subscription knows its topic, so nothing is guessed from a payload's
    type. Each topic's lines keep their order; lines of different topics that
    arrive together may interleave in any order.
    """

    subscriptions: Sequence[tuple[str, Subscription[object]]]
    out: Output
    start: float
    tally: Tally = attrs.field(factory=Tally)

    def show(self, topic: str, payload: object) -> None:
        self.tally.add(topic, payload)
        for record in records_from(topic, payload, trio.current_time() - self.start):
            self.out.record(record)

    async def run(self) -> None:
        async with open_nursery_body_as_itself() as nursery:
            for topic, subscription in self.subscriptions:
                nursery.start_soon(self._show_each, topic, subscription)

    async def _show_each(self, topic: str, subscription: Subscription[object]) -> None:
        async for payload in subscription:  # no scheduler trip per buffered item
            self.show(topic, payload)

    def drain(self) -> None:
        """Show what is still buffered (after the manager closed)."""
        for topic, subscription in self.subscriptions:
            for _ in range(EVENT_BUFFER + 1):
                try:
                    payload = subscription.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                self.show(topic, payload)


@asynccontextmanager
async def _open_printer(
    bus: MessageBus, topics: Sequence[str], out: Output, start: float
) -> AsyncIterator[_Printer]:
    """Subscribe to each of ``topics`` on ``bus``; a printer for them all."""
    async with AsyncExitStack() as stack:
        subscriptions = [
            (
                topic,
                await stack.enter_async_context(
                    bus.subscribe(topic, max_buffer=EVENT_BUFFER)
                ),
            )
            for topic in topics
        ]
        yield _Printer(subscriptions, out, start)


def give_up_message(reason: str, errors: Sequence[str] = ()) -> str:
    """The one-line message of a manager that gave up.

    Args:
        reason: Why it gave up (:attr:`ConnectionGaveUp.reason`).
        errors: Recent error messages, oldest first; the last one that is not
            ``reason`` itself tells what kept failing, unless ``reason`` is a
            fatal failure's own description (then that error says the same).
    """
    if reason.endswith(NOT_RETRIED):
        return f"gave up: {reason}"
    cause = next((e for e in reversed(errors) if e != reason), None)
    if cause:
        return f"gave up: {reason} (last error: {cause})"
    return f"gave up: {reason}"


async def wait_for_give_up(manager: WebSocketManager) -> str:
    """Return the reason once ``manager`` gives up; wait forever otherwise."""
    async with manager.bus.subscribe(CONNECTION_TOPIC) as changes:
        while True:
            try:
                await manager.wait_connected()
            except ConnectionGaveUp as exc:
                return exc.reason
            # Connected: ask again only once the status has changed.
            async for event in changes:
                if event.status is not ConnectionStatus.CONNECTED:
                    break


def _subscribe_all(
    manager: WebSocketManager, *, alerts: bool, devices: Sequence[str]
) -> None:
    if alerts:
        manager.subscribe("alerts")
    for device_id in devices:
        manager.subscribe("device", device_id)


def _deadline(duration: float | None) -> trio.CancelScope:
    return trio.CancelScope() if duration is None else trio.move_on_after(duration)


# --- stopping on signals -----------------------------------------------------


@attrs.define(eq=False)
class Stop:
    """Ends a command early: a signal cancels the scopes handed out by :meth:`scope`.

    The command keeps running after its scope was cancelled, so it can close
    the connection and print its summary; :meth:`exit_code` then gives
    128 + the signal number.

    Attributes:
        signum: The first signal received, if any.
    """

    signum: int | None = None
    _scopes: list[trio.CancelScope] = attrs.field(factory=list)

    @contextmanager
    def scope(self) -> Iterator[trio.CancelScope]:
        """A cancel scope that a stop request cancels (at once if one came)."""
        with trio.CancelScope() as scope:
            if self.signum is not None:
                scope.cancel()
            self._scopes.append(scope)
            try:
                yield scope
            finally:
                self._scopes.remove(scope)

    def request(self, signum: int = signal.SIGINT) -> None:
        """Stop the command as if ``signum`` had been received."""
        if self.signum is None:
            self.signum = signum
        for scope in self._scopes:
            scope.cancel()

    def exit_code(self, code: int) -> int:
        """``code``, or 128 + the signal number if the command was stopped."""
        return code if self.signum is None else 128 + self.signum

    async def watch_signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Turn SIGINT and SIGTERM into :meth:`request` until cancelled."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                self.request(signum)


# --- demo ----------------------------------------------------------------------

#: The demo retries quickly, so the reconnect after the simulated drop shows.
DEMO_BACKOFF_BASE: Final = 0.5
#: The demo's server drops the connection at this fraction of the duration.
DEMO_DROP_AT: Final = 0.4
#: How long the demo waits for its subscriptions before starting the feed.
_SUBSCRIBE_WAIT: Final = 5.0
#: URL given to a manager on the in-memory transport (host and port unused).
_MEMORY_URL: Final = "http://127.0.0.1:8765"


@attrs.frozen
class DemoSettings:
    """Options of ``trio-ws-bus demo``.

    Attributes:
        duration: Seconds to run.
        devices: How many simulated devices.
        seed: Seed of the synthetic feed.
        json: JSON lines instead of text.
    """

    duration: float = 15.0
    devices: int = 3
    seed: int = 1
    json: bool = False


def _holds_everything(devices: Sequence[str]) -> Callable[[ReferenceServer], bool]:
    def check(server: ReferenceServer) -> bool:
        return any(
            conn.holds("alerts") and all(conn.holds("device", d) for d in devices)
            for conn in server.connections
        )

    return check


async def run_demo(
    settings: DemoSettings, out: Output, stop: Stop, *, in_memory: bool = False
) -> int:
    """Run the demo: reference server, synthetic feed, manager, printed events.

    Args:
        settings: The demo's options.
        out: Where to write.
        stop: Ends the demo early (Ctrl-C).
        in_memory: Use the reference server's in-memory transport instead of
            loopback sockets (for tests under a mock clock).

    Returns:
        The exit status.
    """
    from ..testing._feed import FeedModel, FeedSchedule, SyntheticFeed, device_ids
    from ..testing._server import open_reference_server

    devices = device_ids(settings.devices)
    start = trio.current_time()
    bus = MessageBus()
    async with (
        open_reference_server(listen=not in_memory) as server,
        _open_printer(
            bus, _topics(alerts=True, devices=devices), out, start
        ) as printer,
    ):
        url = _MEMORY_URL if in_memory else server.url
        out.text(
            f"trio-ws-bus demo: reference server at {url}, "
            f"{plural(len(devices), 'device')}, {settings.duration:g} s, "
            f"seed {settings.seed}; Ctrl-C to stop"
        )
        feed = SyntheticFeed(
            server,
            FeedModel(devices, seed=settings.seed),
            FeedSchedule(drop_at=settings.duration * DEMO_DROP_AT),
        )
        async with open_websocket_manager(
            url,
            token=server.issue_token,
            bus=bus,
            backoff=Backoff(base=DEMO_BACKOFF_BASE, max_delay=5.0),
            transport=server.transport if in_memory else None,
            proxy=None,  # its own server on loopback, whatever HTTP_PROXY says
        ) as manager:
            _subscribe_all(manager, alerts=True, devices=devices)
            # Cancel inside the manager's context, not around it: a manager
            # whose own context is cancelled cannot close with 1000.
            with stop.scope(), trio.move_on_after(settings.duration):
                async with open_nursery_body_as_itself() as nursery:
                    nursery.start_soon(printer.run)
                    with trio.move_on_after(_SUBSCRIBE_WAIT):
                        await server.wait_until(_holds_everything(devices))
                    nursery.start_soon(feed.run)
        printer.drain()
        statistics = manager.statistics()
        out.summary(
            printer.tally.summary(
                trio.current_time() - start,
                statistics,
                bus.statistics().dropped,
                simulated_drops=feed.drops,
            )
        )
    if stop.signum is None and not statistics.connections:
        # As listen --duration: a demo that never connected did not work.
        out.note(give_up_message(f"never connected in {settings.duration:g} s"))
        return EXIT_FAILURE
    return stop.exit_code(EXIT_OK)


# --- listen --------------------------------------------------------------------


@attrs.frozen
class ListenSettings:
    """Options of ``trio-ws-bus listen``.

    Attributes:
        url: The backend's base URL (no token in it).
        token_source: Where the token comes from.
        alerts: Subscribe to alerts.
        devices: Devices to subscribe to.
        json: JSON lines instead of text.
        max_retries: Retries before giving up.
        duration: Seconds to run; ``None``: until Ctrl-C or giving up.
        proxy: The proxy to tunnel through; ``None``: none, whatever the
            environment says (``--no-proxy``); :data:`PROXY_FROM_ENV`: the
            environment's (``HTTPS_PROXY``, ...), as the manager's default.
    """

    url: str
    token_source: TokenSource
    alerts: bool = False
    devices: tuple[str, ...] = ()
    json: bool = False
    max_retries: int = 20
    duration: float | None = None
    proxy: ProxyURL | ProxyFromEnv | None = PROXY_FROM_ENV


def _clear_text_warning(url: str) -> str | None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() in ("http", "ws") and not is_loopback(parts.hostname or ""):
        return (
            f"warning: {parts.hostname} is reached without TLS: the token "
            "travels in clear text (use https:// or wss://)"
        )
    return None


async def run_listen(
    settings: ListenSettings,
    out: Output,
    stop: Stop,
    *,
    transport: Transport | None = None,
) -> int:
    """Connect to a backend and print what arrives until stopped or giving up.

    Args:
        settings: The command's options.
        out: Where to write.
        stop: Ends the command early (Ctrl-C).
        transport: The manager's transport (tests pass an in-memory one).

    Returns:
        The exit status: 1 if the manager gave up.

    Raises:
        UsageError: If the token source fails before the first attempt.
    """
    source = settings.token_source
    with stop.scope():
        try:
            first = await source.fetch()
        except TokenSourceError as exc:
            raise UsageError(str(exc)) from None
    if stop.signum is not None:
        return stop.exit_code(EXIT_OK)
    with closing(Redactor()) as redactor:  # lives until the last line is out
        redactor.remember(first)
        return await _listen(settings, first, redactor, out, stop, transport)


async def _listen(
    settings: ListenSettings,
    first: str,
    redactor: Redactor,
    out: Output,
    stop: Stop,
    transport: Transport | None,
) -> int:
    source = settings.token_source
    warning = _clear_text_warning(settings.url)
    if warning:
        out.note(warning)
    start = trio.current_time()
    bus = MessageBus()
    gave_up: str | None = None
    timeout = source.timeout if isinstance(source, CommandToken) else 0.0
    via = ""
    if isinstance(settings.proxy, ProxyURL):
        via = f" through proxy {settings.proxy.address}"
    elif settings.proxy is None:
        via = " (no proxy)"
    topics = _topics(alerts=settings.alerts, devices=settings.devices)
    async with _open_printer(bus, topics, out, start) as printer:
        out.text(
            f"trio-ws-bus listen: {redact_url(settings.url)}{via}, token from "
            f"{source.describe()}; Ctrl-C to stop"
        )
        async with open_websocket_manager(
            settings.url,
            token=token_provider(source, first, out.note, redactor),
            bus=bus,
            backoff=Backoff(max_retries=settings.max_retries),
            open_timeout=max(10.0, timeout + 5.0),
            transport=transport,
            proxy=settings.proxy,
        ) as manager:
            _subscribe_all(manager, alerts=settings.alerts, devices=settings.devices)
            with stop.scope(), _deadline(settings.duration):
                async with open_nursery_body_as_itself() as nursery:
                    nursery.start_soon(printer.run)
                    gave_up = await wait_for_give_up(manager)
                    nursery.cancel_scope.cancel()
        printer.drain()
        statistics = manager.statistics()
        out.summary(
            printer.tally.summary(
                trio.current_time() - start, statistics, bus.statistics().dropped
            )
        )
    if gave_up is None and stop.signum is None and not statistics.connections:
        # --duration ran out: a health check must not pass without a connection.
        gave_up = f"never connected in {settings.duration:g} s"
    if gave_up is not None and stop.signum is None:
        out.note(give_up_message(gave_up, printer.tally.errors))
        return EXIT_FAILURE
    return stop.exit_code(EXIT_OK)


# --- serve ---------------------------------------------------------------------

#: Lifetime of the token ``serve`` issues, in seconds.
DEMO_TOKEN_TTL: Final = 24 * 3600.0
#: How long ``serve`` waits, on SIGINT or SIGTERM, for its clients to answer
#: the 1001 "going away" close frame before it drops the rest.
SERVE_CLOSE_TIMEOUT: Final = 3.0
#: The shortest HS256 secret RFC 7518 allows: the size of the hash, 32 bytes.
MIN_SECRET_BYTES: Final = 32


@attrs.frozen
class ServeSettings:
    """Options of ``trio-ws-bus serve``.

    Attributes:
        host: Loopback host to listen on.
        port: TCP port; 0 lets the system choose.
        devices: How many simulated devices.
        seed: Seed of the synthetic feed.
        duration: Seconds to run; ``None``: until Ctrl-C.
        drop_every: Drop every connection this often (seconds), if set.
        secret: The HS256 secret tokens are signed with; ``None``: a new
            random one (tokens of an earlier run are then refused).
        token_file: Where to write the token (mode 0600); ``None``: a new
            file in a private temporary directory, removed on exit.
        print_token: Print the token itself, not only where it is.
        json: Print one JSON line when ready and one summary line, nothing else.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    devices: int = 3
    seed: int = 1
    duration: float | None = None
    drop_every: float | None = None
    secret: str | None = attrs.field(default=None, repr=False)
    token_file: Path | None = None
    print_token: bool = False
    json: bool = False


@contextmanager
def _token_file(path: Path | None) -> Iterator[Path]:
    """The file to write the token to: ``path``, or a private temporary one."""
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="trio-ws-bus-serve-") as directory:
        yield Path(directory) / "token"


def _write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(text + "\n")


def _client_counts(server: ReferenceServer) -> tuple[int, int, int]:
    return len(server.connections), server.handshakes, server.rejections


async def _report_clients(server: ReferenceServer, out: Output, start: float) -> None:
    def changed_since(seen: tuple[int, int, int]) -> Callable[[ReferenceServer], bool]:
        return lambda s: _client_counts(s) != seen

    seen = _client_counts(server)
    while True:
        await server.wait_until(changed_since(seen))
        seen = _client_counts(server)
        open_, handshakes, rejected = seen
        out.line(
            f"{trio.current_time() - start:8.2f}  clients    {open_} open, "
            f"{plural(handshakes, 'handshake')}, {rejected} rejected"
        )


async def run_serve(settings: ServeSettings, out: Output, stop: Stop) -> int:
    """Run the reference server with the synthetic feed until stopped.

    The first line printed is the server's base URL; then where the token is
    (a file only its owner can read: no token in the output, so none in a
    terminal's scrollback or a CI log, unless ``print_token``), a ``listen``
    command line and the endpoint. With ``json``, one line holds all that.
    On a stop request (SIGINT, SIGTERM) every client gets a 1001 "going
    away" close, within :data:`SERVE_CLOSE_TIMEOUT` seconds.

    Returns:
        The exit status.

    Raises:
        CommandFailed: If the server cannot listen (port in use, no IPv6) or
            the token file cannot be written.
    """
    from ..testing._feed import FeedModel, FeedSchedule, SyntheticFeed, device_ids
    from ..testing._server import open_reference_server

    devices = device_ids(settings.devices)
    start = trio.current_time()
    if settings.secret is not None:
        size = len(settings.secret.encode("utf-8", "surrogatepass"))
        if size < MIN_SECRET_BYTES:
            out.note(
                f"warning: the HS256 secret is {plural(size, 'byte')}; RFC 7518 "
                f"asks for at least {MIN_SECRET_BYTES} (make one with: python -c "
                "'import secrets; print(secrets.token_urlsafe(32))')"
            )
    async with AsyncExitStack() as stack:
        try:
            server = await stack.enter_async_context(
                open_reference_server(
                    host=settings.host, port=settings.port, secret=settings.secret
                )
            )
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise CommandFailed(
                f"cannot listen on {settings.host} port {settings.port}: {reason}"
            ) from None
        token = server.issue_token("demo", expires_in=DEMO_TOKEN_TTL)
        token_path = stack.enter_context(_token_file(settings.token_file))
        try:
            _write_secret_file(token_path, token)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise CommandFailed(
                f"cannot write the token file {token_path}: {reason}"
            ) from None
        _print_ready(
            settings,
            out,
            server.url,
            server.websocket_url(),
            devices,
            token_path,
            token,
        )
        feed = SyntheticFeed(
            server,
            FeedModel(devices, seed=settings.seed),
            FeedSchedule(drop_every=settings.drop_every),
        )
        with stop.scope(), _deadline(settings.duration):
            async with open_nursery_body_as_itself() as nursery:
                nursery.start_soon(feed.run)
                if not settings.json:
                    nursery.start_soon(_report_clients, server, out, start)
        # Stopped or done: tell every client (1001), without waiting forever.
        with trio.move_on_after(SERVE_CLOSE_TIMEOUT):
            await server.close_connections(1001, "going away")
        summary = {
            "connections": len(server.all_connections),
            "rejected": server.rejections,
            "readings": feed.readings_published,
            "alerts": feed.alerts_published,
        }
        elapsed = trio.current_time() - start
        if settings.json:
            t = round(elapsed, 3)
            out.line(json.dumps({"t": t, "kind": "summary"} | summary))
        else:
            out.line(
                f"--- served {plural(summary['connections'], 'connection')} "
                f"({plural(summary['rejected'], 'rejected handshake')}), "
                f"{plural(summary['readings'], 'reading')}, "
                f"{plural(summary['alerts'], 'alert')} in {elapsed:.1f} s ---"
            )
    return stop.exit_code(EXIT_OK)


def _print_ready(
    settings: ServeSettings,
    out: Output,
    url: str,
    endpoint: str,
    devices: Sequence[str],
    token_path: Path,
    token: str,
) -> None:
    """Say where the server is and where its token is (the token only if asked)."""
    listen = shlex.join(
        [
            *("trio-ws-bus", "listen", url, "--token-file", str(token_path)),
            *("--alerts", "--device", devices[0]),
        ]
    )
    if settings.json:
        ready: dict[str, object] = {
            "kind": "ready",
            "url": url,
            "endpoint": endpoint,
            "token_file": str(token_path),
            "devices": list(devices),
        }
        if settings.print_token:
            ready["token"] = token
        out.line(json.dumps(ready))
        return
    out.line(url)
    valid = f"HS256, valid {DEMO_TOKEN_TTL / 3600:g} h"
    out.line(f"token     in {token_path} ({valid})")
    if settings.print_token:
        out.line(f"token     {token}")
    out.line(f"devices   {' '.join(devices)}")
    out.line(f"listen    {listen}")
    out.line(f"endpoint  {endpoint}  (token: ?token= or Authorization: Bearer)")
    out.line("Ctrl-C to stop")
