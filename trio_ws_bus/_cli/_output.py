"""What the ``trio-ws-bus`` commands print: records, lines, summaries.

Pure functions from what the bus delivered to text or JSON lines, so they
are tested without I/O. :class:`Output` is the one place that writes, and
everything it writes is scrubbed of the live tokens first (a server may
echo one in an error message, a close reason or any field).
"""

from __future__ import annotations

import json
import re
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any, Final, TextIO

import attrs
import msgspec

from .._events import ConnectionEvent, ConnectionStatus
from .._protocol import Alert, InvalidItem, Telemetry
from .._secrets import Redactor
from .._statistics import ManagerStatistics
from .._topics import TELEMETRY_PREFIX

__all__ = [
    "EVENT_BUFFER",
    "Output",
    "Record",
    "Summary",
    "Tally",
    "format_json",
    "format_summary",
    "format_summary_json",
    "format_text",
    "printable",
    "records_from",
    "scrubbed",
    "use_color",
]

#: Width of the kind column of text lines ("telemetry" fits).
_KIND_WIDTH: Final = 9
#: Longest server-provided text shown on a text line.
_TEXT_LIMIT: Final = 200
#: More telemetry topics than this are summed up in one summary entry.
_SUMMARY_TOPICS: Final = 6

_CLOSE_CODE_NAMES: Final = {
    1000: "normal closure",
    1001: "going away",
    1006: "connection lost",
    1008: "policy violation",
    1009: "message too big",
    1011: "server error",
    1012: "service restart",
}

_RESET: Final = "\x1b[0m"
_BOLD: Final = "1"
_DIM: Final = "2"
_RED: Final = "31"
_GREEN: Final = "32"
_YELLOW: Final = "33"
_CYAN: Final = "36"
_STATUS_COLORS: Final = {
    "connecting": _CYAN,
    "connected": _GREEN,
    "disconnected": _YELLOW,
    "error": _RED,
}


@attrs.frozen
class Record:
    """One line of output: one thing that arrived on the bus, and when.

    Attributes:
        t: Seconds since the command started.
        kind: ``"alert"``, ``"telemetry"``, ``"connection"``, ``"error"`` or
            ``"invalid"``.
        topic: The bus topic it arrived on.
        fields: The payload's fields, as JSON-ready values.
    """

    t: float
    kind: str
    topic: str
    fields: Mapping[str, Any]


def records_from(topic: str, payload: object, t: float) -> list[Record]:
    """Turn one bus payload into output records (one per alert of a batch).

    Args:
        topic: The topic of the subscription that received it.
        payload: What that subscription of the manager's bus received.
        t: Seconds since the command started.
    """
    if isinstance(payload, Telemetry):
        fields: dict[str, Any] = {
            "device_id": payload.device_id,
            "timestamp": payload.timestamp,
            "metrics": dict(payload.metrics),
        }
        return [Record(t, "telemetry", topic, fields)]
    if isinstance(payload, ConnectionEvent):
        fields = {
            "status": payload.status.value,
            "code": payload.code,
            "reason": payload.reason,
            "retry_in": payload.retry_in,
            "retry_count": payload.retry_count,
            "message": payload.message,
        }
        return [Record(t, "connection", topic, fields)]
    if isinstance(payload, tuple):
        return [
            Record(t, "alert", topic, msgspec.structs.asdict(alert))
            for alert in payload
            if isinstance(alert, Alert)
        ]
    if isinstance(payload, InvalidItem):
        fields = {"reason": payload.reason, "raw": payload.raw}
        return [Record(t, "invalid", topic, fields)]
    return [Record(t, "error", topic, {"message": payload})]


def printable(text: object, limit: int = _TEXT_LIMIT) -> str:
    """Make untrusted text safe for a terminal line: escape, then truncate.

    Control characters (newlines, ANSI escapes, ...) are shown escaped, so a
    server cannot break a line or drive the terminal.
    """
    value = str(text)
    if not value.isprintable():
        value = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
    if len(value) > limit:
        value = value[: limit - 3] + "..."
    return value


def _metric(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.6g}"
        # Keep a float looking like one: 39.0, not 39.
        return text if any(c in text for c in ".en") else text + ".0"
    return printable(value, 40)


def _paint(text: str, *codes: str, color: bool) -> str:
    if not color or not codes:
        return text
    return f"\x1b[{';'.join(codes)}m{text}{_RESET}"


def _connection_details(fields: Mapping[str, Any]) -> str:
    if fields.get("retry_in") is not None:
        return f"retry {fields.get('retry_count')} in {fields['retry_in']:.2f} s"
    parts = []
    code, reason = fields.get("code"), fields.get("reason")
    if code is not None:
        name = _CLOSE_CODE_NAMES.get(code)
        parts.append(f"code {code}" + (f" ({name})" if name and not reason else ""))
    if reason:
        parts.append(printable(reason))
    if fields.get("message"):
        parts.append(printable(fields["message"]))
    return "  ".join(parts)


def format_text(record: Record, *, width: int = 8, color: bool = False) -> str:
    """Format a record as one aligned, human-readable line.

    Columns: seconds since start, kind, source (device id, ``server``), then
    the details. Connection status changes break the grid on purpose:
    ``*** CONNECTED`` in capitals (and in bold colour when ``color``).

    Args:
        record: The record to show.
        width: Width of the source column (the longest expected device id).
        color: Whether to add ANSI colours.
    """
    t = _paint(f"{record.t:8.2f}", _DIM, color=color)
    fields = record.fields
    if record.kind == "connection":
        status = str(fields["status"])
        line = f"*** {status.upper():<12} {_connection_details(fields)}".rstrip()
        return f"{t}  " + _paint(
            line, _BOLD, _STATUS_COLORS.get(status, _RED), color=color
        )
    if record.kind == "telemetry":
        kind, source = "telemetry", printable(fields["device_id"], 40)
        details = "  ".join(
            f"{printable(name, 40)}={_metric(value)}"
            for name, value in fields["metrics"].items()
        )
        kind_colors: tuple[str, ...] = ()
    elif record.kind == "alert":
        kind, source = "ALERT", printable(fields["device_id"], 40)
        details = (
            f"sev {fields['severity']}  {printable(fields['alert_type'], 40)}  "
            f"{printable(fields['summary'])}  #{fields['alert_id']}"
        )
        kind_colors = (_BOLD, _RED if fields["severity"] >= 4 else _YELLOW)
    elif record.kind == "invalid":
        kind, source = "INVALID", "server"
        details = (
            f"{printable(fields.get('reason', ''), 60)}  "
            f"{printable(fields.get('raw', ''))}"
        )
        kind_colors = (_YELLOW,)
    else:
        kind, source = "ERROR", "server"
        details = printable(fields.get("message", ""))
        kind_colors = (_BOLD, _RED)
    kind_column = _paint(f"{kind:<{_KIND_WIDTH}}", *kind_colors, color=color)
    return f"{t}  {kind_column}  {source:<{width}}  {details}".rstrip()


def format_json(record: Record) -> str:
    """Format a record as one JSON object: ``t``, ``kind``, ``topic``, fields."""
    return json.dumps(
        {"t": round(record.t, 3), "kind": record.kind, "topic": record.topic}
        | dict(record.fields)
    )


@attrs.frozen
class Summary:
    """What a command saw, printed when it ends.

    Attributes:
        elapsed: Seconds the command ran.
        messages: Bus messages received, by topic (an alerts batch is one).
        alerts: Alerts received (all batches together).
        attempts: Connection attempts the manager made.
        connections: Attempts that connected.
        reconnects: Connections after the first one.
        server_errors: ``error`` messages from the server.
        invalid_messages: Frames the manager dropped as invalid.
        dropped: Messages the bus dropped because this command read too slowly.
        status: The connection status at the end.
        simulated_drops: Connection drops the demo server simulated (demo only).
    """

    elapsed: float
    messages: Mapping[str, int]
    alerts: int
    attempts: int
    connections: int
    reconnects: int
    server_errors: int
    invalid_messages: int
    dropped: int
    status: str
    simulated_drops: int | None = None


def _natural_key(topic: str) -> tuple[object, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", topic))


def _topic_counts(messages: Mapping[str, int]) -> str:
    telemetry = {t: n for t, n in messages.items() if t.startswith(TELEMETRY_PREFIX)}
    other = sorted((t, n) for t, n in messages.items() if t not in telemetry)
    parts = [f"{printable(t, 60)} {n}" for t, n in other]
    if len(telemetry) > _SUMMARY_TOPICS:
        parts.append(
            f"{TELEMETRY_PREFIX}* {sum(telemetry.values())} "
            f"from {len(telemetry)} devices"
        )
    else:
        parts.extend(
            f"{printable(t, 60)} {telemetry[t]}"
            for t in sorted(telemetry, key=_natural_key)
        )
    return ", ".join(parts) or "none"


def plural(count: int, word: str) -> str:
    """Return ``"1 word"`` or ``"n words"``."""
    return f"{count} {word}" + ("" if count == 1 else "s")


def format_summary(summary: Summary) -> list[str]:
    """Format a summary as a few labelled text lines."""
    connection = (
        f"{plural(summary.connections, 'connection')} "
        f"({plural(summary.reconnects, 'reconnect')}) "
        f"in {plural(summary.attempts, 'attempt')}"
    )
    if summary.simulated_drops is not None:
        connection += f"; {plural(summary.simulated_drops, 'simulated drop')}"
    return [
        f"--- summary after {summary.elapsed:.1f} s ---",
        f"messages    {_topic_counts(summary.messages)}",
        f"alerts      {summary.alerts}",
        f"connection  {connection}; now {summary.status}",
        f"dropped     {summary.dropped} (bus, slow reader); "
        f"invalid {summary.invalid_messages}; server errors {summary.server_errors}",
    ]


def format_summary_json(summary: Summary) -> str:
    """Format a summary as one JSON object with ``"kind": "summary"``."""
    fields = attrs.asdict(summary)
    if fields["simulated_drops"] is None:
        del fields["simulated_drops"]
    fields["messages"] = dict(summary.messages)
    elapsed = round(fields.pop("elapsed"), 3)
    return json.dumps({"t": elapsed, "kind": "summary"} | fields)


def use_color(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether to colour output: only on a terminal, and never with ``NO_COLOR``."""
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def scrubbed(value: Any) -> Any:
    """``value`` with the live tokens scrubbed from every str in it, keys too."""
    if isinstance(value, str):
        return Redactor.scrub_all(value)
    if isinstance(value, Mapping):
        return {scrubbed(key): scrubbed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrubbed(item) for item in value]
    return value


@attrs.define(eq=False)
class Output:
    """Where a command writes: records and summary to ``out``, notes to ``err``.

    Every line is scrubbed of the live tokens and flushed at once, so a pipe
    reader sees it immediately. A record is scrubbed before it is formatted:
    a token cut short by the format would no longer be found.

    Attributes:
        out: Standard output.
        err: Standard error.
        prog: The command name that prefixes notes (``"trio-ws-bus listen"``).
        json: One JSON object per line on ``out``, and nothing else there.
        color: ANSI colours on text lines.
        width: Width of the source column of text lines.
    """

    out: TextIO
    err: TextIO
    prog: str = "trio-ws-bus"
    json: bool = False
    color: bool = False
    width: int = 8

    def line(self, text: str) -> None:
        """Write one line to ``out``."""
        print(Redactor.scrub_all(text), file=self.out, flush=True)

    def text(self, text: str) -> None:
        """Write a line meant for people (headers): skipped in JSON mode."""
        if not self.json:
            self.line(text)

    def note(self, text: str) -> None:
        """Write ``prog: text`` to ``err``."""
        print(Redactor.scrub_all(f"{self.prog}: {text}"), file=self.err, flush=True)

    def record(self, record: Record) -> None:
        """Write a record as a text or JSON line."""
        record = attrs.evolve(record, fields=scrubbed(record.fields))
        if self.json:
            self.line(format_json(record))
        else:
            self.line(format_text(record, width=self.width, color=self.color))

    def summary(self, summary: Summary) -> None:
        """Write the summary as text lines or one JSON line."""
        if self.json:
            self.line(format_summary_json(summary))
        else:
            for line in format_summary(summary):
                self.line(line)


# --- what the commands received ----------------------------------------------

#: Buffer of each of the command's subscriptions (one per topic): at 1000
#: lines/s, a terminal that stalls for a few seconds loses the oldest lines,
#: counted as dropped.
EVENT_BUFFER: Final = 4096


@attrs.define
class Tally:
    """Counts what a command received, for the summary and the give-up message.

    Attributes:
        messages: Bus messages by topic.
        alerts: Alerts, all batches together.
        errors: The last few error messages on the connection topic, oldest
            first.
    """

    messages: Counter[str] = attrs.field(factory=Counter)
    alerts: int = 0
    errors: deque[str] = attrs.field(factory=lambda: deque(maxlen=4))

    def add(self, topic: str, payload: object) -> None:
        """Count one bus payload, received on ``topic``."""
        self.messages[topic] += 1
        if isinstance(payload, tuple):
            self.alerts += len(payload)
        elif (
            isinstance(payload, ConnectionEvent)
            and payload.status is ConnectionStatus.ERROR
            and payload.message
        ):
            self.errors.append(payload.message)

    def summary(
        self,
        elapsed: float,
        manager: ManagerStatistics | None,
        dropped: int,
        *,
        simulated_drops: int | None = None,
    ) -> Summary:
        """Build the summary from this tally and the manager's statistics."""
        return Summary(
            elapsed=elapsed,
            messages=dict(self.messages),
            alerts=self.alerts,
            attempts=manager.attempts if manager else 0,
            connections=manager.connections if manager else 0,
            reconnects=manager.reconnects if manager else 0,
            server_errors=manager.server_errors if manager else 0,
            invalid_messages=manager.invalid_messages if manager else 0,
            dropped=dropped,
            status=manager.status.value if manager else "disconnected",
            simulated_drops=simulated_drops,
        )
