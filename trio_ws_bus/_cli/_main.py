"""The command line of ``trio-ws-bus``: argparse, then :func:`main`.

:func:`main` parses the arguments, checks them (a usage error is one line on
stderr and exit status 2), runs the command with SIGINT and SIGTERM turned
into a clean stop, and maps the expected failures to exit statuses.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import shlex
import sys
import textwrap
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, NoReturn, TextIO

import trio

from .._proxy import PROXY_FROM_ENV, ProxyFromEnv, ProxyURL
from .._url import check_base_url
from .._util import open_nursery_body_as_itself
from .._version import __version__
from ._commands import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_STATUS_HELP,
    EXIT_USAGE,
    CommandFailed,
    DemoSettings,
    ListenSettings,
    ServeSettings,
    Stop,
    UsageError,
    run_demo,
    run_listen,
    run_serve,
)
from ._output import Output, plural, use_color
from ._tokens import (
    TOKEN_COMMAND_TIMEOUT,
    CommandToken,
    EnvToken,
    FileToken,
    TokenSource,
    TokenSourceError,
)

__all__ = ["LISTEN_MANAGER_OPTIONS", "build_parser", "main"]

#: The manager options (fields of ``ManagerOptions``) that ``listen`` sets,
#: and the flags they come from; every other option keeps its default.
#: ``transport`` is no flag: it is :func:`run_listen`'s argument, for tests.
#: tests/test_settings_declared_once.py holds this list to the parser and to
#: what ``listen`` hands the manager, so an option cannot be half-added.
LISTEN_MANAGER_OPTIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "url": ("URL",),
    "token": ("--token-env", "--token-file", "--token-command"),
    "open_timeout": ("--token-timeout",),
    "transport": (),
    "proxy": ("--proxy", "--no-proxy"),
}


#: How every usage error ends.
_SEE_HELP = "(see --help)"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} {_SEE_HELP}\n")


def _int_in(low: int, high: int | None, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(
                f"invalid {what} {text!r}: must be an integer {bound}"
            )
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: must be a number of seconds > 0"
        )
    return value


def _device_id(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a device id must not be empty")
    return text


_port = _int_in(0, 65535, "port")
_device_count = _int_in(1, 100, "device count")


def build_parser(prog: str = "trio-ws-bus") -> argparse.ArgumentParser:
    """Build the argument parser of the ``trio-ws-bus`` command."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=prog,
        description="Live alerts and device telemetry over a WebSocket, for Trio.",
        epilog=EXIT_STATUS_HELP["trio-ws-bus"],
        formatter_class=formatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    common = _Parser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log to stderr: -v info, -vv debug (default: errors only)",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, title="commands"
    )

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=textwrap.fill(description, 79),
            epilog=EXIT_STATUS_HELP[name],
            formatter_class=formatter,
            allow_abbrev=False,
        )

    _add_demo_arguments(
        command(
            "demo",
            "watch the library at work against a built-in server",
            "Start the reference server with a synthetic feed on 127.0.0.1, "
            "connect a manager over loopback and print what arrives. Part way "
            "through, the server drops the connection: watch the manager "
            "reconnect and replay its subscriptions. Needs the 'testing' extra "
            "(PyJWT).",
        )
    )
    _add_listen_arguments(
        command(
            "listen",
            "print alerts and telemetry from a backend",
            "Connect to a backend's /api/v2/ws endpoint and print what "
            "arrives. The token is read again before every connection "
            "attempt and never taken from the command line (it would show "
            "in ps and shell history).",
        )
    )
    _add_serve_arguments(
        command(
            "serve",
            "run the reference server with a synthetic feed",
            "Run the reference server with a synthetic feed on a loopback "
            "address, for 'listen' or any WebSocket client. The first line "
            "printed is the base URL; then the file that holds a token, "
            "signed with the server's secret: a new random one per start, or "
            "a stable one from --secret-env or --secret-file, so that tokens "
            "survive a restart. On Ctrl-C or SIGTERM every client gets a 1001 "
            "(going away) close. Needs the 'testing' extra (PyJWT).",
        )
    )
    return parser


def _add_feed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices",
        type=_device_count,
        default=3,
        metavar="N",
        help="simulated devices, 1 to 100 (default: 3)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed of the synthetic feed (default: 1)",
    )


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        type=_seconds,
        default=15.0,
        metavar="SECONDS",
        help="how long to run (default: 15)",
    )
    _add_feed_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        metavar="URL",
        help="backend base URL: http(s):// or ws(s)://; an empty path "
        "becomes /api/v2/ws",
    )
    tokens = parser.add_argument_group(
        "token (exactly one)"
    ).add_mutually_exclusive_group(required=True)
    tokens.add_argument(
        "--token-env", metavar="VAR", help="read the token from this variable"
    )
    tokens.add_argument(
        "--token-file",
        metavar="PATH",
        help="read the token from this file before every attempt",
    )
    tokens.add_argument(
        "--token-command",
        metavar="CMD",
        help="run this command (no shell) before every attempt; "
        "its output is the token",
    )
    parser.add_argument(
        "--token-timeout",
        type=_seconds,
        default=TOKEN_COMMAND_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit of --token-command (default: {TOKEN_COMMAND_TIMEOUT:g})",
    )
    parser.add_argument(
        "--alerts",
        action="store_true",
        help="subscribe to alerts (the default when no --device is given)",
    )
    parser.add_argument(
        "--device",
        dest="devices",
        action="append",
        type=_device_id,
        metavar="ID",
        help="subscribe to a device's telemetry (repeatable)",
    )
    proxies = parser.add_argument_group(
        "proxy (default: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY "
        "from the environment; never for loopback)"
    ).add_mutually_exclusive_group()
    proxies.add_argument(
        "--proxy",
        metavar="URL",
        help="tunnel through this proxy: http://, socks5://, socks5h:// or "
        "socks4://, with user:password@ if it needs them (never printed)",
    )
    proxies.add_argument(
        "--no-proxy",
        action="store_true",
        help="connect directly, whatever the environment says",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--max-retries",
        type=_int_in(0, None, "retry count"),
        default=20,
        metavar="N",
        help="reconnection attempts before giving up with status 1 (default: 20)",
    )
    parser.add_argument(
        "--duration",
        type=_seconds,
        metavar="SECONDS",
        help="stop after this long (default: run until Ctrl-C)",
    )


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        choices=("127.0.0.1", "::1", "localhost"),
        default="127.0.0.1",
        help="loopback address to listen on (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=8765,
        help="TCP port; 0 picks a free one (default: 8765)",
    )
    _add_feed_arguments(parser)
    parser.add_argument(
        "--duration",
        type=_seconds,
        metavar="SECONDS",
        help="stop after this long (default: run until Ctrl-C)",
    )
    secrets = parser.add_argument_group(
        "secret (default: a new random one per start)"
    ).add_mutually_exclusive_group()
    secrets.add_argument(
        "--secret-env", metavar="VAR", help="read the HS256 secret from this variable"
    )
    secrets.add_argument(
        "--secret-file", metavar="PATH", help="read the HS256 secret from this file"
    )
    parser.add_argument(
        "--drop-every",
        type=_seconds,
        metavar="SECONDS",
        help="drop every connection this often, to exercise reconnects",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="write the token to this file, readable by its owner only "
        "(default: a new private file, removed on exit)",
    )
    parser.add_argument(
        "--print-token",
        action="store_true",
        help="print the token itself too (it then shows in scrollback and logs)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON line when ready (url, endpoint, token_file, "
        "devices) and one summary line at the end",
    )


_URL_EXAMPLE = "a valid one looks like https://ops.example.com or ws://127.0.0.1:8765"

_TOKEN_HINT = (
    "the token is never taken from the command line (it would show in ps "
    "and shell history): use --token-env, --token-file or --token-command"
)


def _unrecognized(extras: Sequence[str]) -> str:
    """Describe unknown arguments without echoing values (one may be a token)."""
    options = sorted({arg.partition("=")[0] for arg in extras if arg.startswith("-")})
    others = sum(1 for arg in extras if not arg.startswith("-"))
    shown = ", ".join(options)
    if others:
        shown += (", " if shown else "") + plural(others, "other argument")
    return f"unrecognized arguments: {shown} (values not shown)"


def _token_argument(argv: Sequence[str]) -> bool:
    """Whether ``argv`` tries to pass the token itself (``--token X``)."""
    return any(arg == "--token" or arg.startswith("--token=") for arg in argv)


def _listen_settings(args: argparse.Namespace) -> ListenSettings:
    url: str = args.url
    try:
        check_base_url(url)
    except ValueError as exc:
        raise UsageError(f"bad URL: {exc}; {_URL_EXAMPLE}") from None
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    if "token" in query:
        raise UsageError(
            "the URL must not carry a token: use --token-env, --token-file "
            "or --token-command"
        )
    source: TokenSource
    if args.token_env is not None:
        source = EnvToken(args.token_env)
    elif args.token_file is not None:
        source = FileToken(args.token_file)
    else:
        try:
            argv = shlex.split(args.token_command)
        except ValueError as exc:
            raise UsageError(f"cannot parse --token-command: {exc}") from None
        if not argv:
            raise UsageError(
                "--token-command is empty: give a command that prints the "
                "token, e.g. --token-command 'cat /run/secrets/token'"
            )
        source = CommandToken(tuple(argv), timeout=args.token_timeout)
    devices = tuple(dict.fromkeys(args.devices or ()))
    proxy: ProxyURL | ProxyFromEnv | None = None if args.no_proxy else PROXY_FROM_ENV
    if args.proxy is not None:
        try:
            proxy = ProxyURL.parse(args.proxy)
        except ValueError as exc:
            raise UsageError(f"bad --proxy: {exc}") from None
    return ListenSettings(
        url=url,
        token_source=source,
        alerts=args.alerts or not devices,
        devices=devices,
        json=args.json,
        max_retries=args.max_retries,
        duration=args.duration,
        proxy=proxy,
    )


def _serve_secret(args: argparse.Namespace) -> str | None:
    """The secret ``serve`` signs with, from --secret-env or --secret-file."""
    if args.secret_env is not None:
        source: EnvToken | FileToken = EnvToken(args.secret_env)
    elif args.secret_file is not None:
        source = FileToken(args.secret_file, what="secret file")
    else:
        return None
    try:
        return source.read()
    except TokenSourceError as exc:
        raise UsageError(str(exc)) from None


def _require_testing_kit(command: str) -> None:
    """Fail with a one-line fix if the reference server cannot be imported."""
    try:
        importlib.import_module("trio_ws_bus.testing._feed")
    except ImportError:
        raise CommandFailed(
            f"'{command}' needs PyJWT: pip install 'trio-ws-bus[testing]'"
        ) from None


def _prepare(args: argparse.Namespace, out: Output) -> Callable[[Stop], Awaitable[int]]:
    """Check the arguments; return the command to run (raises UsageError)."""
    command: str = args.command
    if command == "listen":
        listen = _listen_settings(args)
        out.json = listen.json
        out.width = max([8, *map(len, listen.devices)])
        return lambda stop: run_listen(listen, out, stop)
    _require_testing_kit(command)
    if command == "demo":
        demo = DemoSettings(
            duration=args.duration, devices=args.devices, seed=args.seed, json=args.json
        )
        out.json = demo.json
        out.width = len(f"device-{demo.devices}")
        return lambda stop: run_demo(demo, out, stop)
    serve = ServeSettings(
        secret=_serve_secret(args),
        host=args.host,
        port=args.port,
        devices=args.devices,
        seed=args.seed,
        duration=args.duration,
        drop_every=args.drop_every,
        token_file=args.token_file,
        print_token=args.print_token,
        json=args.json,
    )
    return lambda stop: run_serve(serve, out, stop)


async def _run_until_signalled(job: Callable[[Stop], Awaitable[int]]) -> int:
    """Run ``job`` with SIGINT and SIGTERM turned into a :class:`Stop` request."""
    stop = Stop()
    async with open_nursery_body_as_itself() as nursery:
        await nursery.start(stop.watch_signals)
        status = await job(stop)
        nursery.cancel_scope.cancel()
    return status


def _configure_logging(verbosity: int, stream: TextIO) -> None:
    # The events the command prints already say what the library's warnings
    # say: by default only errors are logged. A no-op when logging is set up
    # already (an embedding program, pytest).
    level = (logging.ERROR, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    logging.basicConfig(
        level=level, stream=stream, format="%(name)s: %(levelname)s: %(message)s"
    )


def _silence_stdout() -> None:
    # The reader of our stdout went away (``| head``): stop writing quietly.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None, *, prog: str = "trio-ws-bus") -> int:
    """Run the ``trio-ws-bus`` command; return its exit status.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        prog: The command name shown in help and messages.
    """
    parser = build_parser(prog)
    if argv is None:
        argv = sys.argv[1:]
    try:
        if _token_argument(argv):
            parser.error(_TOKEN_HINT)
        args, extras = parser.parse_known_args(argv)
        if extras:
            parser.error(_unrecognized(extras))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    out = Output(
        sys.stdout,
        sys.stderr,
        prog=f"{prog} {args.command}",
        color=use_color(sys.stdout, os.environ),
    )
    _configure_logging(args.verbose, sys.stderr)
    try:
        job = _prepare(args, out)
        if out.json:
            out.color = False
        return trio.run(_run_until_signalled, job)
    except UsageError as exc:
        # As argparse's own errors (see _Parser.error): one line, same ending.
        out.note(f"error: {exc} {_SEE_HELP}")
        return EXIT_USAGE
    except CommandFailed as exc:
        out.note(f"error: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_FAILURE
