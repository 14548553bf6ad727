"""Route trio_ws_bus's log records: the library's lines to stdout, no frames."""

from __future__ import annotations

import logging
import logging.config

import trio

from trio_ws_bus import open_websocket_manager
from trio_ws_bus.testing import open_reference_server

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(name)s %(levelname)s %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        # Connection attempts, give-ups, server errors: INFO and up.
        "trio_ws_bus": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        # Frames and handshakes are DEBUG on this logger: keep them out.
        "trio_ws_bus.wire": {"level": "WARNING"},
    },
}


def configure_logging() -> None:
    """Apply LOGGING; call it once at start-up, before opening a manager."""
    logging.config.dictConfig(LOGGING)


def snapshot_logging() -> list[tuple[logging.Logger, int, bool, list[logging.Handler]]]:
    """What configure_logging() changes (the docs' tests share one process)."""
    loggers = [logging.getLogger(name) for name in LOGGING["loggers"]]
    return [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]


def restore_logging(
    saved: list[tuple[logging.Logger, int, bool, list[logging.Handler]]],
) -> None:
    """Put the loggers back as snapshot_logging() found them."""
    for logger, level, propagate, handlers in saved:
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers


async def main() -> None:
    saved = snapshot_logging()
    configure_logging()
    try:
        for name in ("trio_ws_bus.manager", "trio_ws_bus.wire"):
            level = logging.getLogger(name).getEffectiveLevel()
            print(name, "logs from", logging.getLevelName(level))
        # A provider with no token: one WARNING, and the manager stops.
        async with (
            open_reference_server(listen=False) as server,
            open_websocket_manager(
                "http://localhost", token=lambda: None, transport=server.transport
            ),
        ):
            await trio.sleep(1)
    finally:
        restore_logging(saved)


if __name__ == "__main__":
    trio.run(main)
