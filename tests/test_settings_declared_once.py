"""The manager's options are declared once: in ``ManagerOptions``.

``open_websocket_manager``'s signature, its docs, the checks and the CLI's
flags are all held to that one class here, so an option cannot be
half-added: a field without its argument (or the reverse), an argument
without its doc, a CLI flag that reaches the manager without being listed,
or a listed flag that reaches nothing, fails a test below.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import math
import re
import shlex
import ssl
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given, strategies as st

from trio_ws_bus import (
    PROXY_FROM_ENV,
    ProxyURL,
    TcpTransport,
    _settings,
    open_websocket_manager,
)
from trio_ws_bus._cli import _commands
from trio_ws_bus._cli._commands import Stop, run_listen
from trio_ws_bus._cli._main import (
    LISTEN_MANAGER_OPTIONS,
    _listen_settings,
    build_parser,
)
from trio_ws_bus._cli._output import Output
from trio_ws_bus._settings import ManagerOptions, Settings, _entries

#: open_websocket_manager's arguments that are not options: collaborators
#: the manager is handed as they are, and an action.
FACTORY_ONLY = ("bus", "backoff", "retry_policy", "autoconnect")
FIELDS = attrs.fields(ManagerOptions)
NAMES = [field.name for field in FIELDS]
#: open_websocket_manager itself, not its async-context-manager wrapper.
FACTORY = inspect.unwrap(open_websocket_manager)
URL = "http://127.0.0.1:9"


def options(**given: Any) -> ManagerOptions:
    return ManagerOptions(**{"url": URL, "token": "t", **given})


# --- the factory and the class ---------------------------------------------------


def test_the_factory_takes_exactly_the_options_and_four_others() -> None:
    """Its arguments are the fields, in order, with the four others among them."""
    parameters = inspect.signature(open_websocket_manager).parameters
    assert [name for name in parameters if name not in FACTORY_ONLY] == NAMES
    assert set(FACTORY_ONLY) <= set(parameters)
    kinds = {name: p.kind for name, p in parameters.items()}
    assert kinds.pop("url") is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert set(kinds.values()) == {inspect.Parameter.KEYWORD_ONLY}


def test_each_argument_has_its_fields_default_and_annotation() -> None:
    """Same default (the same object), same annotation as written and resolved."""
    parameters = inspect.signature(FACTORY).parameters
    # TokenProvider holds a forward reference that only _settings can resolve.
    resolved = typing.get_type_hints(FACTORY, localns=vars(_settings))
    field_types = typing.get_type_hints(ManagerOptions, localns=vars(_settings))
    for field in FIELDS:
        parameter = parameters[field.name]
        if field.default is attrs.NOTHING:
            assert parameter.default is inspect.Parameter.empty, field.name
        else:
            assert parameter.default == field.default, field.name
            assert type(parameter.default) is type(field.default), field.name
        assert parameter.annotation == field.type, field.name
        assert resolved[field.name] == field_types[field.name], field.name


def test_the_factory_documents_every_argument_with_the_options_own_words() -> None:
    """Its Args: one entry per argument, in order; an option's is the field's doc."""
    _, args, _ = _entries(open_websocket_manager.__doc__ or "", "Args")
    _, attributes, _ = _entries(ManagerOptions.__doc__ or "", "Attributes")
    assert list(args) == list(inspect.signature(FACTORY).parameters)
    assert list(attributes) == NAMES
    for name in NAMES:
        assert args[name] == attributes[name]
    assert all(args[name] for name in FACTORY_ONLY)


#: A value other than the default for every option.
NON_DEFAULT: dict[str, Any] = {
    "url": "https://127.0.0.1:9/x",
    "token": "t",
    "path": "/p",
    "ping_interval": None,
    "ping_timeout": 3.0,
    "open_timeout": 4.0,
    "close_timeout": 6.0,
    "ssl_context": ssl.create_default_context(),
    "max_message_size": 77,
    "transport": TcpTransport(),
    "additional_headers": (("X-A", "1"),),
    "user_agent": None,
    "origin": "https://o.test",
    "subprotocols": ("a", "b"),
    "compression": None,
    "token_location": "header",
    "proxy": None,
    "trust_env": False,
    "subscriber_wait": 0.0,
}


async def test_every_argument_reaches_the_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each option given to the factory is the one the manager's options hold."""
    assert list(NON_DEFAULT) == NAMES
    for name in NAMES:
        if name not in ("url", "token"):
            assert NON_DEFAULT[name] != attrs.fields_dict(ManagerOptions)[name].default
    made: list[ManagerOptions] = []
    resolve = ManagerOptions.resolve

    def spy(self: ManagerOptions) -> Settings:
        made.append(self)
        return resolve(self)

    monkeypatch.setattr(ManagerOptions, "resolve", spy)
    async with open_websocket_manager(**NON_DEFAULT, autoconnect=False):
        pass
    (given,) = made
    assert attrs.asdict(given, recurse=False) == NON_DEFAULT


def test_settings_are_the_options_resolved() -> None:
    """Settings keep every option; transport, TLS and handshake are worked out."""
    given = options(
        url="https://127.0.0.1:9",
        additional_headers={"X-A": "1"},
        subprotocols=["a"],
        proxy=None,
        subscriber_wait=0,
    )
    settings = given.resolve()
    for name in NAMES:
        if name not in ("ssl_context", "transport"):
            assert getattr(settings, name) == getattr(given, name), name
    assert type(settings.subscriber_wait) is float
    assert isinstance(settings.ssl_context, ssl.SSLContext)
    assert isinstance(settings.transport, TcpTransport)
    assert settings.handshake.headers == (("X-A", "1"),)
    assert settings.handshake.subprotocols == ("a",)
    assert settings.handshake.user_agent == given.user_agent
    assert settings.handshake.compression == "deflate"
    assert options(transport=settings.transport).resolve().transport is (
        settings.transport
    )


def test_plain_text_beyond_loopback_warns_on_the_settings_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The clear-text warning comes from trio_ws_bus.settings, token not shown."""
    caplog.set_level(logging.WARNING, logger="trio_ws_bus")
    options(url="ws://backend.test", token="secret-tok", trust_env=False).resolve()
    options(url=URL, trust_env=False).resolve()
    (record,) = caplog.records
    assert record.name == "trio_ws_bus.settings"
    assert record.getMessage() == (
        "connecting to backend.test without TLS: the token travels in clear text"
    )
    assert "secret-tok" not in caplog.text


# --- the checks: today's exception types and messages ------------------------------

#: Arguments that can never work -> the exception and its exact message.
REFUSED: list[tuple[dict[str, Any], type[Exception], str]] = [
    (
        {"url": "ftp://x.test"},
        ValueError,
        "url scheme must be http, https, ws or wss, got 'ftp'",
    ),
    ({"url": b"http://x.test"}, TypeError, "url must be a str, got bytes"),
    ({"token": 5}, TypeError, "token must be a str or a callable returning one"),
    (
        {"ping_timeout": 0},
        ValueError,
        "ping_timeout must be a finite number > 0, got 0",
    ),
    (
        {"open_timeout": math.inf},
        ValueError,
        "open_timeout must be a finite number > 0, got inf",
    ),
    (
        {"close_timeout": "5"},
        ValueError,
        "close_timeout must be a finite number > 0, got '5'",
    ),
    (
        {"ping_interval": -1.0},
        ValueError,
        "ping_interval must be a finite number > 0, got -1.0",
    ),
    (
        {"ping_interval": math.nan},
        ValueError,
        "ping_interval must be a finite number > 0, got nan",
    ),
    (
        {"subscriber_wait": -1},
        ValueError,
        "subscriber_wait must be a number of seconds >= 0, got -1",
    ),
    (
        {"subscriber_wait": True},
        ValueError,
        "subscriber_wait must be a number of seconds >= 0, got True",
    ),
    (
        {"max_message_size": 0},
        ValueError,
        "max_message_size must be an int >= 1, got 0",
    ),
    (
        {"max_message_size": True},
        ValueError,
        "max_message_size must be an int >= 1, got True",
    ),
    (
        {"max_message_size": 1.5},
        ValueError,
        "max_message_size must be an int >= 1, got 1.5",
    ),
    (
        {"token_location": "cookie"},
        ValueError,
        "token_location must be 'query' or 'header', got 'cookie'",
    ),
    (
        {"additional_headers": {"X": 1}},
        TypeError,
        "additional_headers must map str to str",
    ),
    (
        {"additional_headers": {"Authorization": "x"}},
        ValueError,
        "additional_headers may not set 'Authorization'",
    ),
    (
        {"additional_headers": [("Sec-WebSocket-Key", "x")]},
        ValueError,
        "additional_headers may not set 'Sec-WebSocket-Key'",
    ),
    (
        {"compression": "gzip"},
        ValueError,
        "compression must be 'deflate' or None, got 'gzip'",
    ),
    (
        {"subprotocols": "chat"},
        TypeError,
        "subprotocols must be a sequence of str, not one str",
    ),
    (
        {"ssl_context": ssl.create_default_context()},
        ValueError,
        "ssl_context given for a ws:/http: URL; use wss:/https:",
    ),
    (
        {"proxy": "ftp://u:pw@p:21"},
        ValueError,
        "unsupported proxy scheme 'ftp' in 'ftp://***@p:21': "
        "use http://, socks4://, socks5://, socks5h://",
    ),
]


@pytest.mark.parametrize(("given", "error", "message"), REFUSED)
async def test_the_factory_refuses_what_can_never_work(
    given: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Each bad argument raises its exception with its message, before connecting."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        async with open_websocket_manager(
            **{"url": URL, "token": "t", **given}, autoconnect=False
        ):
            pass  # pragma: no cover


TIMEOUTS = ("ping_interval", "ping_timeout", "open_timeout", "close_timeout")
POSITIVE = st.floats(min_value=0, exclude_min=True, allow_infinity=False) | st.integers(
    min_value=1
)
NOT_A_NUMBER = st.none() | st.text() | st.binary() | st.lists(st.integers())


@given(name=st.sampled_from(TIMEOUTS), value=POSITIVE)
def test_any_finite_positive_duration_is_accepted(name: str, value: float) -> None:
    """Timeouts and the ping interval take any finite number > 0."""
    assert getattr(options(**{name: value}), name) == value


@given(
    name=st.sampled_from(TIMEOUTS),
    value=st.floats(max_value=0)
    | st.sampled_from([math.inf, -math.inf, math.nan])
    | st.integers(max_value=0)
    | NOT_A_NUMBER,
)
def test_any_other_duration_is_refused_by_name(name: str, value: object) -> None:
    """Zero, negative, infinite, NaN or no number: ValueError naming the option."""
    if name == "ping_interval" and value is None:
        assert options(ping_interval=None).ping_interval is None
        return
    with pytest.raises(ValueError, match=f"^{name} must be a finite number > 0, got "):
        options(**{name: value})


@given(value=st.floats(min_value=0) | st.integers(min_value=0))
def test_any_wait_from_zero_to_infinity_is_accepted(value: float) -> None:
    """subscriber_wait takes 0, any finite number > 0 and math.inf."""
    assert options(subscriber_wait=value).subscriber_wait == value


@given(
    value=st.floats(max_value=0, exclude_max=True)
    | st.just(math.nan)
    | st.integers(max_value=-1)
    | st.booleans()
    | NOT_A_NUMBER
)
def test_any_other_wait_is_refused_by_name(value: object) -> None:
    """A negative, NaN, bool or non-number subscriber_wait is a ValueError."""
    with pytest.raises(ValueError, match=r"^subscriber_wait must be a number of "):
        options(subscriber_wait=value)


@given(value=st.integers(max_value=0) | st.booleans() | st.floats() | NOT_A_NUMBER)
def test_max_message_size_is_an_int_of_at_least_one(value: object) -> None:
    """Anything but an int >= 1 is refused by name; every such int is taken."""
    with pytest.raises(ValueError, match=r"^max_message_size must be an int >= 1"):
        options(max_message_size=value)


@given(size=st.integers(min_value=1))
def test_any_int_of_at_least_one_is_a_max_message_size(size: int) -> None:
    """Every int >= 1 is a valid max_message_size."""
    assert options(max_message_size=size).max_message_size == size


@given(
    choice=st.sampled_from(
        [("compression", ("deflate", None)), ("token_location", ("query", "header"))]
    ),
    value=st.text() | st.none() | st.integers(),
)
def test_a_choice_outside_its_list_is_refused_by_name(
    choice: tuple[str, tuple[object, ...]], value: object
) -> None:
    """compression= and token_location= take their listed values, nothing else."""
    name, allowed = choice
    if value in allowed:
        assert getattr(options(**{name: value}), name) == value
    else:
        with pytest.raises(ValueError, match=f"^{name} must be "):
            options(**{name: value})


HEADER_NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
RESERVED = st.sampled_from(["authorization", "host", "sec-websocket-"]).flatmap(
    lambda name: st.tuples(
        st.lists(st.booleans(), min_size=len(name), max_size=len(name)),
        HEADER_NAME if name.endswith("-") else st.just(""),
    ).map(
        lambda case: (
            "".join(c.upper() if up else c for c, up in zip(name, case[0], strict=True))
            + case[1]
        )
    )
)


@given(headers=st.lists(st.tuples(HEADER_NAME, st.text())))
def test_headers_are_kept_as_pairs_in_order(headers: list[tuple[str, str]]) -> None:
    """Headers the library does not own pass through in order, as pairs."""
    headers = [
        (name, value)
        for name, value in headers
        if name.lower() not in ("authorization", "host")
        and not name.lower().startswith("sec-websocket-")
    ]
    given = options(additional_headers=headers)
    assert given.additional_headers == tuple(headers)
    assert given.resolve().handshake.headers == tuple(headers)


@given(name=RESERVED)
def test_headers_the_library_owns_are_refused_in_any_case(name: str) -> None:
    """Authorization, Host and Sec-WebSocket-*: a ValueError naming the header."""
    with pytest.raises(ValueError, match=f"^additional_headers may not set '{name}'$"):
        options(additional_headers={name: "x"})


# --- the command line --------------------------------------------------------------

#: Flags of each command that configure no manager option, and why.
NOT_MANAGER_OPTIONS = {
    "demo": {"--duration", "--devices", "--seed", "--json"},  # the demo's own
    "listen": {
        "--alerts",  # subscriptions
        "--device",
        "--json",  # output
        "--max-retries",  # backoff, one of FACTORY_ONLY
        "--duration",  # how long the command runs
    },
    "serve": {
        "--host",  # serve runs a server, not a manager
        "--port",
        "--devices",
        "--seed",
        "--duration",
        "--secret-env",
        "--secret-file",
        "--drop-every",
        "--token-file",
        "--print-token",
        "--json",
    },
}
ALWAYS = {"--help", "--verbose"}
COMMANDS = ("demo", "listen", "serve")


def flags(command: str) -> set[str]:
    """The long flags and positional arguments ``COMMAND --help`` shows."""
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = shown.getvalue()
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)) | set(
        re.findall(r"^  ([A-Z][A-Z_]*)(?: |$)", text, re.MULTILINE)
    )


def test_listen_lists_only_options_of_the_class() -> None:
    """Each option listen sets is a field; each listed flag exists."""
    assert set(LISTEN_MANAGER_OPTIONS) <= set(NAMES)
    listen = flags("listen")
    for name, named in LISTEN_MANAGER_OPTIONS.items():
        assert set(named) <= listen, name


def test_every_flag_is_a_listed_option_or_known_not_to_be_one() -> None:
    """A new flag must be added to LISTEN_MANAGER_OPTIONS or said to be no option."""
    listed = {flag for named in LISTEN_MANAGER_OPTIONS.values() for flag in named}
    assert set(NOT_MANAGER_OPTIONS) == set(COMMANDS)
    for name in COMMANDS:
        mine = listed if name == "listen" else set()
        unknown = flags(name) - ALWAYS - mine - NOT_MANAGER_OPTIONS[name]
        assert not unknown, f"{name}: {sorted(unknown)}"
        assert not mine & NOT_MANAGER_OPTIONS[name]


class Captured(Exception):
    """Stands in for the manager: what listen handed over, and no connection."""


async def listen_hands_over(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The arguments ``trio-ws-bus listen ARGV`` gives open_websocket_manager."""
    given: list[dict[str, Any]] = []

    def fake(*args: Any, **kwargs: Any) -> Any:
        given.append(inspect.signature(FACTORY).bind(*args, **kwargs).arguments)
        raise Captured

    monkeypatch.setattr(_commands, "open_websocket_manager", fake)
    settings = _listen_settings(build_parser().parse_args(["listen", *argv]))
    output = Output(io.StringIO(), io.StringIO(), json=True)
    with pytest.raises(Captured):
        await run_listen(settings, output, Stop())
    (arguments,) = given
    return arguments


def check_token(expected: str) -> Callable[[Any], Any]:
    async def check(provider: Any) -> bool:
        return bool(await provider() == expected)

    return check


#: For each flag LISTEN_MANAGER_OPTIONS lists: the argv that uses it and what
#: the option handed to the manager must then be (an async check for token).
BASE = [URL, "--token-env", "T"]
PRINT_TOKEN = shlex.join([sys.executable, "-c", "print('tok-c')"])
FLAG_EFFECTS: dict[str, tuple[list[str], Callable[[Any], Any]]] = {
    "URL": (["ws://127.0.0.1:8/w", "--token-env", "T"], "ws://127.0.0.1:8/w".__eq__),
    "--token-env": (BASE, check_token("tok-e")),
    "--token-file": ([URL, "--token-file", "TOKEN_FILE"], check_token("tok-f")),
    "--token-command": ([URL, "--token-command", PRINT_TOKEN], check_token("tok-c")),
    "--token-timeout": (
        [URL, "--token-command", PRINT_TOKEN, "--token-timeout", "30"],
        (35.0).__eq__,
    ),
    "--proxy": (
        [*BASE, "--proxy", "http://127.0.0.1:3128"],
        ProxyURL.parse("http://127.0.0.1:3128").__eq__,
    ),
    "--no-proxy": ([*BASE, "--no-proxy"], lambda proxy: proxy is None),
}


def test_each_listed_flag_has_its_effect_here() -> None:
    """FLAG_EFFECTS covers exactly the flags LISTEN_MANAGER_OPTIONS lists."""
    listed = {flag for named in LISTEN_MANAGER_OPTIONS.values() for flag in named}
    assert set(FLAG_EFFECTS) == listed


async def test_listen_hands_the_manager_exactly_the_listed_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No option reaches the manager unlisted; defaults where no flag is given."""
    monkeypatch.setenv("T", "tok-e")
    arguments = await listen_hands_over(BASE, monkeypatch)
    assert set(arguments) - set(FACTORY_ONLY) == set(LISTEN_MANAGER_OPTIONS)
    assert arguments["proxy"] is PROXY_FROM_ENV
    assert arguments["open_timeout"] == 10.0
    assert arguments["transport"] is None


@pytest.mark.parametrize("flag", list(FLAG_EFFECTS))
async def test_each_listed_flag_reaches_its_option(
    flag: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A listed flag changes the option it is listed under, as documented."""
    monkeypatch.setenv("T", "tok-e")
    token_file = tmp_path / "token"
    token_file.write_text("tok-f\n")
    argv, expected = FLAG_EFFECTS[flag]
    argv = [str(token_file) if arg == "TOKEN_FILE" else arg for arg in argv]
    (option,) = (
        name for name, named in LISTEN_MANAGER_OPTIONS.items() if flag in named
    )
    with trio.fail_after(30):
        value = (await listen_hands_over(argv, monkeypatch))[option]
        verdict = expected(value)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    assert verdict, (flag, option)
