"""pytest plugin with reference-server fixtures (the ``pytest11`` entry point).

Both fixtures are async and run by pytest-trio (``trio_mode = true``, or mark
the tests with ``@pytest.mark.trio``). The server module (and PyJWT) is only
imported when a fixture is used, so merely installing trio-ws-bus never breaks
a pytest run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._server import ReferenceServer

__all__ = ["ws_bus_memory_server", "ws_bus_server"]


@pytest.fixture
async def ws_bus_server() -> AsyncIterator[ReferenceServer]:
    """A running reference server on a real loopback socket (127.0.0.1, any port).

    Connect with ``ws_bus_server.url`` and ``ws_bus_server.issue_token()``.
    Uses the real clock: do not combine with ``autojump_clock``.
    """
    from ._server import open_reference_server

    async with open_reference_server() as server:
        yield server


@pytest.fixture
async def ws_bus_memory_server() -> AsyncIterator[ReferenceServer]:
    """A running reference server without sockets, for ``autojump_clock`` tests.

    Connect through ``ws_bus_memory_server.transport``; nothing depends on
    real time. Ask for ``autojump_clock`` in the test function itself:
    pytest-trio only takes the clock from the test's own arguments.
    """
    from ._server import open_reference_server

    async with open_reference_server(listen=False) as server:
        yield server
