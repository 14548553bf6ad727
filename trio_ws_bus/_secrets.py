"""Keeping tokens out of logs: per-manager redactors and one logging filter.

Every text the manager shows (events, its own log lines) goes through its
:class:`Redactor`. trio-websocket logs at DEBUG what the server sent (close
reasons included), which a misbehaving server may fill with the token; the
:class:`RedactingFilter` installed on those loggers scrubs the tokens of every
live manager from each record before any handler sees it.
"""

from __future__ import annotations

import logging
import weakref
from typing import ClassVar, Final

__all__ = ["Redactor", "install_log_filter"]

REDACTED: Final = "***"

#: Loggers whose records may carry server-provided text.
_FILTERED_LOGGERS: Final = (
    "trio-websocket",
    "trio_ws_bus.manager",
    "trio_ws_bus.connection",
    "trio_ws_bus.wire",
)


class Redactor:
    """Replaces one manager's current token, raw and percent-encoded, with ``***``."""

    _live: ClassVar[weakref.WeakSet[Redactor]] = weakref.WeakSet()

    def __init__(self) -> None:
        self.secrets: tuple[str, ...] = ()
        Redactor._live.add(self)

    def remember(self, *secrets: str) -> None:
        """Make these the secrets to hide (the last token, in every encoding)."""
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def close(self) -> None:
        """Forget the secrets and stop scrubbing log records (the manager is gone).

        A closed manager's token must not keep rewriting every later log line
        until the garbage collector happens to run.
        """
        self.secrets = ()
        Redactor._live.discard(self)

    def __call__(self, text: str | None) -> str | None:
        """Return ``text`` with every remembered secret replaced."""
        if text is None:
            return None
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    @classmethod
    def scrub_all(cls, text: str) -> str:
        """Replace the secrets of every live redactor in ``text``."""
        for redactor in list(cls._live):
            text = redactor(text) or ""
        return text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs every live manager's token from records."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message if it contains a secret; never drop it."""
        message = record.getMessage()
        scrubbed = Redactor.scrub_all(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


_FILTER: Final = RedactingFilter()


def install_log_filter() -> None:
    """Attach the redacting filter to the loggers that may see tokens (once)."""
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
