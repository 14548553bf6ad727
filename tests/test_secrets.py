"""The token never shows: in a log line, a repr, an event or an exception.

The canary scenario end to end, then the pieces: the redactor (every form of
a token), scrub-then-cut, the logging filter and the library's loggers.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import pkgutil
import re
import traceback
import urllib.parse
import uuid
from collections.abc import Callable, Iterator

import pytest
import trio
import trio.testing
from helpers import manager_on
from hypothesis import assume, given, settings, strategies as st

import trio_ws_bus
from trio_ws_bus import Backoff, ConnectionGaveUp
from trio_ws_bus._logs import (
    LOG_BURST,
    LOG_SUMMARY_INTERVAL,
    LOG_TEXT_LIMIT,
    LogLimiter,
    get_logger,
    short_text,
)
from trio_ws_bus._secrets import (
    REDACTED,
    REDACTING_FILTER,
    RedactingFilter,
    Redactor,
    install_log_filter,
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
#: Hypothesis rarely draws a lone surrogate on its own: this always holds one.
with_surrogate = st.builds(
    lambda head, surrogate, tail: head + surrogate + tail,
    tricky_text,
    st.sampled_from(["\ud800", "\udbff", "\udc80", "\udcff", "\udfff"]),
    tricky_text,
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


@given(st.one_of(tricky_text, with_surrogate), st.one_of(tricky_text, with_surrogate))
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


#: Tokens whose forms all differ: each escaping has a character of its own to show.
DISTINCT_FORMS = ["tok'\x00é", 'tok"é', "tok/ +€", "tok-\ud800", "tok-\udcff"]


def _shown(token: str) -> Iterator[tuple[str, str]]:
    """Each way the text "a-<token>-z" can be shown, as (name, text)."""
    for shown_as, show in sorted(SHOWN_AS.items()):
        with contextlib.suppress(UnicodeEncodeError):  # surrogateescape: DC80-DCFF
            yield shown_as, show("a-" + token + "-z")


@pytest.mark.parametrize(
    ("token", "text"),
    [
        pytest.param(token, text, id=f"{token!a}-{shown_as}")
        for token in DISTINCT_FORMS
        for shown_as, text in _shown(token)
    ],
)
def test_each_form_becomes_exactly_one_mark(token: str, text: str) -> None:
    """Every form is hidden whole: nothing of it is left on either side of ***."""
    redactor = Redactor()
    redactor.remember(token)
    assert redactor(text) == re.sub("a-.*-z", "a-***-z", text, flags=re.DOTALL)


def test_an_empty_token_hides_nothing() -> None:
    """A provider that returns "" does not turn every text into ***."""
    redactor = Redactor()
    redactor.remember("")
    assert redactor("a text") == "a text"


def test_a_redactor_without_tokens_changes_nothing() -> None:
    """New, or closed: text passes as is, and scrub_all still works."""
    fresh, closed = Redactor(), Redactor()
    closed.remember("tok-gone")
    closed.close()
    assert fresh("tok-gone") == closed("tok-gone") == "tok-gone"
    assert Redactor.scrub_all("tok-gone") == "tok-gone"


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


def test_short_text_cuts_only_what_is_too_long() -> None:
    """A repr of exactly the limit is shown whole; a longer text is cut and counted."""
    fits = "a" * (LOG_TEXT_LIMIT - 2)
    assert short_text(fits) == repr(fits)
    long = "b" * (LOG_TEXT_LIMIT + 100)
    assert short_text(long) == repr(long)[:LOG_TEXT_LIMIT] + f"... ({len(long)} chars)"


def test_log_limiter_logs_a_burst_then_summaries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A burst per connection, then a count at most every interval and at the end."""
    caplog.set_level(logging.WARNING, "test.limiter")
    limiter = LogLimiter(logging.getLogger("test.limiter"), "bad frame")
    last = 1000.0 + LOG_BURST - 1
    for now in range(LOG_BURST):
        limiter.log(1000.0 + now, "x")
    for now in (last + 1, last + 2, last + LOG_SUMMARY_INTERVAL, last + 61):
        limiter.log(now, "x")
    limiter.end_connection(last + 62)
    for now in range(LOG_BURST):
        limiter.log(2000.0 + now, "y")
    limiter.end_connection(2100.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "test.limiter"]
    assert lines == [
        *["bad frame: 'x'"] * LOG_BURST,
        "bad frame: further ones on this connection are only counted "
        f"(a summary at most every {LOG_SUMMARY_INTERVAL:g} s)",
        "bad frame: 3 more not logged one by one",
        "bad frame: 1 more not logged one by one",
        *["bad frame: 'y'"] * LOG_BURST,
        "bad frame: further ones on this connection are only counted "
        f"(a summary at most every {LOG_SUMMARY_INTERVAL:g} s)",
    ]


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


@pytest.mark.parametrize(
    "msg",
    [
        Shows(),
        f"bad token {LATE_TOKEN} at 100%",
        ValueError(f"bad token {LATE_TOKEN}: 100%"),
    ],
    ids=["object", "percent", "exception with a percent"],
)
def test_the_filter_scrubs_a_message_without_args(live_token: str, msg: object) -> None:
    """A message that is an object (an exception) or has a literal % is scrubbed."""
    leaky = record(msg)
    assert RedactingFilter().filter(leaky) is True
    assert live_token[:6] not in leaky.getMessage()
    assert "***" in leaky.getMessage()


def test_the_filter_scrubs_an_already_formatted_traceback(live_token: str) -> None:
    """A traceback that is only text (as a QueueHandler passes it) is scrubbed."""
    queued = record("failed")
    queued.exc_text = f"RuntimeError: server said {live_token}"
    RedactingFilter().filter(queued)
    assert queued.exc_text == "RuntimeError: server said ***"


def test_the_filter_leaves_a_clean_traceback_to_the_formatter(live_token: str) -> None:
    """Without a secret, the handler's own formatException still formats it."""

    class Custom(logging.Formatter):
        def formatException(self, ei: object) -> str:
            return "custom traceback"

    error = RuntimeError("no secret here")
    clean = logging.getLogger("test.filter").makeRecord(
        "test.filter",
        logging.ERROR,
        __file__,
        1,
        "failed",
        (),
        (RuntimeError, error, None),
    )
    RedactingFilter().filter(clean)
    assert Custom().format(clean) == "failed\ncustom traceback"


def test_a_new_library_logger_scrubs(live_token: str) -> None:
    """get_logger attaches the filter to a logger it creates, once."""
    logger = get_logger(f"trio_ws_bus.test.fresh{uuid.uuid4().hex}")
    assert logger.filters == [REDACTING_FILTER]


def test_the_transitional_loggers_get_the_filter_once() -> None:
    """install_log_filter puts the filter back on trio-websocket's logger, once."""
    logger = logging.getLogger("trio-websocket")
    logger.removeFilter(REDACTING_FILTER)
    install_log_filter()
    install_log_filter()
    assert logger.filters.count(REDACTING_FILTER) == 1


def test_the_options_repr_shows_no_secret() -> None:
    """The token, a ?token= in the URL, header values and proxy credentials."""
    from trio_ws_bus._settings import ManagerOptions

    secret = f"canary-{uuid.uuid4().hex}"
    options = ManagerOptions(
        url=f"http://127.0.0.1:8080/ws?token={secret}",
        token=secret,
        additional_headers={"X-Api-Key": secret},
        proxy=f"http://user:{secret}@127.0.0.1:3128",
        trust_env=False,
    )
    for shown in (repr(options), repr(options.resolve())):
        assert "127.0.0.1:8080" in shown
        assert not [form for form in token_forms(secret) if form in shown]
