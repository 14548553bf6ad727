"""The trio-ws-bus command, its synthetic feed and the examples.

Formatting and argument checks run in-process; demo and listen scenarios run
in-process on the reference server's in-memory transport under a mock clock;
the end-to-end cases (demo output, Ctrl-C, listen against serve, examples)
run real subprocesses over loopback, each under a ``fail_after`` cap.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from helpers import MEMORY_URL, NO_RETRY, ROOT, TIMESTAMP

from trio_ws_bus import (
    ALERTS_TOPIC,
    CONNECTION_TOPIC,
    ERROR_TOPIC,
    INVALID_TOPIC,
    Alert,
    ConnectionEvent,
    ConnectionStatus,
    InvalidItem,
    MessageBus,
    Telemetry,
    decode_server_message,
    open_websocket_manager,
)
from trio_ws_bus._cli import main
from trio_ws_bus._cli._commands import (
    DemoSettings,
    ListenSettings,
    ServeSettings,
    Stop,
    UsageError,
    give_up_message,
    run_demo,
    run_listen,
    run_serve,
)
from trio_ws_bus._cli._main import _listen_settings, _serve_secret, build_parser
from trio_ws_bus._cli._output import (
    Output,
    Summary,
    format_json,
    format_summary,
    format_summary_json,
    format_text,
    printable,
    records_from,
    use_color,
)
from trio_ws_bus._cli._tokens import (
    CommandToken,
    EnvToken,
    FileToken,
    TokenSourceError,
    token_provider,
)
from trio_ws_bus._secrets import Redactor, token_forms
from trio_ws_bus.testing import make_alert, open_reference_server
from trio_ws_bus.testing._feed import FeedModel, FeedSchedule, device_ids

COMMAND = [sys.executable, "-m", "trio_ws_bus"]


def telemetry(device_id: str = "device-1", **metrics: Any) -> Telemetry:
    return Telemetry(device_id, TIMESTAMP, metrics or {"rpm": 1200})


def alert(alert_id: int = 1, **fields: Any) -> Alert:
    wire = json.dumps({"type": "alerts", "alerts": [make_alert(alert_id, **fields)]})
    message = decode_server_message(wire)
    return message.alerts[0]  # type: ignore[union-attr]


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def statuses(lines: Sequence[dict[str, Any]]) -> list[str]:
    return [line["status"] for line in lines if line["kind"] == "connection"]


def one_line(text: str) -> str:
    assert text.endswith("\n")
    assert text.count("\n") == 1, text
    return text.strip()


# --- formatting ----------------------------------------------------------------


def test_text_lines_align_their_columns() -> None:
    """Telemetry, alert and error lines put source and details in the same columns."""
    records = [
        *records_from(
            "telemetry:d-1", telemetry("d-1", rpm=1200, temperature=21.5), 1.5
        ),
        *records_from(
            ALERTS_TOPIC, (alert(7, device_id="pump-12", severity=4),), 12.25
        ),
        *records_from(ERROR_TOPIC, "quota exceeded", 123.0),
        *records_from(INVALID_TOPIC, InvalidItem("bad alert", '{"x":1}'), 124.0),
    ]
    lines = [format_text(record, width=8) for record in records]
    assert lines[0] == "    1.50  telemetry  d-1       rpm=1200  temperature=21.5"
    assert lines[1].startswith("   12.25  ALERT      pump-12   sev 4  NO_HEARTBEAT  ")
    assert lines[1].endswith("  #7")
    assert lines[2] == "  123.00  ERROR      server    quota exceeded"
    assert lines[3] == '  124.00  INVALID    server    bad alert  {"x":1}'
    # time (8) | 2 | kind (9) | 2 | source (width 8) | 2 | details
    assert {(line[8:10], line[19:21], line[29:31]) for line in lines} == {("  ",) * 3}
    assert [line[21:29].rstrip() for line in lines] == [
        "d-1",
        "pump-12",
        "server",
        "server",
    ]
    assert all(line[31] != " " for line in lines)


def test_connection_lines_stand_out() -> None:
    """A status change is a capitalised *** line; in colour, bold and coloured."""
    event = ConnectionEvent(ConnectionStatus.DISCONNECTED, retry_in=0.5, retry_count=1)
    (record,) = records_from(CONNECTION_TOPIC, event, 4.0)
    assert format_text(record) == "    4.00  *** DISCONNECTED retry 1 in 0.50 s"
    lost_event = ConnectionEvent(ConnectionStatus.DISCONNECTED, code=1006)
    (lost,) = records_from(CONNECTION_TOPIC, lost_event, 4)
    assert format_text(lost).endswith("*** DISCONNECTED code 1006 (connection lost)")
    connected_event = ConnectionEvent(ConnectionStatus.CONNECTED)
    (connected,) = records_from(CONNECTION_TOPIC, connected_event, 4.5)
    assert format_text(connected) == "    4.50  *** CONNECTED"
    colored = format_text(connected, color=True)
    assert "\x1b[1;32m*** CONNECTED" in colored
    (reading,) = records_from("telemetry:device-1", telemetry(), 5.0)
    assert "\x1b[1" not in format_text(reading, color=True)
    assert "***" not in format_text(reading)


def test_json_lines_are_valid_objects_with_t_kind_and_topic() -> None:
    """Every kind formats as one JSON object per line; an alert batch gives one each."""
    payloads: list[tuple[str, object]] = [
        ("telemetry:d-1", telemetry("d-1", rpm=3, on=True, temp=1.5)),
        (ALERTS_TOPIC, (alert(1), alert(2, details=None))),
        (ERROR_TOPIC, "bad request"),
        (
            CONNECTION_TOPIC,
            ConnectionEvent(ConnectionStatus.ERROR, message="No auth token"),
        ),
        (INVALID_TOPIC, InvalidItem("binary frame", "\\x00")),
    ]
    records = [r for t, p in payloads for r in records_from(t, p, 1.23456)]
    lines = [format_json(record) for record in records]
    assert all("\n" not in line for line in lines)
    objects = [json.loads(line) for line in lines]
    assert [(o["kind"], o["topic"]) for o in objects] == [
        ("telemetry", "telemetry:d-1"),
        ("alert", "alerts"),
        ("alert", "alerts"),
        ("error", "error"),
        ("connection", "connection"),
        ("invalid", "invalid"),
    ]
    assert objects[0]["metrics"] == {"rpm": 3, "on": True, "temp": 1.5}
    assert objects[0]["t"] == 1.235
    assert objects[1]["alert_id"] == 1
    assert objects[2]["details"] is None
    assert objects[3]["message"] == "bad request"
    assert objects[4]["status"] == "error"
    assert objects[4]["message"] == "No auth token"
    assert objects[4]["code"] is None
    assert (objects[5]["reason"], objects[5]["raw"]) == ("binary frame", "\\x00")


def test_server_text_cannot_break_lines_or_drive_the_terminal() -> None:
    """Control characters in server text are escaped and long text is cut."""
    (record,) = records_from(ERROR_TOPIC, "boom\n\x1b[2J" + "x" * 500, 0.0)
    line = format_text(record)
    assert "\n" not in line
    assert "\x1b" not in line
    assert "boom\\n\\x1b[2J" in line
    assert line.endswith("...")
    assert printable("ok") == "ok"


@pytest.mark.parametrize(
    ("tty", "no_color", "expected"),
    [(True, None, True), (True, "1", False), (False, None, False), (True, "", True)],
)
def test_colour_only_on_a_terminal_without_no_color(
    tty: bool, no_color: str | None, expected: bool
) -> None:
    """Colour needs a TTY, and a non-empty NO_COLOR turns it off."""

    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    environ = {} if no_color is None else {"NO_COLOR": no_color}
    assert use_color(Stream(), environ) is expected


def test_summary_lines_and_json() -> None:
    """The summary shows messages by topic, reconnects, drops; many devices sum up."""
    summary = Summary(
        elapsed=15.04,
        messages={
            "alerts": 4,
            "connection": 9,
            "telemetry:d-10": 2,
            "telemetry:d-9": 3,
        },
        alerts=6,
        attempts=3,
        connections=2,
        reconnects=1,
        server_errors=0,
        invalid_messages=0,
        dropped=5,
        status="disconnected",
        simulated_drops=1,
    )
    lines = format_summary(summary)
    assert lines[0] == "--- summary after 15.0 s ---"
    assert lines[1] == (
        "messages    alerts 4, connection 9, telemetry:d-9 3, telemetry:d-10 2"
    )
    assert "2 connections (1 reconnect) in 3 attempts; 1 simulated drop" in lines[3]
    assert lines[4].startswith("dropped     5 ")
    data = json.loads(format_summary_json(summary))
    assert data["kind"] == "summary"
    assert data["t"] == 15.04
    assert (data["reconnects"], data["dropped"], data["alerts"]) == (1, 5, 6)
    many = {f"telemetry:d-{i}": 10 for i in range(20)}
    crowded = format_summary(
        Summary(15.0, many, 0, 1, 1, 0, 0, 0, 0, "connected", None)
    )
    assert crowded[1] == "messages    telemetry:* 200 from 20 devices"
    assert "simulated_drops" not in json.loads(
        format_summary_json(Summary(1.0, {}, 0, 1, 1, 0, 0, 0, 0, "connected"))
    )


def test_give_up_message_names_the_last_real_error() -> None:
    """The give-up line names the failure that kept happening, not itself twice."""
    reason = "Max reconnection attempts reached"
    errors = ["Connection failed: refused", "Handshake rejected with HTTP 401", reason]
    assert give_up_message(reason, errors) == (
        f"gave up: {reason} (last error: Handshake rejected with HTTP 401)"
    )
    assert give_up_message("No auth token", ["No auth token"]) == (
        "gave up: No auth token"
    )
    # A fatal failure's give-up message describes it: the status is said once.
    fatal = "Connection rejected with HTTP 401 (not retried)"
    assert give_up_message(fatal, ["Handshake rejected with HTTP 401", fatal]) == (
        f"gave up: {fatal}"
    )


def test_output_writes_records_summary_and_notes_where_they_belong() -> None:
    """JSON mode keeps stdout pure JSON (headers skipped); notes go to stderr."""
    out, err = io.StringIO(), io.StringIO()
    output = Output(out, err, prog="trio-ws-bus listen", json=True)
    output.text("a header for people")
    (record,) = records_from("telemetry:device-1", telemetry(), 0.5)
    output.record(record)
    output.note("gave up: reasons")
    assert [line["kind"] for line in json_lines(out.getvalue())] == ["telemetry"]
    assert err.getvalue() == "trio-ws-bus listen: gave up: reasons\n"


# --- arguments, help and exit statuses -----------------------------------------


@pytest.mark.parametrize(
    ("command", "own", "others"),
    [
        ([], "each command's --help says which", "never connecting"),
        (["demo"], "the demo ran to the end", "--duration ran out"),
        (["listen"], "--duration ran out without ever connecting", "demo ran"),
        (["serve"], "secret source", "gave up"),
    ],
)
def test_every_command_has_help_with_its_own_exit_statuses(
    command: list[str], own: str, others: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help lists the command's own exit statuses only, and needs no prior reading."""
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "exit status:" in text
    for status in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n  {status}" in text
    assert own in " ".join(text.split())
    assert others not in " ".join(text.split())
    assert "browser" not in text


@pytest.mark.parametrize(
    "argv",
    [
        ["listen", "ftp://example.com", "--token-env", "T", "--alerts"],
        ["listen", "http://x/api/v2/ws?token=abc", "--token-env", "T", "--alerts"],
        ["listen", "http://127.0.0.1:9", "--token-file", "{missing}", "--alerts"],
        ["listen", "http://127.0.0.1:9", "--token-command", "{failing}", "--alerts"],
        ["listen", "http://127.0.0.1:9", "--token-command", "{absent}", "--alerts"],
        ["listen", "http://127.0.0.1:9", "--token-env", "UNSET_VARIABLE_X", "--alerts"],
        ["listen", "http://127.0.0.1:9", "--alerts"],
        ["demo", "--devices", "0"],
        ["demo", "--devices", "101"],
        ["demo", "--duration", "-1"],
        ["serve", "--port", "70000"],
        ["serve", "--port", "http"],
        ["serve", "--host", "0.0.0.0"],
        ["serve", "--secret-env", "UNSET_VARIABLE_X"],
        ["serve", "--secret-file", "{missing}"],
        ["serve", "--secret-env", "S", "--secret-file", "{missing}"],
        ["dmeo"],
    ],
)
def test_bad_input_is_status_2_and_one_line(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input exits with 2 and one line on stderr, nothing on stdout."""
    failing = shlex.join([sys.executable, "-c", "import sys; sys.exit(3)"])
    values = {
        "{missing}": str(tmp_path / "missing-token"),
        "{failing}": failing,
        "{absent}": str(tmp_path / "no-such-command"),
    }
    argv = [values.get(arg, arg) for arg in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    message = one_line(captured.err)
    assert "error: " in message
    assert message.endswith(" (see --help)")
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["listen", "not-a-url", "--token-env", "T"],
            "bad URL: url scheme must be http, https, ws or wss, got ''; a valid "
            "one looks like https://ops.example.com or ws://127.0.0.1:8765",
        ),
        (
            ["listen", "http://127.0.0.1:9", "--token-env", "UNSET_VARIABLE_X"],
            "environment variable UNSET_VARIABLE_X is not set",
        ),
        (
            ["listen", "http://127.0.0.1:9", "--token-command", " "],
            "--token-command is empty: give a command that prints the token, e.g. "
            "--token-command 'cat /run/secrets/token'",
        ),
        (
            ["serve", "--port", "http"],
            "argument --port: invalid port 'http': must be an integer from 0 to 65535",
        ),
    ],
)
def test_usage_errors_say_what_is_valid_and_end_alike(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each usage error says what a valid value looks like, then "(see --help)"."""
    assert main(argv) == 2
    prog = f"trio-ws-bus {argv[0]}"
    assert capsys.readouterr().err == f"{prog}: error: {message} (see --help)\n"


def test_listen_names_the_os_error_when_it_gives_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens on the port: the last line says "Connection refused"."""
    monkeypatch.setenv("T", "tok")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: refused
        port = sock.getsockname()[1]
        argv = ["listen", f"http://127.0.0.1:{port}", "--token-env", "T"]
        assert main([*argv, "--max-retries", "0", "--no-proxy"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "trio-ws-bus listen: gave up: Max reconnection attempts reached (last "
        "error: Connection failed: Connection refused (all attempts to connect "
        f"to 127.0.0.1:{port} failed))"
    )


def test_token_command_failure_message_says_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A failing token command is named by its exit status, never by its output."""
    command = shlex.join(
        [sys.executable, "-c", "import sys; print('SECRET'); sys.exit(3)"]
    )
    argv = ["listen", "http://127.0.0.1:9", "--token-command", command, "--alerts"]
    assert main(argv) == 2
    message = one_line(capsys.readouterr().err)
    assert message.endswith("error: token command exited with status 3 (see --help)")


@pytest.mark.parametrize("content", ["tok-a\ntok-b\n", "  \n", "tok-a\r\ntok-b"])
def test_a_token_file_of_several_lines_or_none_is_a_usage_error(
    content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 with one line that names the file and never shows what it holds."""
    path = tmp_path / "token"
    path.write_text(content)
    argv = ["listen", "http://127.0.0.1:9", "--token-file", str(path), "--alerts"]
    assert main(argv) == 2
    message = one_line(capsys.readouterr().err)
    assert f"error: token file {path} " in message
    assert message.endswith(
        ("has more than one line (see --help)", "is empty (see --help)")
    )
    assert "tok-" not in message


def test_serve_reads_a_stable_secret_from_env_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--secret-env and --secret-file give the secret; two lines are refused."""
    path = tmp_path / "secret"
    path.write_text(" s3cret-from-file \n")
    monkeypatch.setenv("SERVE_SECRET", "s3cret-from-env")

    def secret(*options: str) -> str | None:
        return _serve_secret(build_parser().parse_args(["serve", *options]))

    assert secret() is None
    assert secret("--secret-env", "SERVE_SECRET") == "s3cret-from-env"
    assert secret("--secret-file", str(path)) == "s3cret-from-file"
    path.write_text("s3cret\nmore\n")
    with pytest.raises(
        UsageError, match=f"^secret file {path} has more than one line$"
    ):
        secret("--secret-file", str(path))


@pytest.mark.parametrize(
    "extra", [["--token", "SECRET"], ["--token=SECRET"], ["--bogus=SECRET", "SECRET"]]
)
def test_unknown_arguments_are_refused_without_echoing_values(
    extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A token passed on the command line is refused and never echoed back."""
    argv = ["listen", "http://127.0.0.1:9", "--token-env", "T", "--alerts", *extra]
    assert main(argv) == 2
    message = one_line(capsys.readouterr().err)
    assert "SECRET" not in message
    if extra[0].startswith("--token"):
        assert "--token-env, --token-file or --token-command" in message
    else:
        assert "unrecognized arguments: --bogus, 1 other argument" in message


@pytest.mark.parametrize(
    ("options", "alerts", "devices"),
    [
        ([], True, ()),
        (["--device", "b", "--device", "a", "--device", "b"], False, ("b", "a")),
        (["--alerts", "--device", "a"], True, ("a",)),
    ],
)
def test_listen_subscribes_to_alerts_unless_only_devices_are_given(
    options: list[str], alerts: bool, devices: tuple[str, ...]
) -> None:
    """Plain listen follows alerts; --device alone follows only those devices."""
    argv = ["listen", "https://ops.example.com", "--token-env", "T", *options]
    settings = _listen_settings(build_parser().parse_args(argv))
    assert (settings.alerts, settings.devices) == (alerts, devices)
    assert settings.token_source == EnvToken("T")


def test_demo_without_pyjwt_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without PyJWT, demo exits 1 with the pip command that fixes it."""
    monkeypatch.setitem(sys.modules, "jwt", None)
    for module in ("trio_ws_bus.testing._feed", "trio_ws_bus.testing._server"):
        monkeypatch.delitem(sys.modules, module)
    assert main(["demo", "--duration", "1"]) == 1
    message = one_line(capsys.readouterr().err)
    assert message.endswith("needs PyJWT: pip install 'trio-ws-bus[testing]'")


def test_serve_on_a_busy_port_is_status_1_and_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A port already in use is a runtime failure: status 1, one line."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port), "--duration", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"error: cannot listen on 127.0.0.1 port {port}" in one_line(captured.err)


# --- token sources ---------------------------------------------------------------


async def test_env_and_file_sources_strip_and_explain_failures(
    tmp_path: Path,
) -> None:
    """Env and file tokens are stripped; unset, empty or unreadable say why."""
    assert await EnvToken("T", environ={"T": " tok \n"}).fetch() == "tok"
    with pytest.raises(TokenSourceError, match=r"^environment variable T is not set$"):
        await EnvToken("T", environ={}).fetch()
    with pytest.raises(TokenSourceError, match=r"^environment variable T is empty$"):
        await EnvToken("T", environ={"T": "  "}).fetch()
    path = tmp_path / "token"
    path.write_text("\n  file-token \n")
    assert await FileToken(str(path)).fetch() == "file-token"
    path.write_text(" \n")
    with pytest.raises(TokenSourceError, match=r"is empty$"):
        await FileToken(str(path)).fetch()
    with pytest.raises(TokenSourceError, match=r"No such file or directory$"):
        await FileToken(str(tmp_path / "gone")).fetch()


async def test_token_command_runs_on_every_fetch(tmp_path: Path) -> None:
    """The command runs again for each token and its output is stripped."""
    counter = tmp_path / "count"
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        "n = int(p.read_text()) + 1 if p.exists() else 1; "
        "p.write_text(str(n)); print(f'  token-{n}  ')"
    )
    source = CommandToken((sys.executable, "-c", script, str(counter)))
    with trio.fail_after(30):
        assert [await source.fetch(), await source.fetch()] == ["token-1", "token-2"]


@pytest.mark.parametrize(
    ("code", "limit", "message"),
    [
        ("import sys; print('SECRET'); sys.exit(4)", 5.0, "exited with status 4$"),
        ("print('   ')", 5.0, "printed no token$"),
        ("import time; time.sleep(30)", 0.3, "timed out after 0.3 s$"),
    ],
)
async def test_token_command_failures_are_explained_without_output(
    code: str, limit: float, message: str
) -> None:
    """Non-zero exit, no output and a hang are failures; stdout is never shown."""
    source = CommandToken((sys.executable, "-c", code), timeout=limit)
    with trio.fail_after(30), pytest.raises(TokenSourceError, match=message) as info:
        await source.fetch()
    assert "SECRET" not in str(info.value)


async def test_token_provider_uses_the_checked_token_once_then_refetches() -> None:
    """The startup token serves the first attempt, then each call fetches anew.

    The redactor always hides the token handed out last.
    """
    environ = {"T": "tok-second"}
    notes: list[str] = []
    redactor = Redactor()
    provide = token_provider(
        EnvToken("T", environ=environ), "tok-first", notes.append, redactor
    )
    assert await provide() == "tok-first"
    assert redactor("tok-first tok-second") == "*** tok-second"
    assert await provide() == "tok-second"
    assert redactor("tok-first tok-second") == "tok-first ***"
    del environ["T"]
    with pytest.raises(TokenSourceError):
        await provide()
    assert notes == ["token: environment variable T is not set"]


# --- the synthetic feed ----------------------------------------------------------


def test_feed_model_is_reproducible_and_speaks_the_protocol() -> None:
    """The same seed gives the same readings and alerts, all valid on the wire."""
    from datetime import datetime, timezone

    moment = datetime(2024, 5, 1, tzinfo=timezone.utc)

    def run(seed: int) -> list[tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]]:
        model = FeedModel(device_ids(3), seed=seed)
        return [(model.readings(), model.next_alert(moment)) for _ in range(50)]

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    for readings, wire_alert in first:
        assert [device for device, _ in readings] == [
            "device-1",
            "device-2",
            "device-3",
        ]
        for _, metrics in readings:
            assert set(metrics) == {"temperature", "rpm", "battery"}
            assert 15 <= metrics["battery"] <= 100
        message = json.dumps({"type": "alerts", "alerts": [wire_alert]})
        (decoded,) = decode_server_message(message).alerts  # type: ignore[union-attr]
        assert decoded.device_id in ("device-1", "device-2", "device-3")
        assert decoded.created_at == "2024-05-01T00:00:00.000Z"
    ids = [wire_alert["alert_id"] for _, wire_alert in first]
    assert ids == list(range(1, 51))


def test_feed_settings_are_validated() -> None:
    """Device counts stay within 1..100 and schedule durations must be positive."""
    assert device_ids(2) == ("device-1", "device-2")
    for count in (0, 101):
        with pytest.raises(ValueError, match="between 1 and 100"):
            device_ids(count)
    with pytest.raises(ValueError, match="drop_at"):
        FeedSchedule(drop_at=0)
    with pytest.raises(ValueError, match="telemetry_interval"):
        FeedSchedule(telemetry_interval=float("inf"))


# --- demo and listen, in memory under a mock clock -------------------------------


async def test_demo_shows_the_drop_reconnect_and_summary(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The demo drops at 40 % of its duration, reconnects 0.5 s later, sums up."""
    out, err = io.StringIO(), io.StringIO()
    settings = DemoSettings(duration=10.0, devices=3, json=True)
    status = await run_demo(
        settings, Output(out, err, json=True), Stop(), in_memory=True
    )
    assert (status, err.getvalue()) == (0, "")
    lines = json_lines(out.getvalue())
    events = [line for line in lines if line["kind"] == "connection"]
    assert [(e["t"], e["status"], e["code"], e["retry_in"]) for e in events] == [
        (0.0, "connecting", None, None),
        (0.0, "connected", None, None),
        (4.0, "disconnected", 1006, None),
        (4.0, "disconnected", None, 0.5),
        (4.5, "connecting", None, None),
        (4.5, "connected", None, None),
        (10.0, "disconnected", 1000, None),
    ]
    devices = {line["device_id"] for line in lines if line["kind"] == "telemetry"}
    assert devices == {"device-1", "device-2", "device-3"}
    alerts = [line for line in lines if line["kind"] == "alert"]
    assert alerts
    assert alerts[0]["t"] == pytest.approx(0.6)
    summary = lines[-1]
    assert summary["kind"] == "summary"
    assert (summary["reconnects"], summary["simulated_drops"]) == (1, 1)
    assert summary["messages"]["telemetry:device-1"] == sum(
        1 for line in lines if line.get("topic") == "telemetry:device-1"
    )
    assert summary["dropped"] == 0
    assert summary["t"] == 10.0


async def test_demo_text_output_is_readable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The default output: a header, aligned event lines, then the summary."""
    out = io.StringIO()
    settings = DemoSettings(duration=3.0, devices=12)
    assert (
        await run_demo(
            settings, Output(out, io.StringIO(), width=9), Stop(), in_memory=True
        )
        == 0
    )
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("trio-ws-bus demo: reference server at ")
    assert lines[1] == "    0.00  *** CONNECTING"
    assert any(
        line.startswith("    0.25  telemetry  device-12  temperature=")
        for line in lines
    )
    assert "    1.20  *** DISCONNECTED code 1006 (connection lost)" in lines
    assert lines[-5] == "--- summary after 3.0 s ---"
    # Telemetry rounds at 0.25, 0.75, 1.75, 2.25, 2.75 s; the 1.25 s one is
    # lost while the demo reconnects.
    assert re.fullmatch(
        r"messages    alerts \d, connection 7, telemetry:\* 60 from 12 devices",
        lines[-4],
    )


async def test_stopping_the_demo_closes_with_1000_and_returns_130(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stop request (Ctrl-C) closes the connection with 1000 and still sums up."""
    out, stop = io.StringIO(), Stop()
    result: list[int] = []
    settings = DemoSettings(duration=15.0, json=True)

    async def demo() -> None:
        result.append(
            await run_demo(
                settings, Output(out, io.StringIO(), json=True), stop, in_memory=True
            )
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(demo)
        await trio.sleep(2.0)
        stop.request(signal.SIGINT)
    assert result == [130]
    lines = json_lines(out.getvalue())
    assert lines[-2]["kind"] == "connection"
    assert (lines[-2]["t"], lines[-2]["code"]) == (2.0, 1000)
    assert lines[-2]["reason"] == "Client disconnect"
    assert lines[-1]["kind"] == "summary"
    assert lines[-1]["t"] == 2.0


async def test_a_demo_that_never_connects_exits_1(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No connection in the whole demo is a failure (status 1), as for listen."""
    from trio_ws_bus.testing import ReferenceServer

    monkeypatch.setattr(ReferenceServer, "issue_token", lambda self: "")
    out, err = io.StringIO(), io.StringIO()
    settings = DemoSettings(duration=4.0)
    status = await run_demo(settings, Output(out, err), Stop(), in_memory=True)
    assert status == 1
    assert "--- summary after 4.0 s ---" in out.getvalue()
    assert err.getvalue().splitlines()[-1] == (
        "trio-ws-bus: gave up: never connected in 4 s"
    )


def listen_settings(token: str, **options: Any) -> ListenSettings:
    options.setdefault("alerts", True)
    return ListenSettings(
        url=MEMORY_URL,
        token_source=options.pop("source", None) or EnvToken("T", environ={"T": token}),
        json=True,
        **options,
    )


async def test_listen_gives_up_with_status_1_and_one_line(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Retries used up: exit status 1 and one line naming the failure."""
    out, err = io.StringIO(), io.StringIO()
    async with open_reference_server(listen=False) as server:
        server.reject_next(10, 503)
        settings = listen_settings(server.issue_token(), max_retries=2)
        status = await run_listen(
            settings,
            Output(out, err, prog="trio-ws-bus listen", json=True),
            Stop(),
            transport=server.transport,
        )
    assert status == 1
    assert err.getvalue() == (
        "trio-ws-bus listen: gave up: Max reconnection attempts reached "
        "(last error: Handshake rejected with HTTP 503)\n"
    )
    lines = json_lines(out.getvalue())
    attempts = [line["t"] for line in lines if line.get("status") == "connecting"]
    assert attempts == [0.0, 1.0, 3.0]
    assert lines[-1]["kind"] == "summary"
    assert lines[-1]["status"] == "error"


@pytest.mark.parametrize(("rejected", "status"), [(0, 0), (100, 1)])
async def test_listen_duration_passes_only_after_a_connection(
    autojump_clock: trio.testing.MockClock, rejected: int, status: int
) -> None:
    """--duration ending without ever connecting is status 1, like giving up."""
    out, err = io.StringIO(), io.StringIO()
    async with open_reference_server(listen=False) as server:
        if rejected:
            server.reject_next(rejected, 503)
        settings = listen_settings(server.issue_token(), duration=20.0)
        output = Output(out, err, json=True)
        assert await run_listen(
            settings, output, Stop(), transport=server.transport
        ) == (status)
    if status:
        assert one_line(err.getvalue()) == (
            "trio-ws-bus: gave up: never connected in 20 s "
            "(last error: Handshake rejected with HTTP 503)"
        )
    else:
        assert err.getvalue() == ""
    assert json_lines(out.getvalue())[-1]["connections"] == 1 - status


#: A token that every escaping shows differently, echoed back by the server.
ECHOED = 'tok-9c\\"é/+ %'


@pytest.mark.parametrize("as_json", [True, False])
async def test_listen_never_prints_a_token_the_server_echoes(
    autojump_clock: trio.testing.MockClock, as_json: bool
) -> None:
    """Errors, close reasons and fields quoting the token print *** instead, whole."""
    out, err = io.StringIO(), io.StringIO()
    async with open_reference_server(listen=False) as server:
        server.accept_token(ECHOED)
        settings = listen_settings(ECHOED, duration=30.0)

        async def echo() -> None:
            await server.wait_subscribed("alerts")
            await server.send_error(f"invalid token {ECHOED}")
            await server.send_error("x" * 190 + ECHOED)  # across the cut
            await server.publish_alerts([make_alert(1, summary=f"for {ECHOED}")])
            await server.close_connections(4001, f"token {ECHOED} expired")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            output = Output(out, err, json=as_json)
            assert (
                await run_listen(settings, output, Stop(), transport=server.transport)
                == 0
            )
    shown = out.getvalue() + err.getvalue()
    assert [form for form in token_forms(ECHOED) if form in shown] == []
    assert "tok-9c" not in shown
    assert shown.count("***") >= 4
    assert "invalid token ***" in shown


@pytest.mark.parametrize("as_json", [True, False])
async def test_listen_prints_what_the_server_sent_invalid(
    autojump_clock: trio.testing.MockClock, as_json: bool
) -> None:
    """Items on INVALID_TOPIC are printed with their reason, never with the token."""
    out, err = io.StringIO(), io.StringIO()
    async with open_reference_server(listen=False) as server:
        token = server.issue_token()
        settings = listen_settings(token, duration=30.0)

        async def send_invalid() -> None:
            await server.wait_subscribed("alerts")
            await server.send_raw("not json at all")
            bad_alert = {**make_alert(2), "severity": f"high {token}"}
            await server.send_raw(
                json.dumps({"type": "alerts", "alerts": [make_alert(1), bad_alert]})
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_invalid)
            output = Output(out, err, json=as_json)
            assert (
                await run_listen(settings, output, Stop(), transport=server.transport)
                == 0
            )
    shown = out.getvalue() + err.getvalue()
    assert [form for form in token_forms(token) if form in shown] == []
    if as_json:
        lines = json_lines(out.getvalue())
        invalid = [line for line in lines if line["kind"] == "invalid"]
        assert [(line["topic"], line["raw"][:15]) for line in invalid] == [
            ("invalid", "not json at all"),
            ("invalid", '{"alert_id": 2,'),
        ]
        assert "high ***" in invalid[1]["raw"]
        assert [line["alert_id"] for line in lines if line["kind"] == "alert"] == [1]
        (summary,) = [line for line in lines if line["kind"] == "summary"]
        assert summary["messages"]["invalid"] == 2
    else:
        shown_lines = out.getvalue().splitlines()
        texts = [line for line in shown_lines if "INVALID" in line]
        assert len(texts) == 2
        assert "server    " in texts[0]
        assert "not json at all" in texts[0]
        assert "high ***" in texts[1]


async def test_serve_with_a_stable_secret_issues_tokens_that_survive_a_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A token from one serve run opens a server restarted with the same secret."""
    out, err = io.StringIO(), io.StringIO()
    secret = "stable-s3cret-of-32-bytes-or-more"
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "token"
        settings = ServeSettings(port=0, duration=1.0, secret=secret, token_file=path)
        assert await run_serve(settings, Output(out, err), Stop()) == 0
        token = path.read_text().strip()
    assert (err.getvalue(), secret in out.getvalue()) == ("", False)
    listened = io.StringIO()
    async with open_reference_server(listen=False, secret=secret) as restarted:
        status = await run_listen(
            listen_settings(token, duration=5.0),
            Output(listened, io.StringIO(), json=True),
            Stop(),
            transport=restarted.transport,
        )
    assert status == 0
    assert "connected" in statuses(json_lines(listened.getvalue()))


async def test_serve_says_where_the_token_is_and_never_prints_it(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The token goes to a 0600 file; the output and its listen line hold none."""
    out, err = io.StringIO(), io.StringIO()
    path = tmp_path / "token"
    settings = ServeSettings(port=0, duration=1.0, token_file=path)
    assert await run_serve(settings, Output(out, err), Stop()) == 0
    token = path.read_text().strip()
    assert token.count(".") == 2  # a JWT
    assert path.stat().st_mode & 0o777 == 0o600
    lines = out.getvalue().splitlines()
    assert token not in out.getvalue() + err.getvalue()
    assert lines[0].startswith("http://127.0.0.1:")
    assert lines[1] == f"token     in {path} (HS256, valid 24 h)"
    assert lines[3] == (
        f"listen    trio-ws-bus listen {lines[0]} --token-file {path} "
        "--alerts --device device-1"
    )
    assert lines[4].startswith(f"endpoint  ws://{lines[0][7:]}/api/v2/ws  (token: ")


async def test_serve_token_file_is_private_and_gone_after_exit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Without --token-file the token is in a temporary file, removed at exit."""
    out = io.StringIO()
    settings = ServeSettings(port=0, duration=1.0, print_token=True)
    assert await run_serve(settings, Output(out, io.StringIO()), Stop()) == 0
    lines = out.getvalue().splitlines()
    path = lines[1].split()[2]
    assert path.endswith("/token")
    # Checked in this thread: a worker thread would let the mock clock jump.
    assert not any(map(os.path.exists, [path, os.path.dirname(path)]))
    assert lines[2].startswith("token     ey")  # --print-token: the JWT itself


async def test_serve_json_is_one_ready_line_and_a_summary(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """--json: a "ready" object (url, endpoint, token_file, devices), a summary."""
    out = io.StringIO()
    path = tmp_path / "t"
    settings = ServeSettings(port=0, duration=1.0, token_file=path, json=True)
    assert await run_serve(settings, Output(out, io.StringIO(), json=True), Stop()) == 0
    ready, summary = json_lines(out.getvalue())
    assert ready == {
        "kind": "ready",
        "url": ready["url"],
        "endpoint": ready["url"].replace("http://", "ws://") + "/api/v2/ws",
        "token_file": str(path),
        "devices": ["device-1", "device-2", "device-3"],
    }
    assert ready["url"].startswith("http://127.0.0.1:")
    assert summary == {
        "t": 1.0,
        "kind": "summary",
        "connections": 0,
        "rejected": 0,
        "readings": summary["readings"],
        "alerts": summary["alerts"],
    }
    assert path.read_text().strip() not in out.getvalue()


@pytest.mark.parametrize(("size", "warned"), [(5, True), (31, True), (32, False)])
async def test_serve_warns_on_a_short_hs256_secret(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, size: int, warned: bool
) -> None:
    """A secret under 32 bytes (RFC 7518) gets one warning line, never shown."""
    err = io.StringIO()
    secret = "s" * size
    settings = ServeSettings(
        port=0, duration=0.5, secret=secret, token_file=tmp_path / "t"
    )
    assert await run_serve(settings, Output(io.StringIO(), err), Stop()) == 0
    expected = [
        f"trio-ws-bus: warning: the HS256 secret is {size} bytes; RFC 7518 asks "
        "for at least 32 (make one with: python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))')"
    ]
    assert err.getvalue().splitlines() == (expected if warned else [])


async def test_serve_closes_clients_with_1001_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM: a real client over 127.0.0.1 gets 1001 "going away"; exit 143."""
    bus = MessageBus()
    closed = trio.Event()
    losses: list[tuple[int | None, str | None]] = []

    def on_event(event: ConnectionEvent) -> None:
        if event.status is ConnectionStatus.DISCONNECTED and event.code is not None:
            losses.append((event.code, event.reason))
            closed.set()

    bus.on(CONNECTION_TOPIC, on_event)
    with trio.fail_after(30):
        async with cli_process("serve", "--port", "0", "--json") as (
            serve,
            reader,
            errors,
        ):
            ready = json.loads(await reader.readline() or "null")
            token = (await trio.Path(ready["token_file"]).read_text()).strip()
            async with open_websocket_manager(
                ready["url"],
                token=token,
                bus=bus,
                backoff=NO_RETRY,
                proxy=None,
            ) as manager:
                await manager.wait_connected()
                serve.send_signal(signal.SIGTERM)
                await closed.wait()
            rest = await reader.rest()
            stderr = await errors.rest()
            assert await serve.wait() == 143
    assert losses[0] == (1001, "going away")
    assert stderr == []
    assert [json.loads(line)["connections"] for line in rest] == [1]
    assert token not in "".join(rest)


async def test_listen_notices_giving_up_after_it_was_connected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A connection lost for good while listening ends listen with status 1."""
    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []
    async with open_reference_server(listen=False) as server:
        settings = listen_settings(
            server.issue_token(), max_retries=1, devices=("pump-1",)
        )

        async def listen() -> None:
            output = Output(out, err, json=True)
            result.append(
                await run_listen(settings, output, Stop(), transport=server.transport)
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            await server.wait_subscribed("device", "pump-1")
            await server.publish_telemetry("pump-1", {"rpm": 900})
            server.reject_next(5, 401, body=b"invalid token")
            await server.drop_connections()
    assert result == [1]
    assert "(last error: Handshake rejected with HTTP 401)" in one_line(err.getvalue())
    lines = json_lines(out.getvalue())
    assert [line["metrics"] for line in lines if line["kind"] == "telemetry"] == [
        {"rpm": 900}
    ]
    assert statuses(lines)[:2] == ["connecting", "connected"]


async def test_listen_reads_the_token_file_again_for_every_attempt(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A rewritten token file is used on the next attempt; an empty one is retried."""
    out, err, stop = io.StringIO(), io.StringIO(), Stop()
    path = tmp_path / "token"
    result: list[int] = []
    async with open_reference_server(listen=False) as server:
        first, second = server.issue_token("first"), server.issue_token("second")
        path.write_text(f"  {first}\n")
        settings = listen_settings("", source=FileToken(str(path)))

        async def listen() -> None:
            output = Output(out, err, json=True)
            result.append(
                await run_listen(settings, output, stop, transport=server.transport)
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            await server.wait_connections(1)
            path.write_text("")
            await server.drop_connections()
            await trio.sleep(1.5)  # virtual: the retry at +1 s found no token
            path.write_text(second)
            await server.wait_handshakes(2)
            await server.wait_connections(1)
            stop.request()
        assert server.tokens_seen == [first, second]
    assert result == [130]
    assert err.getvalue() == f"trio-ws-bus: token: token file {path} is empty\n"
    assert first not in out.getvalue()
    assert second not in out.getvalue()


# --- end to end: subprocesses over loopback -------------------------------------


class LineReader:
    """Reads lines from a subprocess's stdout stream, bounded."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def readline(self) -> str | None:
        for _ in range(10_000):
            line, newline, rest = self.buffer.partition(b"\n")
            if newline:
                self.buffer = rest
                return line.decode()
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self.buffer += chunk
        raise AssertionError("no line after 10000 reads")

    async def rest(self) -> list[str]:
        lines: list[str] = []
        for _ in range(10_000):
            line = await self.readline()
            if line is None:
                return lines
            lines.append(line)
        raise AssertionError("stream did not end")


@asynccontextmanager
async def cli_process(
    *args: str,
) -> AsyncIterator[tuple[trio.Process, LineReader, LineReader]]:
    """``trio-ws-bus ARGS`` as a child process: its stdout and stderr by line.

    The child is killed on the way out, whatever the test did.
    """
    process = await trio.lowlevel.open_process(
        [*COMMAND, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        yield process, LineReader(process.stdout), LineReader(process.stderr)
    finally:
        process.kill()


async def test_demo_json_subprocess_shows_alerts_telemetry_and_reconnect(
    dead_proxy_env: str,
) -> None:
    """`demo --duration 3 --json`: the whole show, exit 0, whatever HTTP_PROXY says."""
    with trio.fail_after(60):
        result = await trio.run_process(
            [*COMMAND, "demo", "--duration", "3", "--json"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr
    lines = json_lines(result.stdout.decode())
    assert any(line["kind"] == "alert" for line in lines)
    devices = {line["device_id"] for line in lines if line["kind"] == "telemetry"}
    assert devices == {"device-1", "device-2", "device-3"}
    events = [line for line in lines if line["kind"] == "connection"]
    drop = next(
        i
        for i, e in enumerate(events)
        if e["status"] == "disconnected" and e["code"] == 1006
    )
    assert any(e["status"] == "connected" for e in events[drop:])
    assert events[-1]["code"] == 1000
    assert lines[-1]["kind"] == "summary"
    assert lines[-1]["reconnects"] == 1


async def test_ctrl_c_stops_the_demo_cleanly_with_status_130() -> None:
    """SIGINT closes the connection with 1000, prints the summary, exits 130."""
    with trio.fail_after(60):
        async with cli_process("demo", "--duration", "30", "--json") as (
            process,
            reader,
            errors,
        ):
            for _ in range(100):
                line = await reader.readline()
                assert line is not None
                if json.loads(line).get("status") == "connected":
                    break
            process.send_signal(signal.SIGINT)
            rest = [json.loads(line) for line in await reader.rest()]
            stderr = await errors.rest()
            assert await process.wait() == 130
    assert not any("Traceback" in line for line in stderr), stderr
    assert rest[-2]["kind"] == "connection"
    assert (rest[-2]["status"], rest[-2]["code"]) == ("disconnected", 1000)
    assert rest[-1]["kind"] == "summary"


async def test_listen_against_serve_with_each_token_source(
    tmp_path: Path, dead_proxy_env: str
) -> None:
    """Listen gets telemetry from serve with env, file and command tokens; no leak.

    A dead proxy in the environment changes nothing: serve is on loopback.
    """
    with trio.fail_after(60):
        serve = await trio.lowlevel.open_process(
            [*COMMAND, "serve", "--port", "0", "--duration", "45", "--json"],
            stdout=subprocess.PIPE,
        )
        try:
            assert serve.stdout is not None
            reader = LineReader(serve.stdout)
            ready = json.loads(await reader.readline() or "null")
            url = ready["url"]
            assert url.startswith("http://127.0.0.1:")
            token = (await trio.Path(ready["token_file"]).read_text()).strip()
            (tmp_path / "token").write_text(token + "\n")
            print_env = "import os; print(os.environ['CLI_TEST_TOKEN'])"
            sources = {
                "env": ["--token-env", "CLI_TEST_TOKEN"],
                "file": ["--token-file", str(tmp_path / "token")],
                "command": [
                    "--token-command",
                    shlex.join([sys.executable, "-c", print_env]),
                ],
            }
            results: dict[str, subprocess.CompletedProcess[bytes]] = {}

            async def listen(name: str, options: list[str]) -> None:
                results[name] = await trio.run_process(
                    [
                        *(*COMMAND, "listen", url, *options),
                        *("--device", "device-1", "--alerts", "--json"),
                        *("--duration", "2.5"),
                    ],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env={**_environ(), "CLI_TEST_TOKEN": token},
                )

            async with trio.open_nursery() as nursery:
                for name, options in sources.items():
                    nursery.start_soon(listen, name, options)
            serve.send_signal(signal.SIGINT)
            assert await serve.wait() == 130
        finally:
            serve.kill()
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
        assert token.encode() not in result.stdout + result.stderr, name
        lines = json_lines(result.stdout.decode())
        assert "connected" in statuses(lines), name
        kinds = {line.get("device_id") for line in lines if line["kind"] == "telemetry"}
        assert kinds == {"device-1"}, name


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


async def test_examples_run_standalone_against_an_embedded_server(
    dead_proxy_env: str,
) -> None:
    """Both examples run against their embedded server, whatever HTTP_PROXY says."""
    results: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def run(name: str, duration: str) -> None:
        results[name] = await trio.run_process(
            [sys.executable, str(ROOT / "examples" / name), "--duration", duration],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "dashboard.py", "3")
            nursery.start_soon(run, "token_refresh.py", "2.2")
    for result in results.values():
        assert result.returncode == 0, result.stderr
        assert result.stderr == b""
    dashboard = results["dashboard.py"].stdout.decode().splitlines()
    assert dashboard[0].endswith(" s, connected ---")
    table = dashboard[-5:]
    assert table[1].split() == ["device", "updates", "rpm", "temperature"]
    assert [row.split()[0] for row in table[2:]] == ["device-1", "device-2", "device-3"]
    # Every device was heard from (how often depends on the machine's load).
    assert all(int(row.split()[1]) >= 1 for row in table[2:])
    refresh = results["token_refresh.py"].stdout.decode().splitlines()
    fetched = [line for line in refresh if line.startswith("token provider: fetched")]
    assert len(fetched) >= 2
    assert len({line.rsplit("sha256 ", 1)[1] for line in fetched}) == len(fetched)
    assert refresh[-1].endswith(
        f"{len(fetched)} tokens fetched, {len(fetched)} distinct"
    )


async def test_listen_json_prints_every_reading_of_a_burst(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A burst of 10,000 readings written at once: listen --json prints each one."""
    from trio_ws_bus.testing import Opcode, encode_frame

    n = 10_000
    frames = b"".join(
        encode_frame(
            Opcode.TEXT,
            json.dumps(
                {
                    "type": "telemetry",
                    "device_id": "dev-0",
                    "data": {"timestamp": "t", "metrics": {"seq": i}},
                }
            ).encode(),
        )
        for i in range(n)
    )
    out = io.StringIO()
    async with open_reference_server(listen=False) as server:

        async def burst() -> None:
            await server.wait_subscribed("device", "dev-0")
            assert await server.connections[0].write_raw(frames)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(burst)
            settings = listen_settings(
                server.issue_token(), alerts=False, devices=("dev-0",), duration=60.0
            )
            output = Output(out, io.StringIO(), json=True)
            status = await run_listen(
                settings, output, Stop(), transport=server.transport
            )
            assert status == 0
    lines = json_lines(out.getvalue())
    readings = [line for line in lines if line["kind"] == "telemetry"]
    assert [reading["metrics"]["seq"] for reading in readings] == list(range(n))
    (summary,) = [line for line in lines if line["kind"] == "summary"]
    assert summary["dropped"] == 0
