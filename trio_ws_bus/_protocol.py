r"""The wire protocol: typed messages and a strict JSON codec.

This module is a pure codec in the sans-IO style of h11 and wsproto: text in,
typed messages out (and back). It never touches a socket and does not import
Trio, so its tests are synchronous and can be fuzzed.

The protocol is the one of the original browser client (``/api/v2/ws``):

* the client sends ``{"action": "subscribe" | "unsubscribe", "type": "alerts" |
  "device", "device_id"?: str}`` (:class:`SubscribeRequest`);
* the server sends objects tagged by their ``"type"`` field: ``alerts``,
  ``telemetry``, ``subscribed``, ``unsubscribed`` and ``error``
  (:data:`ServerMessage`).

Wire messages are frozen :class:`msgspec.Struct` types decoded through one
tagged union, rather than attrs classes: decoding and validating into Structs in
one pass is several times cheaper than ``json.loads`` plus building validated
attrs objects (``bench/decode.py`` measures it), and this decoder runs for every
frame the server sends.

Validation is strict. :func:`decode_server_message` raises
:class:`~trio_ws_bus.ProtocolError`, and nothing else, for any frame that is not a
valid server message, with a short reason that never quotes the payload:

* malformed JSON, trailing data, a top level other than an object;
* a missing or unknown ``type``, a missing field, a field of the wrong type (a
  JSON ``true`` is not an integer; an integer is accepted where a float is
  expected, and stays an ``int`` in telemetry metrics);
* ``NaN`` and ``Infinity`` (not JSON), and numbers that overflow a float such as
  ``1e999`` (they would become ``inf``);
* integer literals longer than Python's integer string conversion limit
  (:func:`sys.get_int_max_str_digits`, 4300 digits by default). Shorter integers
  of any size are accepted as Python ``int``. The limit is the interpreter's
  guard against quadratic-time parsing; an application that lifts it to 0 lifts
  it here too;
* nesting deeper than the interpreter's recursion limit (inside ``details``, or
  inside an ignored field), which msgspec reports as a ``RecursionError``;
* escaped lone surrogates (``"\ud800"``), which would make a ``str`` that cannot
  be encoded to UTF-8 later; a ``str`` argument that contains one; and bytes that
  are not valid UTF-8 anywhere in the frame (as for a WebSocket text frame).

Fields a message does not define are ignored, so the server can add fields
without breaking older clients. ``MemoryError`` is deliberately not translated:
it says something about the process, not about the frame.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final, Literal, TypeAlias

import msgspec

from ._errors import ProtocolError

__all__ = [
    "Action",
    "Alert",
    "AlertsMessage",
    "ErrorMessage",
    "InvalidItem",
    "ServerMessage",
    "SubscribeRequest",
    "SubscribedMessage",
    "SubscriptionKind",
    "Telemetry",
    "TelemetryData",
    "TelemetryMessage",
    "UnsubscribedMessage",
    "decode_client_message",
    "decode_server_message",
    "encode_client_message",
    "encode_server_message",
]

Action: TypeAlias = Literal["subscribe", "unsubscribe"]
"""What a :class:`SubscribeRequest` asks the server to do."""

SubscriptionKind: TypeAlias = Literal["alerts", "device"]
"""What a subscription is about: every alert, or one device's telemetry."""

_ACTIONS: Final = frozenset(("subscribe", "unsubscribe"))
_KINDS: Final = frozenset(("alerts", "device"))

# gc=False: instances of these types are never tracked by the cycle collector.
# That is safe as long as no reference cycle runs through an instance, which
# the decoder never builds. The only way to build one is to store a message
# inside its own ``details`` or ``metrics`` dict; the cycle would then leak
# (it is never a crash). In exchange, decoding a batch of alerts does not feed
# the collector one tracked object per alert.


class Alert(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One alert, as the server sends it in an ``alerts`` message.

    Every field is required on the wire; ``details`` and ``closed_at`` may be
    ``null``. Fields the server adds later are ignored.

    Attributes:
        alert_id: The server's identifier of the alert.
        tenant_id: The tenant the alert belongs to.
        device_id: The device that raised the alert.
        alert_type: The kind of alert, as the server names it.
        severity: How severe the alert is, as an integer (the server's scale).
        summary: A one-line human-readable description.
        status: The alert's state, as the server names it (for example "open").
        created_at: When the alert was raised: the server's timestamp string,
            passed through unparsed.
        fingerprint: The server's deduplication key for the alert.
        details: Free-form JSON object with more information, or ``None``.
            Values are plain JSON values (``dict``, ``list``, ``str``, ``int``,
            ``float``, ``bool``, ``None``).
        closed_at: When the alert was closed (the server's timestamp string), or
            ``None`` while it is open.
    """

    alert_id: int
    tenant_id: str
    device_id: str
    alert_type: str
    severity: int
    summary: str
    status: str
    created_at: str
    fingerprint: str
    details: dict[str, Any] | None
    closed_at: str | None


class InvalidItem(msgspec.Struct, frozen=True, gc=False):
    """One rejected piece of what the server sent: the payload of ``INVALID_TOPIC``.

    One value per rejected item: each invalid alert of a batch, or a whole
    frame that is no valid message (bad JSON, unknown type, binary frame).
    Nothing the library rejects is silently gone.

    Attributes:
        reason: Why it was rejected, in a few words (never the payload).
        raw: The raw JSON text of the rejected item (or frame), cut from its
            start to a bound, and scrubbed of the live token.
    """

    reason: str
    raw: str


class Telemetry(msgspec.Struct, frozen=True, gc=False):
    """One telemetry reading of one device: the payload of a telemetry topic.

    Attributes:
        device_id: The device the reading comes from.
        timestamp: When the reading was taken: the server's timestamp string,
            passed through unparsed.
        metrics: Metric name to value. A JSON integer stays an ``int``, a JSON
            ``true``/``false`` stays a ``bool``, anything else with a fraction or
            exponent is a finite ``float``.
    """

    device_id: str
    timestamp: str
    metrics: dict[str, float | int | bool]


class TelemetryData(msgspec.Struct, frozen=True, gc=False):
    """The ``data`` object of a ``telemetry`` message.

    Attributes:
        timestamp: When the reading was taken (the server's timestamp string).
        metrics: Metric name to value, typed as in :attr:`Telemetry.metrics`.
    """

    timestamp: str
    metrics: dict[str, float | int | bool]


class AlertsMessage(
    msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="alerts"
):
    """A batch of alerts (``{"type": "alerts", ...}``).

    Attributes:
        alerts: The alerts, in the order the server sent them.
    """

    alerts: tuple[Alert, ...]


class TelemetryMessage(
    msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="telemetry"
):
    """A telemetry reading of one device (``{"type": "telemetry", ...}``).

    Attributes:
        device_id: The device the reading comes from.
        data: The reading itself.
    """

    device_id: str
    data: TelemetryData

    @property
    def telemetry(self) -> Telemetry:
        """The reading as a :class:`Telemetry` (shares the ``metrics`` dict)."""
        data = self.data
        return Telemetry(self.device_id, data.timestamp, data.metrics)


class SubscribedMessage(
    msgspec.Struct,
    frozen=True,
    gc=False,
    omit_defaults=True,
    tag_field="type",
    tag="subscribed",
):
    """The server confirms a subscription (``{"type": "subscribed", ...}``).

    Attributes:
        channel: The subscribed channel, as the server names it.
        device_id: The device, for a device subscription; else ``None``.
    """

    channel: str
    device_id: str | None = None


class UnsubscribedMessage(
    msgspec.Struct,
    frozen=True,
    gc=False,
    omit_defaults=True,
    tag_field="type",
    tag="unsubscribed",
):
    """The server confirms an unsubscription (``{"type": "unsubscribed", ...}``).

    Attributes:
        channel: The unsubscribed channel, as the server names it.
        device_id: The device, for a device subscription; else ``None``.
    """

    channel: str
    device_id: str | None = None


class ErrorMessage(
    msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="error"
):
    """An error reported by the server (``{"type": "error", ...}``).

    Attributes:
        message: The server's description of the error.
    """

    message: str


ServerMessage: TypeAlias = (
    AlertsMessage
    | TelemetryMessage
    | SubscribedMessage
    | UnsubscribedMessage
    | ErrorMessage
)
"""Any message the server sends: a union tagged by the ``type`` field."""


class SubscribeRequest(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """A client request to subscribe to or unsubscribe from a channel.

    On the wire: ``{"action": "subscribe", "type": "device", "device_id": "d1"}``;
    ``device_id`` is left out for ``alerts``. Requests are validated when built:

    >>> SubscribeRequest.subscribe("device", "d1").key
    ('device', 'd1')

    Attributes:
        action: ``"subscribe"`` or ``"unsubscribe"``.
        kind: ``"alerts"`` or ``"device"`` (the wire field ``type``).
        device_id: The device, required and non-empty for ``"device"``; must be
            ``None`` for ``"alerts"``.

    Raises:
        ValueError: ``action`` or ``kind`` is not one of the allowed strings, or
            ``device_id`` does not fit ``kind``.
    """

    action: Action
    kind: SubscriptionKind = msgspec.field(name="type")
    device_id: str | None = None

    def __post_init__(self) -> None:
        # msgspec does not validate on __init__; this also runs on decoding.
        if self.action not in _ACTIONS:
            raise ValueError(
                f'action must be "subscribe" or "unsubscribe", not {self.action!r:.40}'
            )
        if self.kind not in _KINDS:
            raise ValueError(
                f'kind must be "alerts" or "device", not {self.kind!r:.40}'
            )
        if self.kind == "device":
            if not isinstance(self.device_id, str) or not self.device_id:
                raise ValueError('a "device" subscription needs a non-empty device_id')
        elif self.device_id is not None:
            raise ValueError('an "alerts" subscription takes no device_id')

    @classmethod
    def subscribe(
        cls, kind: SubscriptionKind, device_id: str | None = None
    ) -> SubscribeRequest:
        """Build a ``subscribe`` request.

        Args:
            kind: ``"alerts"`` or ``"device"``.
            device_id: The device, for (and only for) ``"device"``.

        Returns:
            The validated request.

        Raises:
            ValueError: ``kind`` is unknown or ``device_id`` does not fit it.
        """
        return cls("subscribe", kind, device_id)

    @classmethod
    def unsubscribe(
        cls, kind: SubscriptionKind, device_id: str | None = None
    ) -> SubscribeRequest:
        """Build an ``unsubscribe`` request.

        Args:
            kind: ``"alerts"`` or ``"device"``.
            device_id: The device, for (and only for) ``"device"``.

        Returns:
            The validated request.

        Raises:
            ValueError: ``kind`` is unknown or ``device_id`` does not fit it.
        """
        return cls("unsubscribe", kind, device_id)

    @property
    def key(self) -> tuple[SubscriptionKind, str | None]:
        """``(kind, device_id)``: what the request is about, whatever the action."""
        return (self.kind, self.device_id)


_server_decoder: Final[msgspec.json.Decoder[ServerMessage]] = msgspec.json.Decoder(
    ServerMessage
)
_client_decoder: Final = msgspec.json.Decoder(SubscribeRequest)
_encoder: Final = msgspec.json.Encoder()

_MAX_REASON: Final = 200
# msgspec quotes offending values in some messages ("Invalid value 'x' - at
# `$.type`"); those values come from the payload and must not reach a reason.
_QUOTED: Final = re.compile(r"'.*'", re.DOTALL)


def _reason(prefix: str, detail: str) -> str:
    if detail.startswith("Invalid value") and detail.endswith("at `$.type`"):
        return "unknown message type"
    reason = f"{prefix}: {_QUOTED.sub('<value>', detail)}"
    if len(reason) > _MAX_REASON:  # a long path, such as $.x[0][0][0]...
        reason = reason[: _MAX_REASON - 3] + "..."
    return reason


def _decode(
    decoder: msgspec.json.Decoder[Any], data: str | bytes | bytearray | memoryview
) -> Any:
    # Every branch below sets ``reason``; the ProtocolError is raised outside
    # the except clauses so that it carries no __context__: some exceptions
    # (UnicodeDecodeError) hold a reference to the whole payload.
    try:
        if not isinstance(data, str):
            # RFC 8259: JSON text is UTF-8. msgspec only checks the strings it
            # decodes, not those of ignored fields; check the whole frame.
            str(data, "utf-8")
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        reason = _reason("invalid message", str(exc))
    except msgspec.DecodeError as exc:
        reason = _reason("malformed JSON", str(exc))
    except UnicodeDecodeError as exc:
        reason = f"invalid UTF-8 at byte {exc.start}"
    except UnicodeEncodeError:
        reason = "text contains a lone surrogate"
    except RecursionError:
        reason = "JSON nested too deeply"
    except (ValueError, OverflowError) as exc:  # pragma: no cover - defensive
        reason = f"invalid message: {type(exc).__name__}"
    raise ProtocolError(reason) from None


def decode_server_message(data: str | bytes | bytearray | memoryview) -> ServerMessage:
    """Decode and validate one frame from the server.

    Args:
        data: The frame: text, or UTF-8 bytes (a ``memoryview`` must be
            C-contiguous).

    Returns:
        The message, one of the :data:`ServerMessage` classes.

    Raises:
        ProtocolError: The frame is not a valid server message (see the module
            documentation for every case). The reason is short and never
            contains the payload.
    """
    message: ServerMessage = _decode(_server_decoder, data)
    return message


def decode_client_message(
    data: str | bytes | bytearray | memoryview,
) -> SubscribeRequest:
    """Decode and validate one frame from a client (for servers and tests).

    Args:
        data: The frame: text, or UTF-8 bytes.

    Returns:
        The validated request.

    Raises:
        ProtocolError: The frame is not a valid :class:`SubscribeRequest`.
    """
    request: SubscribeRequest = _decode(_client_decoder, data)
    return request


def encode_client_message(request: SubscribeRequest) -> str:
    """Encode a request as the compact JSON text the server expects.

    Keys come in the order ``action``, ``type``, ``device_id``, and
    ``device_id`` only when set:
    ``{"action":"subscribe","type":"alerts"}``.

    Args:
        request: The request to send.

    Returns:
        The JSON text.
    """
    return _encoder.encode(request).decode()


def _check_finite(message: ServerMessage) -> None:
    # msgspec writes NaN and infinities as ``null``: refuse rather than send a
    # message that would not decode back to what was encoded.
    if isinstance(message, TelemetryMessage):
        values: list[Any] = list(message.data.metrics.values())
    elif isinstance(message, AlertsMessage):
        values = [alert.details for alert in message.alerts]
    else:
        return
    while values:
        value = values.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError("cannot encode a non-finite float as JSON")
        elif isinstance(value, dict):
            values.extend(value.values())
        elif isinstance(value, list | tuple):
            values.extend(value)


def encode_server_message(message: ServerMessage) -> str:
    """Encode a server message as compact JSON text (for servers and tests).

    ``decode_server_message(encode_server_message(m)) == m`` for every valid
    message ``m``.

    Args:
        message: The message to send.

    Returns:
        The JSON text, with the ``type`` tag first.

    Raises:
        ValueError: The message holds a non-finite float (in ``metrics`` or
            ``details``), or a string with a lone surrogate.
        TypeError: ``details`` holds a value that is not JSON.
    """
    _check_finite(message)
    return _encoder.encode(message).decode()
