"""The factory: check the options, make the manager, own its connection task.

:func:`open_websocket_manager` is the only way to make a
:class:`~trio_ws_bus.WebSocketManager`: its nursery holds the session loop for
exactly as long as the ``async with`` block, and its exit closes on purpose
and leaves no task behind.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from ._backoff import Backoff
from ._bus import MessageBus
from ._manager import WebSocketManager
from ._proxy import PROXY_FROM_ENV, ProxyFromEnv, ProxyURL
from ._retry import RetryPolicy, default_retry_policy
from ._session import Compression
from ._settings import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PATH,
    DEFAULT_SUBSCRIBER_WAIT,
    DEFAULT_USER_AGENT,
    HandshakeHeaders,
    TokenLocation,
    TokenProvider,
    document_options,
    options_from,
)
from ._transport import Transport
from ._util import open_nursery_body_as_itself

__all__ = ["open_websocket_manager"]


@asynccontextmanager
# Args: the entries of the options (every argument but the four below) are
# ManagerOptions' own, added in signature order when this module loads.
@document_options
async def open_websocket_manager(  # noqa: D417 - the options' Args are added above
    url: str,
    *,
    token: TokenProvider,
    bus: MessageBus | None = None,
    backoff: Backoff | None = None,
    retry_policy: RetryPolicy = default_retry_policy,
    path: str = DEFAULT_PATH,
    autoconnect: bool = True,
    ping_interval: float | None = 20.0,
    ping_timeout: float = 20.0,
    open_timeout: float = 10.0,
    close_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    transport: Transport | None = None,
    additional_headers: HandshakeHeaders = (),
    user_agent: str | None = DEFAULT_USER_AGENT,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    compression: Compression = "deflate",
    token_location: TokenLocation = "query",
    proxy: str | ProxyURL | ProxyFromEnv | None = PROXY_FROM_ENV,
    trust_env: bool = True,
    subscriber_wait: float = DEFAULT_SUBSCRIBER_WAIT,
) -> AsyncIterator[WebSocketManager]:
    """Open a connection manager whose task lives as long as the context.

    On exit the manager disconnects on purpose (close code 1000) and no task
    is left behind. An exception raised in the body (an ``ExceptionGroup``
    included) comes out as that same object.

    Args:
        bus: The bus to publish to; a new :class:`MessageBus` by default.
        backoff: The retry schedule; ``Backoff()`` (1, 2, 4, 8, 16, 30 s, 20
            retries) by default.
        retry_policy: Classifies each failure as retry, retry now, or give up
            (see :doc:`/reconnect_policy`).
        autoconnect: Connect at once; else wait for :meth:`WebSocketManager.connect`.

    Raises:
        ValueError: For a URL that can never work (unknown scheme, no host) or
            an out-of-range setting, before anything connects.
        TypeError: For a setting of the wrong type, before anything connects.
    """
    settings = options_from(locals()).resolve()
    manager = WebSocketManager._create(
        settings=settings,
        bus=bus if bus is not None else MessageBus(),
        backoff=backoff if backoff is not None else Backoff(),
        retry_policy=retry_policy,
    )
    try:
        async with open_nursery_body_as_itself() as nursery:
            await nursery.start(manager._run)
            if autoconnect:
                manager.connect()
            try:
                yield manager
            finally:
                with trio.CancelScope(shield=True):
                    await manager._shutdown()
                manager._run_scope.cancel()
    finally:
        # Every task is gone: this manager's token stops scrubbing log records.
        manager._redact.close()
    # Leaving the context is a checkpoint, as Trio's own are: a cancellation
    # that came while the shielded close ran is delivered here.
    await trio.lowlevel.checkpoint()
