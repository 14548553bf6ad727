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

Validation is also per item, in a second step that costs nothing while frames
are valid. After :func:`decode_server_message` refused a frame,
:func:`salvage_server_message` keeps what is valid and returns one
:class:`InvalidItem` per rejected piece:

* an ``alerts`` message is split into its alerts (each a :class:`msgspec.Raw`)
  and each alert is decoded on its own: the valid ones are kept in order, each
  invalid one is an :class:`InvalidItem`;
* in a ``telemetry`` message, numbers and booleans stay in ``metrics`` and any
  other JSON value goes to :attr:`Telemetry.other_metrics`; a metric whose
  value cannot be decoded at all (``1e999``) is an :class:`InvalidItem`, and
  the reading keeps its other metrics;
* anything else (bad JSON, a top level other than an object, an unknown
  ``type``, a missing or wrong ``device_id``, ``timestamp`` or ``metrics``,
  one wrong field in any other message, nesting too deep anywhere) is one
  :class:`InvalidItem` for the whole frame. So is a binary frame
  (:func:`invalid_binary_frame`).

An :class:`InvalidItem` carries the raw text of what was rejected, cut to
:data:`INVALID_RAW_LIMIT` characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, Literal, TypeAlias

import msgspec

from ._errors import ProtocolError

__all__ = [
    "INVALID_RAW_LIMIT",
    "Action",
    "Alert",
    "AlertsMessage",
    "ErrorMessage",
    "InvalidItem",
    "ServerMessage",
    "SubscribeRequest",
    "SubscribedMessage",
    "SubscriptionKey",
    "SubscriptionKind",
    "Telemetry",
    "TelemetryData",
    "TelemetryMessage",
    "UnsubscribedMessage",
    "decode_server_message",
    "encode_client_message",
    "invalid_binary_frame",
    "salvage_server_message",
    "subscription_key",
]

Action: TypeAlias = Literal["subscribe", "unsubscribe"]
"""What a :class:`SubscribeRequest` asks the server to do."""

SubscriptionKind: TypeAlias = Literal["alerts", "device"]
"""What a subscription is about: every alert, or one device's telemetry."""

SubscriptionKey: TypeAlias = tuple[SubscriptionKind, "str | None"]
"""A server subscription: ``("alerts", None)`` or ``("device", device_id)``."""

_ACTIONS: Final = frozenset(("subscribe", "unsubscribe"))


def subscription_key(kind: SubscriptionKind, device_id: str | None) -> SubscriptionKey:
    """Validate a subscription and return its key: the one owner of the rule.

    >>> subscription_key("device", "d1")
    ('device', 'd1')

    Args:
        kind: ``"alerts"`` or ``"device"``.
        device_id: The device, required and non-empty for ``"device"``; must
            be ``None`` for ``"alerts"``.

    Returns:
        ``("alerts", None)`` or ``("device", device_id)``.

    Raises:
        ValueError: ``kind`` is not one of the allowed strings, or
            ``device_id`` does not fit it.
    """
    if kind == "alerts":
        if device_id is not None:
            raise ValueError('an "alerts" subscription takes no device_id')
        return ("alerts", None)
    if kind == "device":
        if not isinstance(device_id, str) or not device_id:
            raise ValueError('a "device" subscription needs a non-empty device_id')
        return ("device", device_id)
    raise ValueError(f'kind must be "alerts" or "device", not {kind!r:.40}')


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
        other_metrics: Metrics whose value is no number or boolean (a string,
            ``null``, an array or an object), as plain JSON values. Empty unless
            the server sent such values: the reading is delivered rather than
            dropped for them (see :func:`salvage_server_message`).
    """

    device_id: str
    timestamp: str
    metrics: dict[str, float | int | bool]
    other_metrics: dict[str, Any] = {}


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


class _SalvagedTelemetryMessage(TelemetryMessage, frozen=True, gc=False):
    # What salvage_server_message returns for a reading with other metrics.
    # The field lives on this subclass, which no decoder knows, so that a
    # server cannot fill it: on the wire "other_metrics" stays an unknown field.
    other_metrics: dict[str, Any]

    @property
    def telemetry(self) -> Telemetry:
        data = self.data
        return Telemetry(
            self.device_id, data.timestamp, data.metrics, self.other_metrics
        )


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
        subscription_key(self.kind, self.device_id)

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


# What msgspec (and the UTF-8 check) raise for a frame that is not valid; the
# msgspec errors and the Unicode errors are ValueErrors.
_DECODE_ERRORS: Final = (ValueError, OverflowError, RecursionError)


def _reason_for(exc: Exception, what: str) -> str:
    if isinstance(exc, msgspec.ValidationError):
        return _reason(f"invalid {what}", str(exc))
    if isinstance(exc, msgspec.DecodeError):
        return _reason("malformed JSON", str(exc))
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    if isinstance(exc, UnicodeEncodeError):
        return "text contains a lone surrogate"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return f"invalid {what}: {type(exc).__name__}"  # pragma: no cover - defensive


def _decode(
    decoder: msgspec.json.Decoder[Any], data: str | bytes | bytearray | memoryview
) -> Any:
    # The ProtocolError is raised outside the except clause so that it carries
    # no __context__: some exceptions (UnicodeDecodeError) hold a reference to
    # the whole payload.
    try:
        if not isinstance(data, str):
            # RFC 8259: JSON text is UTF-8. msgspec only checks the strings it
            # decodes, not those of ignored fields; check the whole frame.
            str(data, "utf-8")
        return decoder.decode(data)
    except _DECODE_ERRORS as exc:
        reason = _reason_for(exc, "message")
    raise ProtocolError(reason) from None


#: The strict decoder of :func:`decode_server_message`, for the router's hot
#: path on ``str`` (where it is the same decode): it raises msgspec's errors,
#: so on a failure call :func:`decode_server_message` for the ProtocolError.
server_text_decoder: Final = _server_decoder


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


INVALID_RAW_LIMIT: Final = 1024
"""How many characters of a rejected item :attr:`InvalidItem.raw` keeps.

Enough for a whole alert or reading of the usual shapes (200 to 300 bytes),
so that the item can be read and reported; a longer text is cut to this many
characters, ending in ``...``.
"""

_CUT_MARK: Final = "..."


class _AlertItems(msgspec.Struct, frozen=True, tag_field="type", tag="alerts"):
    alerts: list[msgspec.Raw]


class _TelemetryItems(msgspec.Struct, frozen=True):
    timestamp: str
    metrics: dict[str, msgspec.Raw]


class _TelemetryEnvelope(
    msgspec.Struct, frozen=True, tag_field="type", tag="telemetry"
):
    device_id: str
    data: _TelemetryItems


# The messages whose items can be salvaged, with each item left undecoded.
_salvage_decoder: Final = msgspec.json.Decoder(_AlertItems | _TelemetryEnvelope)
_alert_decoder: Final = msgspec.json.Decoder(Alert)
_value_decoder: Final = msgspec.json.Decoder()


def _raw_text(
    data: str | bytes | bytearray | memoryview | msgspec.Raw,
    scrub: Callable[[str], str] | None,
) -> str:
    # Bytes that are not UTF-8 and lone surrogates become backslash escapes,
    # so the text can always be encoded. Scrub before cutting, so that a
    # secret across the cut is hidden too.
    if isinstance(data, str):
        text = data.encode("utf-8", "backslashreplace").decode("utf-8")
    else:
        text = str(data, "utf-8", "backslashreplace")
    if scrub is not None:
        text = scrub(text)
    if len(text) > INVALID_RAW_LIMIT:
        text = text[: INVALID_RAW_LIMIT - len(_CUT_MARK)] + _CUT_MARK
    return text


def _salvage_alerts(
    items: _AlertItems, scrub: Callable[[str], str] | None
) -> tuple[AlertsMessage | None, tuple[InvalidItem, ...]]:
    valid: list[Alert] = []
    invalid: list[InvalidItem] = []
    # Each raw item is valid UTF-8 already: decode it as is.
    for index, raw in enumerate(items.alerts):
        try:
            valid.append(_alert_decoder.decode(raw))
        except _DECODE_ERRORS as exc:
            reason = _reason_for(exc, f"alert {index}")
            invalid.append(InvalidItem(reason, _raw_text(raw, scrub)))
    return (AlertsMessage(tuple(valid)) if valid else None), tuple(invalid)


def _salvage_telemetry(
    envelope: _TelemetryEnvelope, scrub: Callable[[str], str] | None
) -> tuple[TelemetryMessage, tuple[InvalidItem, ...]]:
    metrics: dict[str, float | int | bool] = {}
    other: dict[str, Any] = {}
    invalid: list[InvalidItem] = []
    for name, raw in envelope.data.metrics.items():
        try:
            value = _value_decoder.decode(raw)
        except _DECODE_ERRORS as exc:  # 1e999, an integer too long
            item = _raw_text(_encoder.encode({name: raw}), scrub)
            invalid.append(InvalidItem(_reason_for(exc, "metric"), item))
        else:
            if isinstance(value, int | float):  # bool is an int
                metrics[name] = value
            else:
                other[name] = value
    data = TelemetryData(envelope.data.timestamp, metrics)
    message = _SalvagedTelemetryMessage(envelope.device_id, data, other)
    return message, tuple(invalid)


def salvage_server_message(
    data: str | bytes | bytearray | memoryview,
    reason: str,
    *,
    scrub: Callable[[str], str] | None = None,
) -> tuple[AlertsMessage | TelemetryMessage | None, tuple[InvalidItem, ...]]:
    """Keep the valid part of a frame that :func:`decode_server_message` refused.

    Call it only after ``decode_server_message(data)`` raised
    ``ProtocolError(reason)``: valid frames never pay for it. What it keeps and
    what it rejects is described in the module documentation; in short, one bad
    alert costs only that alert, and no metric costs its reading:

    >>> frame = (
    ...     '{"type":"telemetry","device_id":"d1","data":{"timestamp":"ts",'
    ...     '"metrics":{"t":21.5,"fw":"1.4.2","x":1e999}}}'
    ... )
    >>> try:
    ...     message, rejected = decode_server_message(frame), ()
    ... except ProtocolError as exc:
    ...     message, rejected = salvage_server_message(frame, exc.reason)
    >>> message.telemetry.metrics, message.telemetry.other_metrics
    ({'t': 21.5}, {'fw': '1.4.2'})
    >>> rejected
    (InvalidItem(reason='invalid metric: Number out of range', raw='{"x":1e999}'),)

    Args:
        data: The refused frame, as it was passed to
            :func:`decode_server_message`.
        reason: The reason of the :exc:`~trio_ws_bus.ProtocolError` it raised:
            the reason of the :class:`InvalidItem` when a message without items
            (an ``error``, an unknown type) is rejected as a whole.
        scrub: Called on the raw text of each rejected item before it is cut to
            :data:`INVALID_RAW_LIMIT` characters, to hide secrets (the live
            token) that the server may have echoed.

    Returns:
        ``(message, invalid)``: the valid part (an :class:`AlertsMessage` with
        the valid alerts in their order, a :class:`TelemetryMessage` whose
        :attr:`~TelemetryMessage.telemetry` holds every decodable metric) or
        ``None`` when nothing is left, and one :class:`InvalidItem` per rejected
        item, in the order of the frame. Never raises for any ``data``.
    """
    try:
        envelope = _decode(_salvage_decoder, data)
    except ProtocolError as exc:
        # Unless the type is not one with items, this says why the frame could
        # not be split (a missing device_id), where ``reason`` may name an item.
        if exc.reason != "unknown message type":
            reason = exc.reason
        return None, (InvalidItem(reason, _raw_text(data, scrub)),)
    if isinstance(envelope, _AlertItems):
        return _salvage_alerts(envelope, scrub)
    return _salvage_telemetry(envelope, scrub)


def invalid_binary_frame(
    data: bytes, *, scrub: Callable[[str], str] | None = None
) -> InvalidItem:
    r"""Describe a binary frame, which the protocol never uses, as an InvalidItem.

    Args:
        data: The frame's payload.
        scrub: As for :func:`salvage_server_message`.

    Returns:
        ``InvalidItem("binary frame", raw)``, where ``raw`` is the payload
        decoded as UTF-8, each byte that is not UTF-8 written as ``\xNN``, cut
        to :data:`INVALID_RAW_LIMIT` characters.
    """
    return invalid_item("binary frame", data, scrub=scrub)


def invalid_item(
    reason: str, data: bytes | bytearray, *, scrub: Callable[[str], str] | None = None
) -> InvalidItem:
    r"""An InvalidItem for a message the wire refused (``reason``), raw as bytes.

    The raw text is ``data`` decoded as UTF-8 (each byte that is not UTF-8
    written as ``\xNN``), scrubbed, then cut to :data:`INVALID_RAW_LIMIT`
    characters.
    """
    return InvalidItem(reason, _raw_text(data, scrub))


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
