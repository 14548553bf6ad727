"""The benchmark suite runs: each benchmark at a tiny size, results well formed.

Benchmarks are never timed tests: nothing here checks a number, only that the
code runs and returns (and writes) results of the expected shape.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

# bench/ is not part of the package: an editable install puts the checkout on
# sys.path, any other install does not.
if importlib.util.find_spec("bench") is None:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

from bench import __main__ as cli, _clients, deflate, latency, throughput
from bench._common import Config, Goal, Result, Row, faster, ratio
from bench._frames import stream
from bench._report import goal_line, number, rst_tables, text_table
from bench._server_proc import paced_frame, server_process

TINY = Config(size="tiny", rounds=1)


def check_result(result: Result, name: str) -> None:
    assert result.name == name
    assert result.title
    assert result.method
    assert result.rows
    for row in result.rows:
        assert isinstance(row, Row)
        assert row.group
        assert row.variant
        assert row.unit
        if not row.samples:
            assert row.note.startswith("n/a (needs ")
            continue
        assert all(math.isfinite(value) for value in row.samples)
        assert min(row.samples) <= row.median <= max(row.samples)
    for goal in result.goals:
        assert isinstance(goal, Goal)
        if goal.value is None:
            assert goal.met is None
            assert goal.detail.startswith("n/a (needs ")
            continue
        assert math.isfinite(goal.value)
        assert goal.met == (
            goal.value >= float(goal.target[3:])
            if goal.target.startswith(">=")
            else goal.value <= float(goal.target[3:])
        )
    document = json.loads(json.dumps(result.as_json()))
    assert document["name"] == name
    assert len(document["rows"]) == len(result.rows)
    assert text_table(result).startswith(f"== {result.title} ==")


@pytest.mark.parametrize(
    "name",
    [n for n in cli.BENCHMARKS if n not in ("throughput", "latency", "deflate")],
)
def test_each_benchmark_runs_at_tiny_size(name: str) -> None:
    """Every other benchmark runs at the tiny size and returns well-formed results."""
    result = cli.BENCHMARKS[name].run(TINY)
    check_result(result, name)


def rows_by_kind(result: Result) -> dict[str, dict[str, Row]]:
    kinds: dict[str, dict[str, Row]] = {}
    for row in result.rows:
        kinds.setdefault(row.group, {})[row.variant] = row
    return kinds


def test_throughput_has_every_variant_and_goal() -> None:
    """Throughput runs every variant it can on both kinds, and computes each goal."""
    result = throughput.run(TINY)
    check_result(result, "throughput")
    missing = throughput.missing()
    groups = rows_by_kind(result)
    assert list(groups) == [
        "telemetry",
        "telemetry delivered",
        "alerts",
        "alerts delivered",
    ]
    for kind in ("telemetry", "alerts"):
        rows = groups[kind]
        assert list(rows) == list(throughput.VARIANTS)
        measured = {name for name, row in rows.items() if row.samples}
        assert measured == set(throughput.VARIANTS) - set(missing)
        delivered = groups[throughput.delivered_group(kind)]
        assert list(delivered) == list(throughput.DEFAULTS)
        for variant, row in delivered.items():
            assert row.unit == "fraction"
            assert len(row.samples) == len(rows[variant].samples)
            assert all(0 <= value <= 1 for value in row.samples)
    n = throughput.message_counts(TINY)
    names = [goal.name for goal in result.goals]
    assert names == [
        name
        for kind in ("telemetry", "alerts")
        for name in (
            f"{kind}: (m) default delivers all of {n[kind]:,}",
            f"{kind}: (n) default delivers all of {n[kind]:,}",
            f"{kind}: (m) default async for / fastest json.loads peer",
            *(f"{kind}: {goal[0]}" for goal in throughput.GOALS),
        )
    ]


def test_throughput_reports_what_it_cannot_measure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the peers' packages or receive_batch, those variants are n/a."""
    monkeypatch.setattr(throughput, "websockets_available", lambda: False)
    monkeypatch.setattr(_clients, "has_receive_batch", lambda: False)
    monkeypatch.setattr(_clients, "available", lambda module: False)
    result = throughput.run(TINY)
    check_result(result, "throughput")
    groups = rows_by_kind(result)
    for kind in ("telemetry", "alerts"):
        rows = groups[kind]
        measured = {name for name, row in rows.items() if row.samples}
        assert measured == {
            throughput.A,
            throughput.B,
            throughput.F,
            throughput.M,
            throughput.N,
        }
        assert "receive_batch" in rows[throughput.G].note
        assert "receive_batch" in rows[throughput.O].note
        assert "websockets" in rows[throughput.C].note
        assert "picows" in rows[throughput.K].note
        assert "aiohttp" in rows[throughput.I].note
        assert "httpx-ws" in rows[throughput.L].note
        delivered = groups[throughput.delivered_group(kind)]
        assert delivered[throughput.M].samples
        assert not delivered[throughput.O].samples
    verdicts = {goal.name.split(": ", 1)[1]: goal.met for goal in result.goals}
    assert verdicts["(g) receive_batch / (e) ceiling"] is None
    assert verdicts["(f) async for / (c) websockets.trio"] is None
    assert verdicts["(g) receive_batch / (k) picows + msgspec typed"] is None
    assert verdicts["(m) default async for / (o) default receive_batch"] is None
    # trio-websocket + json.loads is still there to compare with.
    assert verdicts["(m) default async for / fastest json.loads peer"] in (
        True,
        False,
    )
    assert verdicts["(f) async for / (a) trio-websocket get_message (0.1.0)"] in (
        True,
        False,
    )
    assert "n/a (needs Subscription.receive_batch)" in text_table(result)


def test_latency_has_every_client_rate_and_goal() -> None:
    """Latency gives p50, p99, p99.9 and delivered for every client at every rate."""
    result = latency.run(TINY)
    check_result(result, "latency")
    missing = latency.missing()
    groups = rows_by_kind(result)
    assert list(groups) == [g for rate in latency.RATES for g in latency.groups(rate)]
    for group, rows in groups.items():
        assert list(rows) == list(latency.CLIENTS)
        measured = {name for name, row in rows.items() if row.samples}
        assert measured == set(latency.CLIENTS) - set(missing)
        for row in rows.values():
            if group.endswith("delivered"):
                assert row.unit == "fraction"
                assert all(0 <= value <= 1 for value in row.samples)
            else:
                assert row.unit == "us"
                assert all(value > 0 for value in row.samples)
    for rate in latency.RATES:
        p50, p99, p999, _ = (groups[g] for g in latency.groups(rate))
        for client in set(latency.CLIENTS) - set(missing):
            assert p50[client].median <= p99[client].median <= p999[client].median
    assert [goal.name for goal in result.goals] == [
        "10k msg/s p99: trio_ws_bus default async for / best peer",
        f"{latency.OURS_EACH}: delivers everything at every rate",
        f"{latency.OURS_BATCH}: delivers everything at every rate",
    ]


def test_latency_reports_what_it_cannot_measure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without any peer's package, the peers and the p99 goal are n/a."""
    monkeypatch.setattr(throughput, "websockets_available", lambda: False)
    monkeypatch.setattr(_clients, "available", lambda module: False)
    monkeypatch.setattr(latency, "RATES", (1_000,))
    monkeypatch.setattr(latency, "GOAL_RATE", 1_000)
    result = latency.run(TINY)
    check_result(result, "latency")
    for rows in rows_by_kind(result).values():
        measured = {name for name, row in rows.items() if row.samples}
        assert measured == set(latency.OURS)
    assert result.goals[0].met is None
    assert result.goals[1].met in (True, False)


def test_latency_statistics() -> None:
    """Quantiles come from the sorted latencies; none delivered counts as the limit."""
    stats = latency.stats([0.003, 0.001, 0.002, 0.004], 8, 9.0)
    assert stats.delivered == 0.5
    assert stats.quantiles == {"p50": 3000.0, "p99": 4000.0, "p99.9": 4000.0}
    none = latency.stats([], 8, 9.0)
    assert (none.delivered, none.quantiles["p50"]) == (0.0, 9e6)
    assert latency.rate_label(50_000) == "50k msg/s"


def test_paced_frames_are_valid_stamped_telemetry() -> None:
    """The paced server's frame is one final text frame trio_ws_bus decodes."""
    from trio_ws_bus import TelemetryMessage, decode_server_message

    frame = paced_frame(1234.5678)
    assert frame[0] == 0x81  # FIN + text, unmasked
    assert frame[1] == 126
    size = int.from_bytes(frame[2:4], "big")
    assert size == len(frame) - 4
    message = decode_server_message(frame[4:])
    assert isinstance(message, TelemetryMessage)
    assert message.data.metrics["sent"] == 1234.5678
    assert len(message.data.metrics) == 7


def test_deflate_runs_what_it_can() -> None:
    """The deflate benchmark pairs each client with and without compression."""
    result = deflate.run(TINY)
    check_result(result, "deflate")
    missing = deflate.missing()
    for rows in rows_by_kind(result).values():
        assert len(rows) == 4
        measured = {name for name, row in rows.items() if row.samples}
        assert measured == set(rows) - set(missing)
    pairs_measured = sum(not (set(pair) & set(missing)) for pair in deflate.PAIRS)
    assert len(result.notes) == 2 * pairs_measured


def test_deflate_listener_negotiates_and_pushes_intact_frames() -> None:
    """The server's deflate listener compresses the push; a client reads it intact."""
    connect = pytest.importorskip("websockets.trio.client").connect
    received: list[list[object]] = []

    async def read(url: str, n: int) -> None:
        with trio.fail_after(30):
            async with connect(url) as connection:
                extensions = connection.response.headers["Sec-WebSocket-Extensions"]
                assert extensions.startswith("permessage-deflate")
                await connection.send("go")
                received.append([json.loads(await connection.recv()) for _ in range(n)])

    with server_process() as server:
        url = server.url(deflate=True, mode="push", kind="telemetry", n=30, devices=20)
        for _ in range(2):  # the second connection gets the cached compressed bytes
            trio.run(read, url, 30)
    expected = [json.loads(frame) for frame in stream("telemetry", 30, 20)]
    assert received == [expected, expected]
    assert expected[0]["device_id"] != expected[1]["device_id"]
    assert expected[0] == expected[20]


def test_cli_writes_json_and_rst(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI with --only writes the JSON document and the RST tables."""
    output = tmp_path / "results" / "latest.json"
    rst = tmp_path / "tables.rst"
    argv = ["--size", "tiny", "--rounds", "1", "--only", "routing,decode"]
    status = cli.main([*argv, "--output", str(output), "--rst", str(rst)])
    assert status == 0
    document = json.loads(output.read_text())
    assert set(document["benchmarks"]) == {"routing", "decode"}
    assert document["config"] == {"size": "tiny", "rounds": 1}
    assert document["indicative"] is True
    assert document["failures"] == {}
    assert document["machine"]["python"]
    assert document["machine"]["versions"]["trio"]
    assert [goal["benchmark"] for goal in document["goals"]] == ["routing", "decode"]
    out = capsys.readouterr().out
    assert "== Goals ==" in out
    tables = rst.read_text()
    assert "Routing scale" in tables
    # The same tables again, from the JSON file alone.
    again = tmp_path / "again.rst"
    assert cli.main(["--tables-from", str(output), "--rst", str(again)]) == 0
    assert again.read_text() == tables


def test_cli_refuses_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    """--only with an unknown name is a usage error listing the benchmarks."""
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["--only", "nope", "--no-save"])
    assert excinfo.value.code == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_quick_defaults_to_three_rounds() -> None:
    """--quick is size quick with 3 rounds unless --rounds says otherwise."""
    args = cli._parse(["--quick"])
    assert (args.size, args.rounds, args.only) == ("quick", 3, list(cli.BENCHMARKS))
    args = cli._parse(["--rounds", "2", "--only", "fanout", "--only", "memory"])
    assert (args.size, args.rounds, args.only) == ("full", 2, ["fanout", "memory"])


def test_server_process_starts_and_stops() -> None:
    """The out-of-process server reports its port and exits when told to."""
    with server_process() as server:
        assert server.port > 0
        assert server.url(mode="push", n=3) == (
            f"ws://127.0.0.1:{server.port}/bench?mode=push&n=3"
        )
        assert server.url("http", deflate=True, n=3) == (
            f"http://127.0.0.1:{server.deflate_port}/bench?n=3"
        )
        assert server.deflate_port not in (0, server.port)
    assert server.process.returncode == 0


def test_report_helpers() -> None:
    """Ratios pair samples round by round; numbers get sensible precision."""
    fast = Row("g", "fast", "us", [1.0, 4.0, 3.0])
    slow = Row("g", "slow", "us", [2.0, 4.0, 9.0])
    assert ratio(slow, fast) == (2.0, 1.0, 3.0)
    assert [number(x) for x in (1234.5, 123.4, 12.34, 1.234)] == [
        "1,234",
        "123",
        "12.3",
        "1.23",
    ]
    result = Result("x", "T*", "m", rows=[fast, slow])
    tables = rst_tables(
        [result],
        {
            "cpu": "c",
            "nproc": 2,
            "implementation": "CPython",
            "python": "3",
            "versions": {"trio": "1"},
        },
    )
    assert r"T\*" in tables
    missing = Row("g", "later", "us", [], "n/a (needs x)")
    goal = faster("later / slow", missing, slow, 1.5)
    assert (goal.value, goal.met) == (None, None)
    assert goal_line(goal) == "later / slow: n/a (needs x) (>= 1.5)"
    assert faster("fast / slow", fast, slow, 1.5).value == 2.0
    table = text_table(Result("x", "T", "m", rows=[slow, missing]))
    assert "n/a" in table.splitlines()[-1]
