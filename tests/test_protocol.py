"""The wire codec: round trips, exact client JSON, and hostile input."""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, strategies as st

from trio_ws_bus._errors import ProtocolError
from trio_ws_bus._protocol import (
    INVALID_RAW_LIMIT,
    Alert,
    AlertsMessage,
    ErrorMessage,
    InvalidItem,
    ServerMessage,
    SubscribedMessage,
    SubscribeRequest,
    Telemetry,
    TelemetryData,
    TelemetryMessage,
    UnsubscribedMessage,
    decode_server_message,
    encode_client_message,
    invalid_binary_frame,
    salvage_server_message,
    subscription_key,
)
from trio_ws_bus.testing._codec import decode_client_message, encode_server_message

SERVER_MESSAGE_TYPES = (
    AlertsMessage,
    TelemetryMessage,
    SubscribedMessage,
    UnsubscribedMessage,
    ErrorMessage,
)
CANARY = "CANARY-7f3e9b"
MAX_REASON = 200

# ---------------------------------------------------------------------------
# Strategies

texts = st.text(max_size=20)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.none() | st.booleans() | st.integers() | finite_floats | texts
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4)
    ),
    max_leaves=12,
)
metric_values = st.booleans() | st.integers() | finite_floats
metrics = st.dictionaries(texts, metric_values, max_size=6)

alerts = st.builds(
    Alert,
    alert_id=st.integers(),
    tenant_id=texts,
    device_id=texts,
    alert_type=texts,
    severity=st.integers(),
    summary=texts,
    status=texts,
    created_at=texts,
    fingerprint=texts,
    details=st.none() | st.dictionaries(texts, json_values, max_size=4),
    closed_at=st.none() | texts,
)
alerts_messages = st.builds(AlertsMessage, st.lists(alerts, max_size=4).map(tuple))
telemetry_messages = st.builds(
    TelemetryMessage, texts, st.builds(TelemetryData, texts, metrics)
)
subscribed_messages = st.builds(SubscribedMessage, texts, st.none() | texts)
unsubscribed_messages = st.builds(UnsubscribedMessage, texts, st.none() | texts)
error_messages = st.builds(ErrorMessage, texts)
server_messages = st.one_of(
    alerts_messages,
    telemetry_messages,
    subscribed_messages,
    unsubscribed_messages,
    error_messages,
)
subscribe_requests = st.one_of(
    st.builds(
        SubscribeRequest,
        st.sampled_from(["subscribe", "unsubscribe"]),
        st.just("alerts"),
    ),
    st.builds(
        SubscribeRequest,
        st.sampled_from(["subscribe", "unsubscribe"]),
        st.just("device"),
        st.text(min_size=1, max_size=20),
    ),
)

# JSON objects that look like messages: known keys and tags, so the garbage
# reaches the validation of each message type, not only the tag check.
_KEYS = st.sampled_from(
    (
        *("type", "alerts", "device_id", "data", "timestamp", "metrics", "channel"),
        *("message", "alert_id", "severity", "details", "closed_at", "action"),
    )
)
_TAGS = st.sampled_from(
    ["alerts", "telemetry", "subscribed", "unsubscribed", "error", "device"]
)
message_like = st.recursive(
    json_scalars | _TAGS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_KEYS | texts, children, max_size=6)
    ),
    max_leaves=20,
)


def _strict_json(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


def _assert_message_or_protocol_error(data: str | bytes) -> None:
    error: ProtocolError | None = None
    try:
        message = decode_server_message(data)
    except ProtocolError as exc:
        error = exc
    else:
        assert isinstance(message, SERVER_MESSAGE_TYPES)
        return
    assert len(error.reason) <= MAX_REASON
    assert error.__context__ is None
    assert error.__cause__ is None


def _alert_dict(**overrides: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "alert_id": 1,
        "tenant_id": "t1",
        "device_id": "d1",
        "alert_type": "threshold",
        "severity": 3,
        "summary": "Temperature high",
        "status": "open",
        "created_at": "2024-05-01T12:00:00Z",
        "fingerprint": "abc123",
        "details": {"value": 41.5},
        "closed_at": None,
    }
    alert.update(overrides)
    return alert


def _alerts_json(**overrides: Any) -> str:
    return _strict_json({"type": "alerts", "alerts": [_alert_dict(**overrides)]})


def _telemetry_json(metrics_json: str = '{"t":1.5}', device_id: str = "d1") -> str:
    data = f'"data":{{"timestamp":"ts","metrics":{metrics_json}}}'
    return f'{{"type":"telemetry","device_id":"{device_id}",{data}}}'


def _details_json(details_json: str) -> str:
    """An alerts message whose first alert's ``details`` is the given raw JSON."""
    prefix = _alerts_json(details="@@")
    return prefix.replace('"@@"', details_json)


# ---------------------------------------------------------------------------
# Purity and shape


def test_protocol_module_is_pure() -> None:
    """_protocol imports neither trio nor anything doing I/O (sans-IO codec)."""
    source = Path(__file__).parent.parent / "trio_ws_bus" / "_protocol.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    allowed = {"__future__", "collections.abc", "math", "re", "typing", "msgspec"}
    assert imported <= allowed | {"._errors"}


def test_messages_are_frozen() -> None:
    """Decoded messages are immutable values."""
    message = decode_server_message('{"type":"error","message":"boom"}')
    with pytest.raises(AttributeError):
        message.message = "other"  # type: ignore[misc,union-attr]


# ---------------------------------------------------------------------------
# Round trips


@given(server_messages)
def test_server_message_round_trip(message: Any) -> None:
    """Every valid server message survives encode_server_message -> decode."""
    encoded = encode_server_message(message)
    assert decode_server_message(encoded) == message
    assert decode_server_message(encoded.encode()) == message


@given(telemetry_messages)
def test_telemetry_round_trip_keeps_metric_types(message: TelemetryMessage) -> None:
    """A metric's type survives the trip: bool stays bool, int stays int."""
    decoded = decode_server_message(encode_server_message(message))
    assert isinstance(decoded, TelemetryMessage)
    before = message.data.metrics
    after = decoded.data.metrics
    assert [type(v) for v in after.values()] == [type(v) for v in before.values()]


@given(subscribe_requests)
def test_client_message_round_trip(request: SubscribeRequest) -> None:
    """Every valid request survives encode_client_message -> decode_client_message."""
    assert decode_client_message(encode_client_message(request)) == request


def test_metric_types_on_the_wire() -> None:
    """JSON true stays bool, 7 stays int, 7.0 and 1e3 become float."""
    decoded = decode_server_message(
        _telemetry_json('{"a":true,"b":7,"c":7.0,"d":1e3,"e":-0.5,"f":false}')
    )
    assert isinstance(decoded, TelemetryMessage)
    got = decoded.data.metrics
    assert got == {"a": True, "b": 7, "c": 7.0, "d": 1000.0, "e": -0.5, "f": False}
    assert [type(v) for v in got.values()] == [bool, int, float, float, float, bool]


def test_telemetry_property() -> None:
    """TelemetryMessage.telemetry is the bus payload with the message's fields."""
    decoded = decode_server_message(_telemetry_json('{"t":1.5}', device_id="dev-9"))
    assert isinstance(decoded, TelemetryMessage)
    assert decoded.telemetry == Telemetry("dev-9", "ts", {"t": 1.5})


def test_alert_fields_decoded() -> None:
    """An alerts message decodes to a tuple of Alert with every seed field."""
    decoded = decode_server_message(_alerts_json(closed_at="2024-05-02T00:00:00Z"))
    assert decoded == AlertsMessage(
        (
            Alert(
                alert_id=1,
                tenant_id="t1",
                device_id="d1",
                alert_type="threshold",
                severity=3,
                summary="Temperature high",
                status="open",
                created_at="2024-05-01T12:00:00Z",
                fingerprint="abc123",
                details={"value": 41.5},
                closed_at="2024-05-02T00:00:00Z",
            ),
        )
    )


def test_null_details_and_closed_at() -> None:
    """Alert.details and Alert.closed_at may be null."""
    decoded = decode_server_message(_alerts_json(details=None, closed_at=None))
    assert isinstance(decoded, AlertsMessage)
    assert decoded.alerts[0].details is None
    assert decoded.alerts[0].closed_at is None


@pytest.mark.parametrize("field", ["details", "closed_at", "fingerprint"])
def test_alert_fields_are_required(field: str) -> None:
    """Every alert field is required on the wire, even the nullable ones."""
    alert = _alert_dict()
    del alert[field]
    with pytest.raises(ProtocolError, match=field):
        decode_server_message(_strict_json({"type": "alerts", "alerts": [alert]}))


@pytest.mark.parametrize("cls", [SubscribedMessage, UnsubscribedMessage])
def test_subscription_acks(cls: type[SubscribedMessage | UnsubscribedMessage]) -> None:
    """Acks decode with or without device_id (absent, null or a string)."""
    tag = "subscribed" if cls is SubscribedMessage else "unsubscribed"
    assert decode_server_message(f'{{"type":"{tag}","channel":"alerts"}}') == cls(
        "alerts"
    )
    assert decode_server_message(
        f'{{"type":"{tag}","channel":"alerts","device_id":null}}'
    ) == cls("alerts")
    assert decode_server_message(
        f'{{"device_id":"d1","channel":"device","type":"{tag}"}}'
    ) == cls("device", "d1")
    assert (
        encode_server_message(cls("alerts")) == f'{{"type":"{tag}","channel":"alerts"}}'
    )


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"error","message":"x"}',
        bytearray(b'{"type":"error","message":"x"}'),
        memoryview(b'{"type":"error","message":"x"}'),
        ' \n{"type":"error","message":"x"}\t ',
    ],
)
def test_accepted_input_types(data: str | bytes | bytearray | memoryview) -> None:
    """Text, bytes, bytearray and memoryview are accepted; outer whitespace too."""
    assert decode_server_message(data) == ErrorMessage("x")


def test_unknown_extra_fields_ignored() -> None:
    """Fields the protocol does not define are ignored, at every level."""
    alert = _alert_dict(future_field={"nested": [1, 2]})
    assert decode_server_message(
        _strict_json({"type": "alerts", "alerts": [alert], "page": 2})
    ) == decode_server_message(_alerts_json())
    data = (
        '{"type":"telemetry","seq":1,"device_id":"d1",'
        '"data":{"unit":"C","timestamp":"ts","metrics":{"t":1}}}'
    )
    assert decode_server_message(data) == TelemetryMessage(
        "d1", TelemetryData("ts", {"t": 1})
    )


def test_big_but_short_integers_accepted() -> None:
    """Integers beyond 64 bits but within the interpreter limit decode as int."""
    big = 10**30
    decoded = decode_server_message(_alerts_json(alert_id=big, details={"n": -big}))
    assert isinstance(decoded, AlertsMessage)
    assert decoded.alerts[0].alert_id == big
    assert decoded.alerts[0].details == {"n": -big}
    assert decode_server_message(encode_server_message(decoded)) == decoded


def test_float_underflow_is_zero() -> None:
    """1e-999 underflows to 0.0 (finite), which is accepted."""
    decoded = decode_server_message(_telemetry_json('{"t":1e-999}'))
    assert isinstance(decoded, TelemetryMessage)
    assert decoded.data.metrics == {"t": 0.0}


def test_valid_surrogate_pair_accepted() -> None:
    """A correctly escaped surrogate pair decodes to one astral character."""
    assert decode_server_message(
        '{"type":"error","message":"\\ud83d\\ude00"}'
    ) == ErrorMessage("\U0001f600")


# ---------------------------------------------------------------------------
# Client messages


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            SubscribeRequest.subscribe("alerts"),
            '{"action":"subscribe","type":"alerts"}',
        ),
        (
            SubscribeRequest.unsubscribe("alerts"),
            '{"action":"unsubscribe","type":"alerts"}',
        ),
        (
            SubscribeRequest.subscribe("device", "d1"),
            '{"action":"subscribe","type":"device","device_id":"d1"}',
        ),
        (
            SubscribeRequest.unsubscribe("device", "d1"),
            '{"action":"unsubscribe","type":"device","device_id":"d1"}',
        ),
    ],
)
def test_encode_client_message_exact_seed_json(
    request_: SubscribeRequest, expected: str
) -> None:
    """The client sends the seed's compact JSON, keys in order, device_id if set."""
    assert encode_client_message(request_) == expected


def test_subscribe_request_fields_and_key() -> None:
    """Named constructors set action; key is (kind, device_id) for dedup."""
    request = SubscribeRequest.subscribe("device", "d1")
    assert (request.action, request.kind, request.device_id) == (
        "subscribe",
        "device",
        "d1",
    )
    assert request.key == ("device", "d1")
    assert SubscribeRequest.unsubscribe("device", "d1").key == request.key
    assert SubscribeRequest.subscribe("alerts").key == ("alerts", None)
    assert len({request, SubscribeRequest.subscribe("device", "d1")}) == 1


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("subscribe", "device"), "non-empty device_id"),
        (("subscribe", "device", ""), "non-empty device_id"),
        (("subscribe", "device", 5), "non-empty device_id"),
        (("unsubscribe", "device", None), "non-empty device_id"),
        (("subscribe", "alerts", "d1"), "takes no device_id"),
        (("subscribe", "alerts", ""), "takes no device_id"),
        (("subscribe", "telemetry"), "kind must be"),
        (("subscribe", "ALERTS"), "kind must be"),
        (("sub", "alerts"), "action must be"),
        ((None, "alerts"), "action must be"),
    ],
)
def test_subscribe_request_validation(args: tuple[Any, ...], match: str) -> None:
    """Invalid action, kind or device_id raise ValueError at construction."""
    with pytest.raises(ValueError, match=match):
        SubscribeRequest(*args)


@pytest.mark.parametrize(
    ("kind", "device_id", "match"),
    [
        ("device", None, "non-empty device_id"),
        ("device", "", "non-empty device_id"),
        ("alerts", "d1", "takes no device_id"),
        ("telemetry", None, "kind must be"),
    ],
)
def test_subscription_key_validates_like_the_request(
    kind: Any, device_id: Any, match: str
) -> None:
    """subscription_key() refuses what SubscribeRequest refuses, with its reason."""
    with pytest.raises(ValueError, match=match):
        subscription_key(kind, device_id)
    with pytest.raises(ValueError, match=match):
        SubscribeRequest.subscribe(kind, device_id)


def test_subscription_key_is_the_request_key() -> None:
    """The key of a valid subscription is the one its request carries."""
    assert subscription_key("alerts", None) == ("alerts", None)
    assert subscription_key("device", "d1") == ("device", "d1")
    assert SubscribeRequest.subscribe("device", "d1").key == ("device", "d1")


def test_named_constructors_validate() -> None:
    """subscribe()/unsubscribe() validate like the plain constructor."""
    with pytest.raises(ValueError, match="non-empty device_id"):
        SubscribeRequest.subscribe("device")
    with pytest.raises(ValueError, match="takes no device_id"):
        SubscribeRequest.unsubscribe("alerts", "d1")


@pytest.mark.parametrize(
    "data",
    [
        '{"action":"subscribe","type":"device"}',
        '{"action":"subscribe","type":"alerts","device_id":"d1"}',
        '{"action":"maybe","type":"alerts"}',
        '{"action":"subscribe","type":"room"}',
        '{"action":"subscribe"}',
        '{"action":"subscribe","type":"device","device_id":7}',
        "[]",
        "{",
    ],
)
def test_decode_client_message_rejects(data: str) -> None:
    """Invalid client frames raise ProtocolError (for the reference server)."""
    with pytest.raises(ProtocolError):
        decode_client_message(data)


# ---------------------------------------------------------------------------
# Named traps: each raises ProtocolError, never anything else


def test_bad_json() -> None:
    """Malformed JSON, truncated input and trailing data are ProtocolError."""
    for data in [
        '{"type":"error",',
        "",
        "   ",
        "{'type':'error'}",
        '{"type":"error","message":"x"}}',
    ]:
        with pytest.raises(ProtocolError, match="malformed JSON"):
            decode_server_message(data)


@pytest.mark.parametrize("data", ["[]", '"alerts"', "1", "null", "true", "[{}]"])
def test_non_object(data: str) -> None:
    """A top level other than an object is ProtocolError."""
    with pytest.raises(ProtocolError, match="Expected `object`"):
        decode_server_message(data)


def test_missing_type() -> None:
    """An object without "type" is ProtocolError."""
    with pytest.raises(ProtocolError, match="missing required field `type`"):
        decode_server_message('{"message":"x"}')


@pytest.mark.parametrize("tag", ["telemetry_v2", "ALERTS", "", "device"])
def test_unknown_type(tag: str) -> None:
    """An unknown "type" is ProtocolError("unknown message type")."""
    with pytest.raises(ProtocolError, match=r"^unknown message type$"):
        decode_server_message(_strict_json({"type": tag, "message": "x"}))


@pytest.mark.parametrize("tag", [1, None, True, ["alerts"], {"a": 1}])
def test_non_string_type(tag: object) -> None:
    """A "type" that is not a string is ProtocolError."""
    with pytest.raises(ProtocolError, match=r"\$\.type"):
        decode_server_message(_strict_json({"type": tag, "message": "x"}))


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ('{"type":"error","message":1}', "$.message"),
        ('{"type":"subscribed","channel":null}', "$.channel"),
        ('{"type":"subscribed","channel":"c","device_id":3}', "$.device_id"),
        ('{"type":"alerts","alerts":{}}', "$.alerts"),
        ('{"type":"alerts","alerts":[1]}', "$.alerts[0]"),
        (_alerts_json(severity="3"), "$.alerts[0].severity"),
        (_alerts_json(severity=3.0), "$.alerts[0].severity"),
        (_alerts_json(summary=1), "$.alerts[0].summary"),
        (_alerts_json(details=[]), "$.alerts[0].details"),
        (_alerts_json(closed_at=0), "$.alerts[0].closed_at"),
        (_telemetry_json('{"t":"1.5"}'), "$.data.metrics"),
        (_telemetry_json('{"t":null}'), "$.data.metrics"),
        (_telemetry_json('{"t":[1]}'), "$.data.metrics"),
        (_telemetry_json("[]"), "$.data.metrics"),
        ('{"type":"telemetry","device_id":"d","data":null}', "$.data"),
    ],
)
def test_wrong_field_type(data: str, path: str) -> None:
    """A field of the wrong type is ProtocolError naming the field's path."""
    with pytest.raises(ProtocolError) as info:
        decode_server_message(data)
    assert path in info.value.reason


@pytest.mark.parametrize("field", ["alert_id", "severity"])
def test_bool_for_int(field: str) -> None:
    """JSON true/false is not accepted where an integer is expected."""
    with pytest.raises(ProtocolError, match="got `bool`"):
        decode_server_message(_alerts_json(**{field: True}))


@pytest.mark.parametrize(
    "data",
    [
        _telemetry_json('{"t":NaN}'),
        _telemetry_json('{"t":-NaN}'),
        _telemetry_json('{"t":nan}'),
        _details_json('{"x":NaN}'),
    ],
)
def test_nan(data: str) -> None:
    """NaN is not JSON: ProtocolError, in metrics and in details."""
    with pytest.raises(ProtocolError, match="malformed JSON"):
        decode_server_message(data)


@pytest.mark.parametrize(
    "data",
    [
        _telemetry_json('{"t":Infinity}'),
        _telemetry_json('{"t":-Infinity}'),
        _details_json('{"x":Infinity}'),
    ],
)
def test_infinity(data: str) -> None:
    """Infinity is not JSON: ProtocolError, in metrics and in details."""
    with pytest.raises(ProtocolError, match="malformed JSON"):
        decode_server_message(data)


@pytest.mark.parametrize(
    "data",
    [
        _telemetry_json('{"t":1e999}'),
        _telemetry_json('{"t":-1e999}'),
        _telemetry_json('{"t":' + "9" * 400 + ".5}"),
        _details_json('{"x":1e999}'),
        _details_json('{"x":[1.5,-1e400]}'),
    ],
)
def test_float_overflow(data: str) -> None:
    """A number that overflows a float (1e999 -> inf) is ProtocolError."""
    with pytest.raises(ProtocolError, match="out of range"):
        decode_server_message(data)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "data",
    [
        _details_json('{"x":' + _nested(100_000) + "}"),
        _details_json('{"x":' + '{"a":' * 100_000 + "1" + "}" * 100_000 + "}"),
        _details_json('{"x":' + "[" * 100_000 + "}"),
        _alerts_json().replace(
            '"alerts":', '"ignored":' + _nested(100_000) + ',"alerts":'
        ),
        '{"type":"error","message":"x","extra":' + "[" * 100_000,
    ],
    ids=["arrays", "objects", "unbalanced", "ignored-field", "ignored-unbalanced"],
)
def test_deep_nesting(data: str) -> None:
    """100,000 nested levels: ProtocolError, no RecursionError and no crash."""
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode_server_message(data)


def test_moderate_nesting_accepted() -> None:
    """Ordinary nesting depth (100 levels) inside details is fine."""
    decoded = decode_server_message(_details_json('{"x":' + _nested(100) + "}"))
    assert isinstance(decoded, AlertsMessage)


def _huge_int_literal(digits: int) -> str:
    # str(10**5000) itself trips the interpreter's limit, so build the text.
    return "1" + "0" * (digits - 1)


@pytest.mark.skipif(
    not hasattr(sys, "get_int_max_str_digits") or sys.get_int_max_str_digits() == 0,
    reason="this interpreter has no integer string conversion limit",
)
@pytest.mark.parametrize(
    "template",
    [
        _alerts_json(alert_id="@@").replace('"@@"', "{}"),
        _alerts_json(severity="@@").replace('"@@"', "-{}"),
        _telemetry_json('{"t":{}}'),
        _details_json('{"x":[{}]}'),
    ],
)
def test_huge_int(template: str) -> None:
    """A 5001-digit integer (10**5000) is ProtocolError, not ValueError."""
    data = template.replace("{}", _huge_int_literal(5001), 1)
    with pytest.raises(ProtocolError, match="out of range"):
        decode_server_message(data)


def test_huge_int_follows_interpreter_limit() -> None:
    """The integer length limit is sys.get_int_max_str_digits(), accepted up to it."""
    limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    if limit == 0:
        pytest.skip("this interpreter has no integer string conversion limit")
    literal = _huge_int_literal(limit)
    decoded = decode_server_message(_telemetry_json('{"t":' + literal + "}"))
    assert isinstance(decoded, TelemetryMessage)
    assert decoded.data.metrics["t"] == 10 ** (limit - 1)
    with pytest.raises(ProtocolError):
        decode_server_message(_telemetry_json('{"t":' + literal + "0}"))


def test_huge_int_in_ignored_field_is_skipped() -> None:
    """An ignored field is not converted, so its huge integer does no harm."""
    data = '{"type":"error","message":"x","n":' + _huge_int_literal(5001) + "}"
    assert decode_server_message(data) == ErrorMessage("x")


@pytest.mark.parametrize(
    "data",
    [
        '{"type":"error","message":"\\ud800"}',
        '{"type":"error","message":"a\\ud800b"}',
        '{"type":"error","message":"\\udc00"}',
        '{"type":"error","message":"\\ud800\\u0041"}',
        '{"type":"error","message":"\\udc00\\ud800"}',
        _telemetry_json('{"\\ud800":1}'),
        _details_json('{"x":"\\udfff"}'),
        '{"type":"error","message":"x","ignored":"\\ud800"}',
    ],
)
def test_lone_surrogate_escape(data: str) -> None:
    """An escaped lone surrogate anywhere in a string is ProtocolError."""
    with pytest.raises(ProtocolError):
        decode_server_message(data)
    with pytest.raises(ProtocolError):
        decode_server_message(data.encode())


def test_lone_surrogate_in_str_argument() -> None:
    """A str argument holding a raw lone surrogate is ProtocolError."""
    with pytest.raises(ProtocolError, match="lone surrogate"):
        decode_server_message('{"type":"error","message":"\ud800"}')


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"error","message":"\xff"}',
        b'{"type":"error","message":"\xc0\xaf"}',  # overlong "/"
        b'{"type":"error","message":"\xed\xa0\x80"}',  # UTF-8-encoded surrogate
        b'{"type":"error","message":"\xe2\x82"}',  # truncated sequence
        b'{"type":"error","message":"x","ignored":"\xff"}',
        b'{"type":"error","message":"x","\xfe":1}',
        b'\xef\xbb\xbf{"type":"error","message":"x"}',  # BOM: not JSON
    ],
)
def test_invalid_utf8_bytes(data: bytes) -> None:
    """Bytes that are not valid UTF-8 (anywhere in the frame) are ProtocolError."""
    with pytest.raises(ProtocolError):
        decode_server_message(data)
    with pytest.raises(ProtocolError):
        decode_server_message(memoryview(data))


# ---------------------------------------------------------------------------
# Error reasons


@pytest.mark.parametrize(
    "data",
    [
        _strict_json({"type": CANARY * 50}),
        _strict_json({"type": "error", "message": [CANARY] * 50}),
        _alerts_json(severity=CANARY * 50),
        _alerts_json(details=CANARY * 50),
        _telemetry_json('{"t":"%s"}' % (CANARY * 50)),
        '{"type":"error","message":"' + CANARY * 50 + '",',
        '{"type":"error","message":"' + CANARY * 50 + '\\ud800"}',
        '{"type":"error","message":"' + CANARY * 50 + '\ud800"}',
        ('{"type":"error","message":"' + CANARY * 50 + '"}').encode() + b"\xff",
        _details_json('{"' + CANARY + '":' + _nested(100_000) + "}"),
        _details_json('{"' + CANARY + '":1e999}'),
        '{"type":"error","message":"' + CANARY * 50 + '"} trailing',
    ],
)
def test_reason_is_short_and_never_quotes_the_payload(data: str | bytes) -> None:
    """A ProtocolError reason is short, carries no payload, and chains nothing."""
    with pytest.raises(ProtocolError) as info:
        decode_server_message(data)
    exc = info.value
    assert CANARY not in str(exc)
    assert CANARY not in exc.reason
    assert len(exc.reason) <= MAX_REASON
    assert exc.__cause__ is None
    assert exc.__context__ is None
    assert isinstance(exc, ValueError)


def test_long_path_reason_is_capped() -> None:
    """A reason with a very long path (deep details) is cut to 200 characters."""
    with pytest.raises(ProtocolError) as info:
        decode_server_message(
            _details_json('{"x":' + "[" * 900 + "1e999" + "]" * 900 + "}")
        )
    assert len(info.value.reason) == MAX_REASON
    assert info.value.reason.startswith("invalid message: Number out of range")
    assert info.value.reason.endswith("...")


def test_client_reason_never_quotes_the_payload() -> None:
    """decode_client_message reasons never carry the offending value either."""
    for data in [
        _strict_json({"action": CANARY, "type": "alerts"}),
        _strict_json({"action": "subscribe", "type": CANARY}),
        _strict_json({"action": "subscribe", "type": "alerts", "device_id": CANARY}),
    ]:
        with pytest.raises(ProtocolError) as info:
            decode_client_message(data)
        assert CANARY not in str(info.value)


# ---------------------------------------------------------------------------
# Garbage never raises anything but ProtocolError


@given(st.text())
def test_garbage_text(data: str) -> None:
    """Arbitrary text is a message or a ProtocolError, nothing else."""
    _assert_message_or_protocol_error(data)


# st.text() never yields surrogates; build strings that may hold them.
texts_with_surrogates = st.lists(
    st.characters() | st.characters(categories=["Cs"]), max_size=20
).map("".join)


@given(texts_with_surrogates)
def test_garbage_text_with_surrogates(data: str) -> None:
    """Arbitrary text, lone surrogates included, is a message or a ProtocolError."""
    _assert_message_or_protocol_error(data)


@given(texts_with_surrogates)
def test_surrogates_in_strings(text: str) -> None:
    """Escaped pairs combine, escaped lone surrogates and raw ones are rejected."""
    try:
        expected: str | None = text.encode("utf-16-le", "surrogatepass").decode(
            "utf-16-le"
        )
    except UnicodeDecodeError:
        expected = None
    escaped = json.dumps({"type": "error", "message": text})
    if expected is None:
        with pytest.raises(ProtocolError):
            decode_server_message(escaped)
    else:
        assert decode_server_message(escaped) == ErrorMessage(expected)
    raw = json.dumps({"type": "error", "message": text}, ensure_ascii=False)
    if any("\ud800" <= char <= "\udfff" for char in text):
        with pytest.raises(ProtocolError):
            decode_server_message(raw)
    else:
        assert decode_server_message(raw) == ErrorMessage(text)


@given(st.binary())
def test_garbage_bytes(data: bytes) -> None:
    """Arbitrary bytes are a message or a ProtocolError, nothing else."""
    _assert_message_or_protocol_error(data)


@given(json_values)
def test_garbage_json_values(value: Any) -> None:
    """Arbitrary JSON values are a message or a ProtocolError, nothing else."""
    _assert_message_or_protocol_error(_strict_json(value))


@given(message_like)
def test_garbage_message_like_objects(value: Any) -> None:
    """Message-shaped JSON with random keys and values never escapes otherwise."""
    _assert_message_or_protocol_error(_strict_json(value))
    _assert_message_or_protocol_error(
        _strict_json({"type": "alerts", "alerts": [value]})
    )


@given(st.text(), st.integers(min_value=0, max_value=200))
def test_garbage_truncated_messages(data: str, cut: int) -> None:
    """Valid frames cut short or with junk appended are ProtocolError."""
    frame = _alerts_json(summary=data)
    with pytest.raises(ProtocolError):
        decode_server_message(frame[: min(cut, len(frame) - 1)])
    with pytest.raises(ProtocolError):
        decode_server_message(frame + data + "x")


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _is_details(v: Any) -> bool:
    return v is None or isinstance(v, dict)


def _is_metrics(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(x, int | float) for x in v.values())


# (path to the field in the message's builtins form, "is this value valid?")
_ALERT_FIELDS: dict[str, Any] = {
    "alert_id": _is_int,
    "tenant_id": _is_str,
    "device_id": _is_str,
    "alert_type": _is_str,
    "severity": _is_int,
    "summary": _is_str,
    "status": _is_str,
    "created_at": _is_str,
    "fingerprint": _is_str,
    "details": _is_details,
    "closed_at": _is_opt_str,
}
_FIELDS: dict[type, list[tuple[tuple[Any, ...], Any]]] = {
    AlertsMessage: [
        (("alerts", 0, name), check) for name, check in _ALERT_FIELDS.items()
    ]
    + [(("alerts",), lambda v: isinstance(v, list) and not v)],
    TelemetryMessage: [
        (("device_id",), _is_str),
        (("data",), lambda v: False),
        (("data", "timestamp"), _is_str),
        (("data", "metrics"), _is_metrics),
    ],
    SubscribedMessage: [(("channel",), _is_str), (("device_id",), _is_opt_str)],
    UnsubscribedMessage: [(("channel",), _is_str), (("device_id",), _is_opt_str)],
    ErrorMessage: [(("message",), _is_str)],
}


@given(
    st.one_of(
        st.builds(AlertsMessage, st.lists(alerts, min_size=1, max_size=3).map(tuple)),
        telemetry_messages,
        subscribed_messages,
        unsubscribed_messages,
        error_messages,
    ),
    st.data(),
)
def test_one_field_of_the_wrong_type(message: Any, data: st.DataObject) -> None:
    """A valid message with one field replaced by a wrong-typed value is rejected."""
    path, is_valid = data.draw(st.sampled_from(_FIELDS[type(message)]), label="field")
    bad = data.draw(json_values.filter(lambda v: not is_valid(v)), label="value")
    raw = msgspec.to_builtins(message)
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises(ProtocolError):
        decode_server_message(_strict_json(raw))


# ---------------------------------------------------------------------------
# Encoding server messages


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_encode_server_message_refuses_non_finite(value: float) -> None:
    """A non-finite float cannot be encoded (msgspec would write null)."""
    with pytest.raises(ValueError, match="non-finite"):
        encode_server_message(TelemetryMessage("d", TelemetryData("ts", {"t": value})))
    alert = msgspec.structs.replace(
        decode_server_message(_alerts_json()).alerts[0],  # type: ignore[union-attr]
        details={"deep": [{"x": value}]},
    )
    with pytest.raises(ValueError, match="non-finite"):
        encode_server_message(AlertsMessage((alert,)))


def test_encode_server_message_tag_first() -> None:
    """The encoded server message starts with its type tag."""
    assert encode_server_message(ErrorMessage("boom")) == (
        '{"type":"error","message":"boom"}'
    )


# ---------------------------------------------------------------------------
# Per-item validation: salvage_server_message and invalid_binary_frame

CUT_MARK = "..."


def _decode_or_salvage(
    data: str | bytes, scrub: Any = None
) -> tuple[ServerMessage | None, tuple[InvalidItem, ...]]:
    """What the session does with each text frame."""
    try:
        return decode_server_message(data), ()
    except ProtocolError as exc:
        return salvage_server_message(data, exc.reason, scrub=scrub)


def _cut(text: str) -> str:
    """What InvalidItem.raw holds for ``text``: its start, up to the bound."""
    if len(text) <= INVALID_RAW_LIMIT:
        return text
    return text[: INVALID_RAW_LIMIT - len(CUT_MARK)] + CUT_MARK


def _batch(items: list[Any]) -> tuple[str, list[str]]:
    """An alerts frame and the JSON text of each of its items."""
    texts = [_strict_json(item) for item in items]
    return '{"type":"alerts","alerts":[' + ",".join(texts) + "]}", texts


def _assert_bounded(items: tuple[InvalidItem, ...]) -> None:
    for item in items:
        assert isinstance(item, InvalidItem)
        assert isinstance(item.raw, str)
        assert len(item.raw) <= INVALID_RAW_LIMIT
        item.raw.encode("utf-8")  # always text that can be sent or logged
        assert 0 < len(item.reason) <= MAX_REASON


@pytest.mark.parametrize(
    "drift",
    [
        {"severity": "critical"},
        {"summary": None},
        {"alert_id": "A-17"},
        {"created_at": 1714564800},
    ],
)
def test_one_drifted_alert_costs_only_itself(drift: dict[str, Any]) -> None:
    """One alert of ten that drifted is rejected alone; nine arrive in order."""
    items = [_alert_dict(alert_id=i) for i in range(10)]
    items[4].update(drift)
    frame, texts = _batch(items)
    message, invalid = _decode_or_salvage(frame)
    assert isinstance(message, AlertsMessage)
    assert [a.alert_id for a in message.alerts] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    (item,) = invalid
    assert item.raw == texts[4]
    field = next(iter(drift))
    assert item.reason.startswith("invalid alert 4: ")
    assert f"`$.{field}`" in item.reason


def test_no_valid_alert_left_is_no_message() -> None:
    """A batch where every alert is invalid salvages nothing, one item per alert."""
    frame, texts = _batch([1, None, _alert_dict(severity="high")])
    message, invalid = _decode_or_salvage(frame)
    assert message is None
    assert [item.raw for item in invalid] == texts
    assert [item.reason.split(":")[0] for item in invalid] == [
        "invalid alert 0",
        "invalid alert 1",
        "invalid alert 2",
    ]


def test_unknown_fields_count_nothing() -> None:
    """Unknown fields are ignored at every level, also when a batch is salvaged."""
    good = _alert_dict(alert_id=1, future={"x": [1]})
    frame, _ = _batch([good, _alert_dict(alert_id="A-2")])
    frame = frame.replace('{"type":"alerts"', '{"type":"alerts","page":2')
    message, invalid = _decode_or_salvage(frame)
    assert message == decode_server_message(_alerts_json(alert_id=1))
    assert len(invalid) == 1


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("1e999", "details"),
        (_huge_int_literal(5001), "alert_id"),
        ("[" + _huge_int_literal(5001) + "]", "details"),
    ],
)
def test_out_of_range_number_costs_only_its_alert(value: str, where: str) -> None:
    """1e999 or a 5001-digit integer in one alert rejects that alert only."""
    if where == "details":
        value = '{"x":' + value + "}"
    bad = _strict_json(_alert_dict(**{where: "@@"})).replace('"@@"', value)
    frame = (
        '{"type":"alerts","alerts":[' + bad + "," + _strict_json(_alert_dict()) + "]}"
    )
    message, invalid = _decode_or_salvage(frame)
    assert message == decode_server_message(_alerts_json())
    (item,) = invalid
    assert "out of range" in item.reason
    assert item.raw == _cut(bad)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (
            '{"type":"alerts","alerts":[{"x":NaN},'
            + _strict_json(_alert_dict())
            + "]}",
            "malformed JSON",
        ),
        (_details_json('{"x":' + _nested(100_000) + "}"), "nested too deeply"),
        (_alerts_json(summary="@@").replace('"@@"', '"\\ud800"'), "malformed JSON"),
        ('{"type":"alerts","alerts":[' + _strict_json(_alert_dict()), "malformed JSON"),
        ('{"type":"alerts","alerts":{}}', "$.alerts"),
        ('{"type":"alerts_v2","alerts":[]}', "unknown message type"),
        ("[]", "Expected `object`"),
        ('{"type":"error","message":1}', "$.message"),
        ('{"type":"subscribed","channel":null}', "$.channel"),
        (_telemetry_json('{"fw":"1.4.2"}').replace('"d1"', "null"), "$.device_id"),
        (
            _telemetry_json('{"fw":"1.4.2"}').replace('"device_id":"d1",', ""),
            "device_id",
        ),
        ('{"type":"telemetry","device_id":"d","data":null}', "$.data"),
        (_telemetry_json("[]"), "$.data.metrics"),
        (_telemetry_json('{"t":1}').replace('"ts"', "7"), "$.data.timestamp"),
    ],
)
def test_whole_frame_rejected(frame: str, reason: str) -> None:
    """What cannot be split into items is one InvalidItem with the frame's text."""
    message, invalid = _decode_or_salvage(frame)
    assert message is None
    (item,) = invalid
    assert reason in item.reason
    assert item.raw == _cut(frame)


def test_whole_frame_of_a_type_without_items_keeps_the_given_reason() -> None:
    """A message without items rejected as a whole carries the caller's reason."""
    frame = '{"type":"error","message":1}'
    assert salvage_server_message(frame, "why") == (None, (InvalidItem("why", frame),))


def test_raw_of_bad_utf8_and_lone_surrogates_is_text() -> None:
    """Bytes that are not UTF-8 and lone surrogates show as backslash escapes."""
    _, (item,) = _decode_or_salvage(b'{"type":"error","message":"\xff"}')
    assert item.raw == '{"type":"error","message":"\\xff"}'
    _, (item,) = _decode_or_salvage('{"type":"error","message":"\ud800"}')
    assert item.raw == '{"type":"error","message":"\\ud800"}'
    assert item.reason == "text contains a lone surrogate"


def test_bytes_and_memoryview_are_salvaged_like_text() -> None:
    """salvage_server_message takes every input decode_server_message takes."""
    frame, _ = _batch([_alert_dict(), 1])
    expected = _decode_or_salvage(frame)
    assert _decode_or_salvage(frame.encode()) == expected
    reason = "invalid message: Expected `object`, got `int` - at `$.alerts[1]`"
    assert salvage_server_message(memoryview(frame.encode()), reason) == expected


def test_metrics_of_other_types_stay_on_the_reading() -> None:
    """A string, null, array or object metric is kept in other_metrics."""
    frame = _telemetry_json(
        '{"t":21.5,"fw":"1.4.2","n":null,"up":true,"cfg":{"a":[1]},"l":[1,2],"c":7}'
    )
    message, invalid = _decode_or_salvage(frame)
    assert invalid == ()
    assert isinstance(message, TelemetryMessage)
    reading = message.telemetry
    assert reading.device_id == "d1"
    assert reading.timestamp == "ts"
    assert reading.metrics == {"t": 21.5, "up": True, "c": 7}
    assert [type(v) for v in reading.metrics.values()] == [float, bool, int]
    assert reading.other_metrics == {
        "fw": "1.4.2",
        "n": None,
        "cfg": {"a": [1]},
        "l": [1, 2],
    }
    assert message.data.metrics == reading.metrics


def test_out_of_range_metric_is_rejected_alone() -> None:
    """A metric that cannot be decoded is an InvalidItem; the reading stays."""
    frame = _telemetry_json('{"t":1,"big":1e999,"s":"x","\\"q":-1e999}')
    message, invalid = _decode_or_salvage(frame)
    assert isinstance(message, TelemetryMessage)
    assert message.telemetry.metrics == {"t": 1}
    assert message.telemetry.other_metrics == {"s": "x"}
    assert [item.raw for item in invalid] == ['{"big":1e999}', '{"\\"q":-1e999}']
    assert {item.reason for item in invalid} == {"invalid metric: Number out of range"}


def test_valid_reading_has_no_other_metrics() -> None:
    """A valid reading's other_metrics is empty, and the wire cannot fill it."""
    data = (
        '{"type":"telemetry","device_id":"d1","data":{"timestamp":"ts",'
        '"metrics":{"t":1},"other_metrics":{"x":"y"}},"other_metrics":{"x":"y"}}'
    )
    message = decode_server_message(data)
    assert isinstance(message, TelemetryMessage)
    assert message.telemetry == Telemetry("d1", "ts", {"t": 1})
    assert message.telemetry.other_metrics == {}
    salvaged, _ = _decode_or_salvage(data.replace('"t":1', '"t":1e999'))
    assert isinstance(salvaged, TelemetryMessage)
    assert salvaged.telemetry.other_metrics == {}


def test_reason_never_quotes_the_item() -> None:
    """Item reasons name the field, never the value or the metric's name."""
    frame, _ = _batch([_alert_dict(severity=CANARY)])
    _, (item,) = _decode_or_salvage(frame)
    assert CANARY not in item.reason
    assert CANARY in item.raw
    _, (item,) = _decode_or_salvage(_telemetry_json('{"' + CANARY + '":1e999}'))
    assert CANARY not in item.reason


def test_raw_is_cut_from_its_start() -> None:
    """A long item keeps its first INVALID_RAW_LIMIT characters, marked as cut."""
    frame, (text,) = _batch([_alert_dict(severity="x", summary="s" * 5000)])
    _, (item,) = _decode_or_salvage(frame)
    assert len(item.raw) == INVALID_RAW_LIMIT
    assert item.raw == text[: INVALID_RAW_LIMIT - len(CUT_MARK)] + CUT_MARK


def _scrub(text: str) -> str:
    return text.replace(TOKEN, "***")


TOKEN = "TOKEN-" + "k" * 40


@pytest.mark.parametrize("start", [0, INVALID_RAW_LIMIT - 10, INVALID_RAW_LIMIT + 5])
def test_scrub_runs_before_the_cut(start: int) -> None:
    """A token in a rejected item is hidden, even where the cut would split it."""
    padding = "p" * start
    frame, _ = _batch([_alert_dict(severity="x", summary=padding + TOKEN)])
    _, (item,) = _decode_or_salvage(frame, scrub=_scrub)
    assert "TOKEN" not in item.raw
    _, (item,) = _decode_or_salvage(frame[:-1] + padding + TOKEN, scrub=_scrub)
    assert "TOKEN" not in item.raw
    assert (
        "TOKEN"
        not in invalid_binary_frame((padding + TOKEN).encode(), scrub=_scrub).raw
    )


def test_binary_frame() -> None:
    """A binary frame is one InvalidItem: its payload as text, bytes escaped."""
    assert invalid_binary_frame(b'{"type":"error"}\xff') == InvalidItem(
        "binary frame", '{"type":"error"}\\xff'
    )
    assert invalid_binary_frame(b"") == InvalidItem("binary frame", "")
    long = invalid_binary_frame(b"\x00" * 10_000).raw
    assert long == ("\x00" * (INVALID_RAW_LIMIT - 3)) + CUT_MARK


@st.composite
def invalid_alert_dicts(draw: st.DrawFn) -> Any:
    """A JSON value that is no valid alert: not an object, a field missing or wrong."""
    how = draw(st.sampled_from(["not an object", "missing", "wrong type"]))
    if how == "not an object":
        return draw(json_values.filter(lambda v: not isinstance(v, dict)))
    alert = msgspec.to_builtins(draw(alerts))
    name = draw(st.sampled_from(sorted(_ALERT_FIELDS)))
    if how == "missing":
        del alert[name]
    else:
        alert[name] = draw(json_values.filter(lambda v: not _ALERT_FIELDS[name](v)))
    return alert


@given(
    st.lists(
        st.tuples(st.just(True), alerts)
        | st.tuples(st.just(False), invalid_alert_dicts()),
        min_size=1,
        max_size=6,
    )
)
def test_batch_salvages_exactly_the_valid_alerts(
    batch: list[tuple[bool, Any]],
) -> None:
    """Valid alerts come out in order; each invalid one is one InvalidItem, in order."""
    items = [msgspec.to_builtins(x) if ok else x for ok, x in batch]
    frame, texts = _batch(items)
    message, invalid = _decode_or_salvage(frame)
    valid = tuple(x for ok, x in batch if ok)
    if len(valid) == len(batch):
        assert message == AlertsMessage(valid)
        assert invalid == ()
        return
    assert message == (AlertsMessage(valid) if valid else None)
    bad = [i for i, (ok, _) in enumerate(batch) if not ok]
    assert [item.raw for item in invalid] == [_cut(texts[i]) for i in bad]
    assert [item.reason.split(":")[0] for item in invalid] == [
        f"invalid alert {i}" for i in bad
    ]
    _assert_bounded(invalid)


@given(st.dictionaries(texts, json_values, max_size=6))
def test_no_metric_is_lost(values: dict[str, Any]) -> None:
    """Every metric ends up in metrics (numbers, booleans) or in other_metrics."""
    message, invalid = _decode_or_salvage(_telemetry_json(_strict_json(values)))
    assert isinstance(message, TelemetryMessage)
    assert invalid == ()
    reading = message.telemetry
    assert {**reading.metrics, **reading.other_metrics} == values
    assert not reading.metrics.keys() & reading.other_metrics.keys()
    for name, value in reading.metrics.items():
        assert type(value) is type(values[name])
        assert type(value) in (int, float, bool)


def _assert_salvage_never_escapes(data: str | bytes) -> None:
    message, invalid = _decode_or_salvage(data)
    assert message is None or isinstance(message, SERVER_MESSAGE_TYPES)
    assert message is not None or invalid
    _assert_bounded(invalid)


@given(st.text(max_size=2 * INVALID_RAW_LIMIT) | texts_with_surrogates | st.binary())
def test_salvage_garbage(data: str | bytes) -> None:
    """Any input salvages to a message and/or bounded InvalidItems, nothing else."""
    _assert_salvage_never_escapes(data)


@given(
    st.lists(message_like, max_size=4),
    st.dictionaries(texts, message_like, max_size=4),
)
def test_salvage_garbage_items(items: list[Any], metrics: dict[str, Any]) -> None:
    """Any items in a batch, any metrics in a reading: never anything but a result."""
    _assert_salvage_never_escapes(_batch(items)[0])
    _assert_salvage_never_escapes(_telemetry_json(_strict_json(metrics)))


@given(
    st.text(max_size=3 * INVALID_RAW_LIMIT) | st.binary(max_size=3 * INVALID_RAW_LIMIT)
)
def test_raw_is_the_bounded_start_of_the_frame(data: str | bytes) -> None:
    """A frame rejected as a whole keeps the start of its text, up to the bound."""
    text = data if isinstance(data, str) else str(data, "utf-8", "backslashreplace")
    payload = data.encode() if isinstance(data, str) else data
    assert invalid_binary_frame(payload).raw == _cut(text)
    message, invalid = _decode_or_salvage(data)
    if message is None and not invalid[0].reason.startswith("invalid alert"):
        assert [item.raw for item in invalid] == [_cut(text)]
