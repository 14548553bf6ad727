"""The record :meth:`WebSocketManager.statistics` returns (what the manager did)."""

from __future__ import annotations

import attrs

from ._events import ConnectionStatus

__all__ = ["ManagerStatistics"]


@attrs.frozen
class ManagerStatistics:
    """What the manager has done: :meth:`WebSocketManager.statistics` returns it.

    Attributes:
        status: The current connection status.
        attempts: Connection attempts made (each one fetched a token).
        connections: Attempts whose handshake succeeded.
        reconnects: Successful connections after the first one.
        retries_used: Retries used from the current budget (see
            :doc:`/reconnect_policy`).
        messages_received: Messages received, valid or not.
        alerts_messages: ``alerts`` messages routed to ``ALERTS_TOPIC``.
        telemetry_messages: ``telemetry`` messages routed to telemetry topics.
        acks: ``subscribed`` / ``unsubscribed`` answers received.
        server_errors: ``error`` messages routed to ``ERROR_TOPIC``.
        invalid_messages: Items rejected and published on ``INVALID_TOPIC``
            (bad JSON, unknown type, wrong field types, binary, too big).
        subscriptions: Persisted server subscriptions.
        other_metrics: Telemetry metric values that are neither numbers nor
            booleans, kept in :attr:`Telemetry.other_metrics` (the reading is
            delivered all the same).
        subprotocol: The subprotocol the server chose on the current (or
            last) connection, else ``None``.
        compression: ``"deflate"`` if the current (or last) connection
            negotiated permessage-deflate, else ``None``.
    """

    status: ConnectionStatus
    attempts: int
    connections: int
    reconnects: int
    retries_used: int
    messages_received: int
    alerts_messages: int
    telemetry_messages: int
    acks: int
    server_errors: int
    invalid_messages: int
    subscriptions: int
    other_metrics: int = 0
    subprotocol: str | None = None
    compression: str | None = None
