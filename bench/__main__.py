"""``python -m bench``: run the benchmarks, print tables, write JSON."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from . import (
    decode,
    deflate,
    fanout,
    latency,
    memory,
    reconnect,
    routing,
    throughput,
)
from ._common import SIZES, Config, Result, machine
from ._report import goal_line, rst_tables, text_table

BENCHMARKS: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        throughput,
        latency,
        deflate,
        fanout,
        routing,
        memory,
        reconnect,
        decode,
    )
}
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="trio_ws_bus benchmarks: tables on stdout, JSON in "
        "bench/results/latest.json.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="size",
        help="smoke run with small N (numbers indicative only)",
    )
    size.add_argument(
        "--size",
        choices=SIZES,
        help="full (default), quick (= --quick) or tiny (only checks that it runs)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these benchmarks (repeat or comma-separate): "
        f"{', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds per variant (default 5; 3 with --quick)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help=f"where to write the JSON results (default {RESULTS.parent.name}/"
        f"{RESULTS.name} next to this package)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write JSON")
    parser.set_defaults(size="full")
    parser.add_argument(
        "--rst",
        type=Path,
        metavar="PATH",
        help="also write the tables as reStructuredText (for docs/performance.rst)",
    )
    parser.add_argument(
        "--tables-from",
        type=Path,
        metavar="JSON",
        help="run nothing: print (and with --rst write) the tables of a results file",
    )
    args = parser.parse_args(argv)
    names: list[str] = []
    for item in args.only or []:
        names.extend(name.strip() for name in item.split(",") if name.strip())
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; pick from {list(BENCHMARKS)}")
    args.only = names or list(BENCHMARKS)
    if args.rounds is None:
        args.rounds = 3 if args.size != "full" else 5
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def run(
    names: Sequence[str],
    config: Config,
    *,
    echo: Callable[[str], object] = print,
) -> tuple[list[Result], dict[str, str]]:
    """Run the named benchmarks in order; return results and failures."""
    results: list[Result] = []
    failures: dict[str, str] = {}
    for name in names:
        started = time.perf_counter()
        try:
            result = BENCHMARKS[name].run(config)
        except Exception:
            failures[name] = traceback.format_exc()
            echo(f"== {name}: FAILED ==\n{failures[name]}")
            continue
        result.params["seconds"] = round(time.perf_counter() - started, 1)
        results.append(result)
        echo(text_table(result) + "\n")
    return results, failures


def document(
    results: Sequence[Result], failures: dict[str, str], config: Config
) -> dict[str, object]:
    """The JSON document written to ``bench/results/latest.json``."""
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "config": {"size": config.size, "rounds": config.rounds},
        # Only a full-size run is meant to decide a goal.
        "indicative": config.size != "full",
        "machine": machine(),
        "benchmarks": {result.name: result.as_json() for result in results},
        "goals": [
            {"benchmark": result.name, **goal.as_json()}
            for result in results
            for goal in result.goals
        ],
        "failures": failures,
    }


def _tables_from(path: Path, rst: Path | None) -> int:
    data = json.loads(path.read_text())
    results = [Result.from_json(item) for item in data["benchmarks"].values()]
    print(f"{path}: {data['created']}, {data['config']}\n")
    for result in results:
        print(text_table(result) + "\n")
    if rst is not None:
        rst.write_text(rst_tables(results, data["machine"]) + "\n")
        print(f"wrote {rst}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 if all of them ran (goals are reported, not enforced)."""
    args = _parse(argv)
    if args.tables_from is not None:
        return _tables_from(args.tables_from, args.rst)
    config = Config(size=args.size, rounds=args.rounds)
    info = machine()
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    print(
        f"{info['cpu']}, {info['nproc']} usable cores; "
        f"{info['implementation']} {info['python']}; {versions}\n"
        f"size={config.size}, rounds={config.rounds}\n",
        flush=True,
    )
    results, failures = run(args.only, config, echo=lambda t: print(t, flush=True))
    goals = [goal for result in results for goal in result.goals]
    if goals:
        print("== Goals ==")
        if config.size != "full":
            print(f"(size={config.size}: verdicts are indicative only)")
        for goal in goals:
            print(goal_line(goal))
    if not args.no_save:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            json.dumps(document(results, failures, config), indent=2) + "\n"
        )
        print(f"\nwrote {args.output}")
    if args.rst:
        args.rst.write_text(rst_tables(results, info) + "\n")
        print(f"wrote {args.rst}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
