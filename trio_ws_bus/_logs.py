"""The library's loggers, and log lines about untrusted text.

Every library logger comes from :func:`get_logger`, which attaches the
redacting filter (a filter on one logger does not reach its children). The
``trio_ws_bus`` logger has a :class:`logging.NullHandler`, so an application
that never configured logging does not get the library's warnings through
Python's last-resort handler; records still propagate to the root logger.

A misbehaving server decides what the manager would log (its error messages,
garbage frames, close reasons). :func:`short_text` and :class:`LogLimiter`
keep such text on one short line, scrubbed of the live tokens before it is
cut, and keep a flood of it from flooding the application's logs.
"""

from __future__ import annotations

import logging
from typing import Final

import attrs

from ._secrets import REDACTING_FILTER, Redactor

__all__ = ["LogLimiter", "get_logger", "short_text"]

_ROOT_LOGGER: Final = "trio_ws_bus"

#: Untrusted text (server error messages, close reasons, decode errors) is
#: shown escaped and cut to this many characters in log lines.
LOG_TEXT_LIMIT: Final = 200
#: Invalid messages and server errors are logged one by one only this many
#: times per connection; after that they are counted and summarised at most
#: once per ``LOG_SUMMARY_INTERVAL`` seconds (and when the connection ends),
#: so a server spewing garbage cannot flood the application's logs.
LOG_BURST: Final = 10
LOG_SUMMARY_INTERVAL: Final = 60.0


def get_logger(name: str) -> logging.Logger:
    """Return the library logger ``name``, with the redacting filter attached.

    Raises:
        ValueError: If ``name`` is not ``trio_ws_bus`` or below it.
    """
    if name != _ROOT_LOGGER and not name.startswith(_ROOT_LOGGER + "."):
        raise ValueError(f"library loggers are named {_ROOT_LOGGER}.*, not {name!r}")
    logger = logging.getLogger(name)
    if REDACTING_FILTER not in logger.filters:
        logger.addFilter(REDACTING_FILTER)
    return logger


get_logger(_ROOT_LOGGER).addHandler(logging.NullHandler())


def short_text(text: str) -> str:
    """Scrub the live tokens from untrusted text, then escape and truncate it.

    Scrubbing comes first: a token quoted late in a long text would otherwise
    be cut in two, and half a token is no longer found. The result is at most
    about ``LOG_TEXT_LIMIT`` + 30 characters, however many escapes (CR, LF,
    ANSI) the text holds.
    """
    text = Redactor.scrub_all(text)
    shown = repr(text[:LOG_TEXT_LIMIT])
    if len(shown) > LOG_TEXT_LIMIT:
        shown = shown[:LOG_TEXT_LIMIT] + "..."
    elif len(text) <= LOG_TEXT_LIMIT:
        return shown
    return f"{shown} ({len(text)} chars)"


@attrs.define
class LogLimiter:
    """Logs the first few events of a connection, then summaries.

    The first ``LOG_BURST`` events of each connection get a warning each.
    Later ones are counted; a summary is logged by the first event at least
    ``LOG_SUMMARY_INTERVAL`` seconds after the previous line, and by
    :meth:`end_connection`.
    """

    logger: logging.Logger
    what: str
    _logged: int = 0
    _suppressed: int = 0
    _last_line_at: float = 0.0

    def log(self, now: float, text: str) -> None:
        """Count one event; log ``text`` (escaped, cut) if still in the burst."""
        if self._logged < LOG_BURST:
            self._logged += 1
            self._last_line_at = now
            self.logger.warning("%s: %s", self.what, short_text(text))
            if self._logged == LOG_BURST:
                self.logger.warning(
                    "%s: further ones on this connection are only counted "
                    "(a summary at most every %g s)",
                    self.what,
                    LOG_SUMMARY_INTERVAL,
                )
            return
        self._suppressed += 1
        if now - self._last_line_at >= LOG_SUMMARY_INTERVAL:
            self._summarise(now)

    def _summarise(self, now: float) -> None:
        if self._suppressed:
            self.logger.warning(
                "%s: %d more not logged one by one", self.what, self._suppressed
            )
        self._suppressed = 0
        self._last_line_at = now

    def end_connection(self, now: float) -> None:
        """Summarise what was not logged; the next connection starts a burst."""
        self._summarise(now)
        self._logged = 0
