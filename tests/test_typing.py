"""Typed topics: mypy --strict accepts a correct app and flags wrong handlers.

One mypy run over small snippet files; each line that must fail ends with
``# error``, and mypy must report an error on exactly those lines.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

HEADER = """\
from trio_ws_bus import (
    ALERTS_TOPIC, CONNECTION_TOPIC, ERROR_TOPIC, INVALID_TOPIC, Alert,
    ConnectionEvent, InvalidItem, MessageBus, Telemetry, Topic, telemetry_topic,
)
"""

SNIPPETS = {
    "correct_app": """
ORDERS: Topic[int] = Topic("orders")

def on_event(event: ConnectionEvent) -> None: ...
def on_alerts(batch: tuple[Alert, ...]) -> None: ...
def on_error(message: str) -> None: ...
def on_invalid(item: InvalidItem) -> None: ...
def on_reading(reading: Telemetry) -> None: ...
def on_anything(payload: object) -> None: ...

async def app(bus: MessageBus, event: ConnectionEvent) -> None:
    bus.on(CONNECTION_TOPIC, on_event)
    bus.on(CONNECTION_TOPIC, lambda event: print(event.status))
    bus.on(ALERTS_TOPIC, on_alerts)
    bus.on(ERROR_TOPIC, on_error)
    bus.on(INVALID_TOPIC, on_invalid)
    bus.on(telemetry_topic("pump-1"), on_reading)
    bus.on(ORDERS, on_anything)
    bus.on("telemetry:*", on_reading)
    bus.on("anything", on_error)
    bus.publish(CONNECTION_TOPIC, event)
    bus.publish(ALERTS_TOPIC, ())
    bus.publish(ORDERS, 3)
    bus.publish("plain", object())
    async with bus.subscribe(telemetry_topic("pump-1")) as readings:
        reading: Telemetry = await readings.receive()
        batch: tuple[Telemetry, ...] = await readings.receive_batch()
        async for many in readings.batches():
            first: Telemetry = many[0]
    async with bus.subscribe("telemetry:*") as untyped:
        anything: int = await untyped.receive()
    name: str = ALERTS_TOPIC
""",
    "wrong_handlers": """
ORDERS: Topic[int] = Topic("orders")

def on_event(event: ConnectionEvent) -> None: ...
def on_error(message: str) -> None: ...

def app(bus: MessageBus) -> None:
    bus.on(CONNECTION_TOPIC, on_error)  # error
    bus.on(ERROR_TOPIC, on_event)  # error
    bus.on(telemetry_topic("pump-1"), on_event)  # error
    bus.on(ORDERS, on_error)  # error
    bus.on(CONNECTION_TOPIC, lambda event: event.no_such_field)  # error
""",
    "wrong_payloads": """
ORDERS: Topic[int] = Topic("orders")

async def app(bus: MessageBus) -> None:
    bus.publish(CONNECTION_TOPIC, "connected")  # error
    bus.publish(ALERTS_TOPIC, ["not", "a", "tuple"])  # error
    bus.publish(ORDERS, "3")  # error
    async with bus.subscribe(ALERTS_TOPIC) as alerts:
        wrong: Telemetry = await alerts.receive()  # error
        batch: tuple[Telemetry, ...] = await alerts.receive_batch()  # error
""",
}

_ERROR_LINE = re.compile(r"^(\w+)\.py:(\d+): error:", re.MULTILINE)


def test_mypy_checks_handlers_and_payloads_of_typed_topics(tmp_path: Path) -> None:
    """A correct app passes mypy --strict; each wrong line is an error, no other."""
    expected: set[tuple[str, int]] = set()
    for name, body in SNIPPETS.items():
        source = HEADER + body
        (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
        for number, line in enumerate(source.splitlines(), start=1):
            if line.endswith("# error"):
                expected.add((name, number))
    assert len(expected) == 10
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            *(f"{name}.py" for name in SNIPPETS),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    reported = {(name, int(line)) for name, line in _ERROR_LINE.findall(result.stdout)}
    assert reported == expected, result.stdout + result.stderr
    # docs/howto/typed_topics.rst quotes mypy's words for a wrong payload.
    publish_errors = re.findall(
        rf"^wrong_payloads\.py:\d+: error: {re.escape(WRONG_PAYLOAD)}$",
        result.stdout,
        re.MULTILINE,
    )
    assert len(publish_errors) == 3, result.stdout
    howto = Path(__file__).resolve().parent.parent / "docs" / "howto"
    assert WRONG_PAYLOAD in (howto / "typed_topics.rst").read_text(encoding="utf-8")


#: What mypy says for ``bus.publish(ORDERS, "3")`` (the docs explain why).
WRONG_PAYLOAD = (
    'Cannot infer value of type parameter "_P" of "publish" of "MessageBus"  [misc]'
)
