"""Keeping tokens out of everything shown: redactors and one logging filter.

A token reaches a text in more forms than one: raw, percent-encoded (as the
URL carries it, in either hex case), JSON-escaped (as a server echoes it) and
backslash-escaped (as ``repr()`` and escaped log lines show it). A
:class:`Redactor` computes every form of the tokens it remembers and replaces
each with ``***``. Every library logger carries the :class:`RedactingFilter`
(see :func:`trio_ws_bus._logs.get_logger`), which scrubs the tokens of every
live redactor from each record before any handler sees it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import urllib.parse
import weakref
from collections.abc import Mapping
from typing import ClassVar, Final, overload

__all__ = ["REDACTED", "RedactingFilter", "Redactor", "install_log_filter"]

REDACTED: Final = "***"

#: Loggers of other libraries whose records may carry server-provided text.
_FILTERED_LOGGERS: Final = ("trio-websocket", "trio_ws_bus.manager")
#: Attributes every record has; any other attribute came from ``extra``.
_STANDARD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None))
) | {"message", "asctime"}
_PERCENT_ESCAPE: Final = re.compile("%[0-9A-F]{2}")


def token_forms(token: str) -> set[str]:
    """Every form ``token`` can take in a text, for any ``str`` (surrogates too).

    Raw; percent-encoded as ``urllib.parse.quote(token, safe="")`` makes it,
    with upper- and lower-case hex (a lone surrogate encoded both as the byte
    it escapes and as its UTF-8-style bytes); JSON-escaped with and without
    ``ensure_ascii``; backslash-escaped as ``repr()`` shows it in either
    quoting, and as ``unicode_escape`` does.
    """
    forms = {
        token,
        repr(token)[1:-1],
        repr('"' + token)[2:-1],  # always single-quoted: ' shows as \'
        token.encode("unicode_escape").decode("ascii"),
        json.dumps(token)[1:-1],
        json.dumps(token, ensure_ascii=False)[1:-1],
    }
    for errors in ("surrogatepass", "surrogateescape"):
        with contextlib.suppress(UnicodeEncodeError):  # surrogateescape: U+DC80-DCFF
            encoded = urllib.parse.quote(token, safe="", errors=errors)
            forms |= {encoded, _PERCENT_ESCAPE.sub(_lower, encoded)}
    forms.discard("")
    return forms


def _lower(match: re.Match[str]) -> str:
    return match.group().lower()


class Redactor:
    """Replaces every form of the tokens it remembers with ``***``."""

    _live: ClassVar[weakref.WeakSet[Redactor]] = weakref.WeakSet()

    def __init__(self) -> None:
        self._pattern: re.Pattern[str] | None = None
        Redactor._live.add(self)

    def remember(self, *tokens: str) -> None:
        """Make these the tokens to hide, in every form, forgetting earlier ones."""
        forms = set().union(*map(token_forms, tokens))
        # A lookahead finds overlapping occurrences; longest form first.
        alternatives = "|".join(map(re.escape, sorted(forms, key=len, reverse=True)))
        self._pattern = re.compile(f"(?=({alternatives}))") if forms else None

    def close(self) -> None:
        """Forget the tokens and stop scrubbing log records (the owner is gone).

        A closed manager's token must not keep rewriting every later log line
        until the garbage collector happens to run.
        """
        self._pattern = None
        Redactor._live.discard(self)

    @overload
    def __call__(self, text: str) -> str: ...
    @overload
    def __call__(self, text: None) -> None: ...
    def __call__(self, text: str | None) -> str | None:
        """Return ``text`` with every form of every remembered token replaced.

        Overlapping and adjacent occurrences become one ``***`` each span.
        """
        if text is None or self._pattern is None:
            return text
        pieces: list[str] = []
        done = 0  # text[:done] is in pieces
        for match in self._pattern.finditer(text):
            start, end = match.span(1)
            if start >= done:
                pieces += (text[done:start], REDACTED)
            done = max(done, end)
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    @classmethod
    def scrub_all(cls, text: str) -> str:
        """Replace the tokens of every live redactor in ``text``."""
        for redactor in list(cls._live):
            text = redactor(text)
        return text


def _scrub_value(value: object) -> object:
    return Redactor.scrub_all(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Scrubs every live token from a record's message, args, extras and traceback.

    Never drops or blanks a record; one without a secret passes unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the parts of ``record`` that hold a secret; keep the record."""
        msg, args = _scrub_value(record.msg), record.args
        if isinstance(args, tuple):
            args = tuple(map(_scrub_value, args))
        elif isinstance(args, Mapping):
            args = {key: _scrub_value(value) for key, value in args.items()}
        try:
            # As record.getMessage() does; str() of an argument may hold a secret.
            message = str(msg) % args if args else str(msg)
        except Exception:  # a broken record: its handler reports it
            message = ""
        scrubbed = Redactor.scrub_all(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        elif msg is not record.msg or args != record.args:
            record.msg, record.args = msg, args
        self._scrub_traceback(record)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, Redactor.scrub_all(value))
        return True

    @staticmethod
    def _scrub_traceback(record: logging.LogRecord) -> None:
        # Formatters cache the formatted exception in exc_text: fill the
        # cache now, so the handler shows the scrubbed one.
        text = record.exc_text
        if record.exc_info and not text:
            text = logging.Formatter().formatException(record.exc_info)
        for name, value in (("exc_text", text), ("stack_info", record.stack_info)):
            if value and Redactor.scrub_all(value) != value:
                setattr(record, name, Redactor.scrub_all(value))


REDACTING_FILTER: Final = RedactingFilter()


def install_log_filter() -> None:
    """Attach the redacting filter to loggers outside :func:`get_logger` (once).

    Transitional: trio-websocket's logger and the manager's, until both are
    made by :func:`trio_ws_bus._logs.get_logger` or gone. Runs on import, so
    a record is scrubbed even before the first manager opens.
    """
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if REDACTING_FILTER not in logger.filters:
            logger.addFilter(REDACTING_FILTER)


install_log_filter()
