"""Decoding cost per message: msgspec Structs vs json.loads + attrs vs json.loads.

Run from the repository root::

    python bench/decode.py

or as part of the suite: ``python -m bench --only decode``.

Three decoders are timed on the same two frames (a ~200 B telemetry message and
an alerts message with 10 alerts, ~2.7 KB):

* ``msgspec``: :func:`trio_ws_bus._protocol.decode_server_message` (typed,
  validated, frozen Structs);
* ``json+attrs``: ``json.loads`` then frozen attrs classes with validators that
  check what the msgspec decoder checks on these messages (types, bool is not
  int, finite metrics, NaN/Infinity rejected);
* ``json.loads``: parsing alone, no validation and no objects: the floor of any
  pure-Python approach based on the standard library.

The decoders run in interleaved rounds (A B C A B C ...) so that drift in the
machine's speed (frequency scaling, noisy neighbours) hits all of them alike;
the table shows the median, min and max over rounds of the mean cost per call.

A second table measures per-item validation on the alerts frame, valid and with
one bad alert (``"severity": "critical"``):

* ``strict``: :func:`~trio_ws_bus._protocol.decode_server_message` alone;
* ``decode or salvage``: what the session does with every frame: the strict
  decoder, and :func:`~trio_ws_bus._protocol.salvage_server_message` only when
  it refuses the frame;
* ``per item always``: the salvage path for every frame (split the batch, then
  decode each alert), the design that was not chosen.

The goal: on the valid batch, ``decode or salvage`` costs at most 10% more than
``strict`` (the paired ratio of each round).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import msgspec

if importlib.util.find_spec("trio_ws_bus") is None:  # not installed: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trio_ws_bus._errors import ProtocolError
from trio_ws_bus._protocol import (
    AlertsMessage,
    TelemetryMessage,
    decode_server_message,
    salvage_server_message,
)

if __package__:  # python -m bench, or imported
    from ._common import Config, Result, Row, at_most, interleave, ratio
    from ._frames import alerts_frame, telemetry_frame
else:  # python bench/decode.py
    from _common import interleave  # type: ignore[no-redef]
    from _frames import alerts_frame, telemetry_frame  # type: ignore[no-redef]

NAME = "decode"

ROUNDS = 7
ITERATIONS = 20_000

# ---------------------------------------------------------------------------
# The frames (bench/_frames.py: the seed's shapes, shared by every benchmark)


def _telemetry_frame() -> str:
    return telemetry_frame()


def _alerts_frame(count: int = 10) -> str:
    return alerts_frame(count)


def _one_bad_alert_frame() -> str:
    # Alert 4 of 10 has severity 5: the first one to drift.
    return _alerts_frame().replace('"severity":5', '"severity":"critical"', 1)


VALID = "alerts x10"
ONE_BAD = "alerts x10, 1 bad"
STRICT = "strict"
SESSION = "decode or salvage"
MAX_SESSION_RATIO = 1.10


def decode_or_salvage(data: str) -> object:
    """What the session does with a text frame: strict first, per item if refused."""
    try:
        return decode_server_message(data)
    except ProtocolError as exc:
        return salvage_server_message(data, exc.reason)


def salvage_always(data: str) -> object:
    """The per-item path for every frame (split the batch, decode each alert)."""
    return salvage_server_message(data, "")


def _per_item_frames() -> dict[str, str]:
    return {VALID: _alerts_frame(), ONE_BAD: _one_bad_alert_frame()}


# Which decoders run on which frame: strict refuses the bad batch.
_PER_ITEM: dict[str, dict[str, Callable[[str], object]]] = {
    VALID: {
        STRICT: decode_server_message,
        SESSION: decode_or_salvage,
        "per item always": salvage_always,
    },
    ONE_BAD: {SESSION: decode_or_salvage, "per item always": salvage_always},
}


# ---------------------------------------------------------------------------
# The attrs equivalent


class _Invalid(ValueError):
    pass


def _strict_int(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if type(value) is not int:
        raise _Invalid(f"{attribute.name}: expected int")


_str = attrs.validators.instance_of(str)
_opt_str = attrs.validators.optional(_str)
_opt_dict = attrs.validators.optional(attrs.validators.instance_of(dict))


def _metrics(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if type(value) is not dict:
        raise _Invalid(f"{attribute.name}: expected object")
    for key, item in value.items():
        if type(key) is not str:
            raise _Invalid("metric name: expected str")
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                raise _Invalid("metric: not finite")
        elif kind is not int and kind is not bool:
            raise _Invalid("metric: expected number or bool")


@attrs.frozen
class AttrsAlert:
    alert_id: int = attrs.field(validator=_strict_int)
    tenant_id: str = attrs.field(validator=_str)
    device_id: str = attrs.field(validator=_str)
    alert_type: str = attrs.field(validator=_str)
    severity: int = attrs.field(validator=_strict_int)
    summary: str = attrs.field(validator=_str)
    status: str = attrs.field(validator=_str)
    created_at: str = attrs.field(validator=_str)
    fingerprint: str = attrs.field(validator=_str)
    details: dict[str, Any] | None = attrs.field(validator=_opt_dict)
    closed_at: str | None = attrs.field(validator=_opt_str)


_ALERT_FIELDS = tuple(field.name for field in attrs.fields(AttrsAlert))


@attrs.frozen
class AttrsAlertsMessage:
    alerts: tuple[AttrsAlert, ...]


@attrs.frozen
class AttrsTelemetryData:
    timestamp: str = attrs.field(validator=_str)
    metrics: dict[str, float | int | bool] = attrs.field(validator=_metrics)


@attrs.frozen
class AttrsTelemetryMessage:
    device_id: str = attrs.field(validator=_str)
    data: AttrsTelemetryData


def _reject_constant(name: str) -> None:
    raise _Invalid(f"{name} is not JSON")


def decode_with_attrs(data: str) -> AttrsAlertsMessage | AttrsTelemetryMessage:
    """json.loads, then validated frozen attrs objects (two message types)."""
    obj = json.loads(data, parse_constant=_reject_constant)
    if type(obj) is not dict:
        raise _Invalid("expected object")
    kind = obj.get("type")
    if kind == "telemetry":
        raw = obj["data"]
        if type(raw) is not dict:
            raise _Invalid("data: expected object")
        return AttrsTelemetryMessage(
            obj["device_id"], AttrsTelemetryData(raw["timestamp"], raw["metrics"])
        )
    if kind == "alerts":
        alerts = obj["alerts"]
        if type(alerts) is not list:
            raise _Invalid("alerts: expected array")
        return AttrsAlertsMessage(
            tuple(
                AttrsAlert(*[alert[name] for name in _ALERT_FIELDS]) for alert in alerts
            )
        )
    raise _Invalid("unknown message type")


# ---------------------------------------------------------------------------
# Timing


def _mean_ns(
    decode: Callable[[str], object], frame: str, iterations: int = ITERATIONS
) -> float:
    loop = range(iterations)
    start = time.perf_counter_ns()
    for _ in loop:
        decode(frame)
    return (time.perf_counter_ns() - start) / iterations


def _check(frame: str) -> None:
    # The three decoders must agree on what they decoded.
    ours = decode_server_message(frame)
    theirs = decode_with_attrs(frame)
    builtins = msgspec.to_builtins(ours)
    if isinstance(ours, AlertsMessage):
        assert isinstance(theirs, AttrsAlertsMessage)
        assert [attrs.asdict(a) for a in theirs.alerts] == list(builtins["alerts"])
    else:
        assert isinstance(ours, TelemetryMessage)
        assert isinstance(theirs, AttrsTelemetryMessage)
        assert attrs.asdict(theirs) == {k: builtins[k] for k in ("device_id", "data")}


def _check_per_item() -> None:
    # The session path keeps the nine valid alerts of the bad batch, and the
    # per-item path decodes the valid batch to the same message.
    message, invalid = salvage_server_message(_one_bad_alert_frame(), "")
    assert isinstance(message, AlertsMessage)
    assert (len(message.alerts), len(invalid)) == (9, 1)
    valid = _alerts_frame()
    assert salvage_always(valid) == (decode_server_message(valid), ())


def _samples(
    decoders: dict[str, Callable[[str], object]],
    frame: str,
    rounds: int,
    iterations: int,
) -> dict[str, list[float]]:
    return interleave(
        {
            label: functools.partial(_mean_ns, decode, frame, iterations)
            for label, decode in decoders.items()
        },
        rounds,
    )


def _print_rows(name: str, frame: str, samples: dict[str, list[float]]) -> None:
    for label, values in samples.items():
        print(
            f"{name:<19}{len(frame.encode()):>7}  {label:<18}"
            f"{statistics.median(values):>9.0f}{min(values):>9.0f}{max(values):>9.0f}"
        )


def main() -> None:
    frames = {"telemetry": _telemetry_frame(), "alerts x10": _alerts_frame()}
    decoders: dict[str, Callable[[str], object]] = {
        "msgspec": decode_server_message,
        "json+attrs": decode_with_attrs,
        "json.loads": json.loads,
    }
    for frame in frames.values():
        _check(frame)
    _check_per_item()

    print(
        f"Python {platform.python_version()}, msgspec {msgspec.__version__}, "
        f"attrs {attrs.__version__}; {ROUNDS} interleaved rounds x "
        f"{ITERATIONS:,} calls; ns per message"
    )
    header = f"{'message':<19}{'bytes':>7}  {'decoder':<18}"
    print(f"{header}{'median':>9}{'min':>9}{'max':>9}")
    for name, frame in frames.items():
        samples = _samples(decoders, frame, ROUNDS, ITERATIONS)
        _print_rows(name, frame, samples)
        ours = statistics.median(samples["msgspec"])
        print(
            f"{'':<28}ratios: json+attrs / msgspec = "
            f"{statistics.median(samples['json+attrs']) / ours:.1f}x, "
            f"json.loads / msgspec = "
            f"{statistics.median(samples['json.loads']) / ours:.1f}x"
        )
    per_item = {
        name: _samples(_PER_ITEM[name], frame, ROUNDS, ITERATIONS)
        for name, frame in _per_item_frames().items()
    }
    for name, frame in _per_item_frames().items():
        _print_rows(name, frame, per_item[name])
    valid = per_item[VALID]
    paired = statistics.median(
        s / t for s, t in zip(valid[SESSION], valid[STRICT], strict=True)
    )
    strict = statistics.median(valid[STRICT])
    print(
        f"{'':<28}ratios to strict on the valid batch: {SESSION} = "
        f"{paired:.2f}x (goal <= {MAX_SESSION_RATIO:.2f}), per item always = "
        f"{statistics.median(valid['per item always']) / strict:.2f}x, "
        f"{SESSION} on 1 bad = "
        f"{statistics.median(per_item[ONE_BAD][SESSION]) / strict:.2f}x"
    )


def run(config: Config) -> Result:
    """The same measurement for ``python -m bench``: ns per message."""
    iterations = config.pick(ITERATIONS, 5_000, 200)
    frames = {"telemetry": _telemetry_frame(), "alerts x10": _alerts_frame()}
    decoders: dict[str, Callable[[str], object]] = {
        "msgspec (trio_ws_bus)": decode_server_message,
        "json.loads + attrs": decode_with_attrs,
        "json.loads": json.loads,
    }
    for frame in frames.values():
        _check(frame)
    _check_per_item()
    result = Result(
        NAME,
        "Decoding one message (no I/O)",
        f"Mean of {iterations:,} calls per sample, decoders interleaved per "
        "round; ns per message. json.loads + attrs builds validated frozen "
        "attrs objects, as the wire messages would be without msgspec. "
        f"Per-item validation: {STRICT} is decode_server_message, {SESSION} "
        "is what the session does (salvage_server_message only for a refused "
        "frame), per item always decodes every alert on its own.",
        params={
            "iterations": iterations,
            "rounds": config.rounds,
            "frame_bytes": {k: len(f.encode()) for k, f in frames.items()},
        },
    )
    for name, frame in frames.items():
        samples = _samples(decoders, frame, config.rounds, iterations)
        for label, values in samples.items():
            result.rows.append(Row(name, label, "ns/msg", values))
    for name, frame in _per_item_frames().items():
        samples = _samples(_PER_ITEM[name], frame, config.rounds, iterations)
        for label, values in samples.items():
            result.rows.append(Row(name, label, "ns/msg", values))
    value, low, high = ratio(result.row(VALID, SESSION), result.row(VALID, STRICT))
    result.goals.append(
        at_most(
            f"valid 10-alert batch: {SESSION} / {STRICT}",
            value,
            MAX_SESSION_RATIO,
            f"paired per round, min {low:.2f}, max {high:.2f}",
        )
    )
    return result


if __name__ == "__main__":
    main()
