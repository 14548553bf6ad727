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

from bench import __main__ as cli, throughput
from bench._common import Config, Goal, Result, Row, ratio
from bench._report import number, rst_tables, text_table
from bench._server_proc import server_process

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
        assert row.samples
        assert all(math.isfinite(value) for value in row.samples)
        assert min(row.samples) <= row.median <= max(row.samples)
    for goal in result.goals:
        assert isinstance(goal, Goal)
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


@pytest.mark.parametrize("name", [n for n in cli.BENCHMARKS if n != "throughput"])
def test_each_benchmark_runs_at_tiny_size(name: str) -> None:
    """Every other benchmark runs at the tiny size and returns well-formed results."""
    result = cli.BENCHMARKS[name].run(TINY)
    check_result(result, name)


def test_throughput_has_its_variants_and_goals() -> None:
    """Throughput runs (a), (a4), (b), (c) [and (d)] on both message kinds."""
    result = throughput.run(TINY)
    check_result(result, "throughput")
    variants = {throughput.A, throughput.A4, throughput.B, throughput.C}
    if throughput.websockets_trio_available():
        variants.add(throughput.D)
    for kind in ("telemetry", "alerts"):
        assert {row.variant for row in result.rows if row.group == kind} == variants
    assert len(result.goals) == 2


def test_throughput_skips_websockets_when_it_has_no_trio_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without websockets.trio, variant (d) is left out with a note, not an error."""
    monkeypatch.setattr(throughput, "websockets_trio_available", lambda: False)
    result = throughput.run(TINY)
    assert throughput.D not in {row.variant for row in result.rows}
    assert any("(d) skipped" in note for note in result.notes)


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
