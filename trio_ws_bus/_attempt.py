"""The steps of one connection attempt, each bounded by the attempt's deadline.

The manager's session loop runs them in order: :func:`fetch_token`, then
:func:`open_stream`, then :func:`new_session` for the pump. Each failure comes
back as a :class:`ConnectionFailure` value for the retry policy, never as an
exception, and never with the token in its text.
"""

from __future__ import annotations

import inspect
import logging

import attrs
import trio

from ._failures import ConnectionFailure, FailureKind
from ._logs import get_logger
from ._session import ClientSession
from ._settings import Settings, token_problem
from ._transport import failure_from_os_error
from ._url import WebSocketTarget

__all__ = ["fetch_token", "new_session", "open_stream"]

logger = get_logger("trio_ws_bus.attempt")


async def fetch_token(
    settings: Settings, deadline: float
) -> str | ConnectionFailure | None:
    """Call the token provider; return a usable token, ``None`` or the failure.

    ``None`` (or ``""``) means no token at all: the manager gives up. A
    provider that raises, hangs past ``deadline`` or returns a non-str, and a
    token that cannot be sent where it goes, are failures the policy retries.
    """
    provider = settings.token
    if isinstance(provider, str):
        token: object = provider
    else:
        try:
            with trio.fail_at(deadline):
                token = provider()
                if inspect.isawaitable(token):
                    token = await token
        except trio.TooSlowError:
            return _token_failure(FailureKind.TOKEN_ERROR, "Token provider timed out")
        except Exception as exc:
            # The exception's text may hold a token: only its type is shown.
            return _token_failure(
                FailureKind.TOKEN_ERROR, f"Token provider failed: {type(exc).__name__}"
            )
    if token is not None and not isinstance(token, str):
        return _token_failure(
            FailureKind.TOKEN_ERROR,
            f"Token provider returned {type(token).__name__}, not str",
        )
    if not token:
        return None
    unusable = token_problem(token, settings.token_location)
    if unusable is not None:
        return _token_failure(FailureKind.INVALID_TOKEN, unusable)
    return token


def _token_failure(kind: FailureKind, reason: str) -> ConnectionFailure:
    logger.warning("%s", reason)
    return ConnectionFailure(kind, reason=reason)


async def open_stream(
    settings: Settings, target: WebSocketTarget, deadline: float
) -> trio.abc.Stream | ConnectionFailure:
    """Open the attempt's byte stream (TCP, TLS, proxy tunnel) by ``deadline``."""
    try:
        with trio.fail_at(deadline):
            return await settings.transport.open_stream(
                target.host,
                target.port,
                ssl_context=settings.ssl_context if target.secure else None,
            )
    except trio.TooSlowError:
        return ConnectionFailure(
            FailureKind.TIMEOUT, reason="Opening handshake timed out"
        )
    except (OSError, trio.BrokenResourceError) as exc:
        return failure_from_os_error(exc)


def new_session(
    settings: Settings,
    target: WebSocketTarget,
    token: str,
    *,
    now: float,
    wire_logger: logging.Logger,
) -> ClientSession:
    """The sans-I/O session of one attempt (the token in the header if asked)."""
    handshake = settings.handshake
    if settings.token_location == "header":
        handshake = attrs.evolve(handshake, bearer_token=token)
    return ClientSession(
        target.url,
        handshake,
        now=now,
        max_message_size=settings.max_message_size,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        close_timeout=settings.close_timeout,
        logger=wire_logger,
    )
