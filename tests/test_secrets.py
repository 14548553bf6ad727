"""The token never shows: in a log line, a repr, an event or an exception.

The canary scenario end to end, then the pieces: the redactor (every form of
a token), scrub-then-cut, the logging filter and the library's loggers.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import pkgutil
import re
import traceback
import urllib.parse
from collections.abc import Callable, Iterator

import pytest
import trio
import trio.testing
from helpers import manager_on
from hypothesis import assume, given, settings, strategies as st

import trio_ws_bus
from trio_ws_bus import Backoff, ConnectionGaveUp
from trio_ws_bus._logs import LOG_TEXT_LIMIT, LogLimiter, get_logger, short_text
from trio_ws_bus._secrets import (
    REDACTED,
    REDACTING_FILTER,
    RedactingFilter,
    Redactor,
    token_forms,
)
from trio_ws_bus.testing import make_alert, open_reference_server


def _library_loggers() -> list[str]:
    """Import every module of the library; name the loggers that now exist."""
    for module in pkgutil.walk_packages(trio_ws_bus.__path__, "trio_ws_bus."):
        if module.name != "trio_ws_bus.__main__":
            importlib.import_module(module.name)
    return sorted(
        name
        for name, logger in logging.root.manager.loggerDict.items()
        if name.split(".")[0] == "trio_ws_bus" and isinstance(logger, logging.Logger)
    )


LIBRARY_LOGGERS = _library_loggers()

CANARY = "canary+/=&#% tok-3f9a"
ENCODED = urllib.parse.quote(CANARY, safe="")


def exception_text(exc: BaseException) -> str:
    """str, repr and the formatted traceback, causes and contexts included."""
    return "".join(traceback.format_exception(exc)) + str(exc) + repr(exc)


async def test_canary_token_never_leaks(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A token with + / = & # % and a space stays out of logs, reprs and events."""
    caplog.set_level(logging.DEBUG)  # every logger, trio-websocket's included
    shown: list[str] = []
    with trio.fail_after(600):
        async with open_reference_server(listen=False) as server:
            server.accept_token(CANARY)
            async with manager_on(
                server, token=CANARY, ping_interval=1.0, backoff=Backoff(max_retries=2)
            ) as (manager, events):
                async with manager.alerts() as alerts:
                    await server.wait_subscribed("alerts")
                    assert server.tokens_seen == [CANARY]  # it did travel, encoded
                    await server.publish_alerts([make_alert(1)])
                    await alerts.receive()
                    await server.send_error(f"bad request for token {CANARY}")
                    await trio.sleep(3.5)  # a few heartbeats; close between pings
                    await server.close_connections(4001, f"token {CANARY} expired")
                    await server.wait_subscribed("alerts")
                    server.connections[0].freeze()
                    server.reject_next(
                        5,
                        status=401,
                        body=f"bad token {CANARY} {ENCODED}".encode(),
                        headers=[(b"Set-Cookie", f"t={ENCODED}".encode())],
                    )
                    await trio.sleep(60)  # heartbeat timeout, then 401 until giving up
                    with pytest.raises(ConnectionGaveUp) as gave_up:
                        await manager.wait_connected()
                    shown.append(exception_text(gave_up.value))
                shown.append(repr(manager))
                shown.append(repr(manager.statistics()))
                shown.extend(repr(event) for event in events)
    shown.append(caplog.text)
    text = "\n".join(shown)
    assert "Heartbeat timeout" in text  # the scenario really went everywhere
    assert "HTTP 401" in text
    assert CANARY not in text
    assert ENCODED not in text
    assert "Set-Cookie" not in text


# --- the redactor ----------------------------------------------------------------

MARKER = "tok-7Hq2xV"
#: Characters that every escaping treats differently, surrogates included.
TRICKY = "\\'\"%/+=&#* \n\t\x00\x7f\udcff\ud800é€😀"
tricky_text = st.text(
    alphabet=st.one_of(st.characters(exclude_categories=()), st.sampled_from(TRICKY))
)


def _quote(text: str, errors: str = "surrogatepass") -> str:
    return urllib.parse.quote(text, safe="", errors=errors)


#: How a text that quotes the token can show it: each escapes the whole text.
SHOWN_AS: dict[str, Callable[[str], str]] = {
    "raw": lambda text: text,
    "percent": _quote,
    "percent, lower-case hex": lambda text: re.sub(
        "%[0-9A-F]{2}", lambda m: m.group().lower(), _quote(text)
    ),
    "percent, surrogate as its byte": lambda text: _quote(text, "surrogateescape"),
    "json": json.dumps,
    "json, not ascii": lambda text: json.dumps(text, ensure_ascii=False),
    "repr": repr,
    "repr, single quotes": lambda text: repr('"' + text),
    "unicode_escape": lambda text: text.encode("unicode_escape").decode("ascii"),
}


@settings(max_examples=300)
@given(
    token=tricky_text.map(lambda text: MARKER + text),
    before=tricky_text,
    after=tricky_text,
    shown_as=st.sampled_from(sorted(SHOWN_AS)),
)
def test_no_form_of_the_token_survives(
    token: str, before: str, after: str, shown_as: str
) -> None:
    """Raw, percent-, JSON- and backslash-escaped: every form becomes ***."""
    try:
        text = SHOWN_AS[shown_as](before + token + after)
    except UnicodeEncodeError:  # surrogateescape takes U+DC80-DCFF only
        assume(False)
    redactor = Redactor()
    redactor.remember(token)
    scrubbed = redactor(text)
    assert REDACTED in scrubbed
    assert MARKER not in scrubbed
    assert not [form for form in token_forms(token) if form in scrubbed]


@given(tricky_text, tricky_text)
def test_a_redactor_accepts_any_str(token: str, text: str) -> None:
    """No token or text raises, lone surrogates included; no token changes nothing."""
    redactor = Redactor()
    redactor.remember(token)
    redactor(text)
    redactor.remember()
    assert redactor(text) is text


def test_the_longest_form_wins_and_overlaps_are_one_span() -> None:
    """A token inside a longer one, or overlapping forms, leave no piece behind."""
    redactor = Redactor()
    redactor.remember("tok-ab", "tok-abcd")
    assert redactor("[tok-abcd] [tok-ab]") == "[***] [***]"
    redactor.remember("tok-abc", "abc-x")
    assert redactor("tok-abc-x!") == "***!"
    assert redactor(None) is None


def test_remember_forgets_the_previous_token_and_close_forgets_all() -> None:
    """The redactor hides the current token only, and nothing once closed."""
    redactor = Redactor()
    redactor.remember("tok-old")
    redactor.remember("tok-new")
    assert Redactor.scrub_all("tok-old tok-new") == "tok-old ***"
    redactor.close()
    assert Redactor.scrub_all("tok-old tok-new") == "tok-old tok-new"


# --- scrub first, then cut ---------------------------------------------------------

LATE_TOKEN = "tok-" + "5f0c9e2ab4" * 4


@pytest.fixture
def live_token() -> Iterator[str]:
    redactor = Redactor()
    redactor.remember(LATE_TOKEN)
    yield LATE_TOKEN
    redactor.close()


def test_short_text_scrubs_before_it_cuts(live_token: str) -> None:
    """A token quoted near the cut is hidden whole, not shown up to the cut."""
    for start in range(LOG_TEXT_LIMIT - 30, LOG_TEXT_LIMIT, 5):
        shown = short_text("x" * start + live_token + "y" * 300)
        assert live_token[:6] not in shown
        assert "***" in shown


def test_log_limiter_scrubs_before_it_cuts(
    live_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The limiter's log line hides a token that starts just before the cut."""
    limiter = LogLimiter(logging.getLogger("test.limiter"), "server error")
    limiter.log(0.0, "e" * (LOG_TEXT_LIMIT - 5) + live_token)
    (record,) = caplog.records
    assert live_token[:5] not in record.getMessage()
    assert "server error: 'eeee" in record.getMessage()


# --- the logging filter ------------------------------------------------------------


class Shows:
    """An object whose str() shows the token (as a repr of a target might)."""

    def __str__(self) -> str:
        return f"<target {LATE_TOKEN}>"


def record(msg: object, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("test.filter")
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, msg, args, None, extra=extra
    )


def test_a_record_without_a_secret_passes_unchanged(live_token: str) -> None:
    """Same msg and args objects, kept, nothing blanked."""
    args = ("b", 2, Shows)
    plain = record("a %s %d %s", *args, attempt=3, topic="alerts")
    before = dict(vars(plain))
    assert RedactingFilter().filter(plain) is True
    assert plain.msg == "a %s %d %s"
    assert plain.args is args or plain.args == args
    assert vars(plain) == before


@pytest.mark.parametrize(
    ("msg", "args", "hidden_in"),
    [
        (f"bad token {LATE_TOKEN}", (), "the message"),
        ("bad token %s", (LATE_TOKEN,), "an arg"),
        ("bad token %.12s!", (LATE_TOKEN,), "an arg cut by the format"),
        ("bad token %r", (LATE_TOKEN,), "an arg shown by repr"),
        ("bad token %s", (Shows(),), "the str() of an arg"),
        ("bad token %(token)s", ({"token": LATE_TOKEN},), "a mapping arg"),
    ],
)
def test_the_filter_scrubs_message_and_args(
    live_token: str, msg: str, args: tuple[object, ...], hidden_in: str
) -> None:
    """The formatted message hides the token wherever it came from, keeps the rest."""
    leaky = record(msg, *args)
    assert RedactingFilter().filter(leaky) is True
    message = leaky.getMessage()
    assert live_token[:6] not in message, hidden_in
    assert message.startswith("bad token ")
    assert "***" in message


def test_the_filter_scrubs_extra_fields_and_tracebacks(live_token: str) -> None:
    """Str extras, the formatted exception and the stack are scrubbed too."""
    error = RuntimeError(f"server said {live_token}")
    exc_info = (RuntimeError, error, None)
    leaky = logging.getLogger("test.filter").makeRecord(
        "test.filter",
        logging.ERROR,
        __file__,
        1,
        "failed",
        (),
        exc_info,
        extra={"reason": f"token {live_token}", "code": 4001},
        sinfo=f"Stack (most recent call last):\n  {live_token}",
    )
    assert RedactingFilter().filter(leaky) is True
    line = logging.Formatter().format(leaky)
    assert live_token[:6] not in line + leaky.reason
    assert "RuntimeError: server said ***" in line
    assert leaky.reason == "token ***"
    assert leaky.code == 4001


@pytest.mark.parametrize("name", LIBRARY_LOGGERS)
def test_every_library_logger_scrubs(name: str) -> None:
    """Each trio_ws_bus logger, however deep, carries the redacting filter."""
    assert REDACTING_FILTER in logging.getLogger(name).filters


def test_library_loggers_come_from_get_logger_only() -> None:
    """get_logger refuses names outside the library and attaches the filter once."""
    with pytest.raises(ValueError, match="trio_ws_bus"):
        get_logger("trio_ws_bus_other")
    logger = get_logger("trio_ws_bus.test.deep")
    assert get_logger("trio_ws_bus.test.deep").filters == [REDACTING_FILTER]
    assert logger.propagate


def test_an_unconfigured_app_gets_no_library_warnings(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No root handler: Python's last-resort handler stays silent; records propagate."""
    last_resort = io.StringIO()
    monkeypatch.setattr(logging, "lastResort", logging.StreamHandler(last_resort))
    monkeypatch.setattr(logging.root, "handlers", [])
    get_logger("trio_ws_bus.test.quiet").warning("server error: quota")
    assert last_resort.getvalue() == ""
    monkeypatch.undo()
    get_logger("trio_ws_bus.test.quiet").warning("server error: quota")
    assert [r.getMessage() for r in caplog.records] == ["server error: quota"]
