"""What every benchmark shares: sizes, interleaved rounds, results, the machine."""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs

Size = Literal["full", "quick", "tiny"]
SIZES: tuple[Size, ...] = ("full", "quick", "tiny")
_T = TypeVar("_T")


@attrs.frozen
class Config:
    """How big and how many: ``size`` scales every N, ``rounds`` is per variant.

    ``full`` is the default and the one the docs quote; ``quick`` is a smoke run
    of a few seconds per benchmark whose numbers are indicative only; ``tiny``
    only checks that the code runs (the test suite uses it).
    """

    size: Size = "full"
    rounds: int = 5

    def pick(self, full: _T, quick: _T, tiny: _T) -> _T:
        """The value for this run's size."""
        return {"full": full, "quick": quick, "tiny": tiny}[self.size]


@attrs.define
class Row:
    """One variant: a sample per round, the median shown first.

    No samples means not measured in this run; ``note`` says why.
    """

    group: str
    variant: str
    unit: str
    samples: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        return cls(
            data["group"], data["variant"], data["unit"], data["samples"], data["note"]
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "variant": self.variant,
            "unit": self.unit,
            "median": self.median if self.samples else None,
            "min": min(self.samples, default=None),
            "max": max(self.samples, default=None),
            "samples": self.samples,
            "note": self.note,
        }


@attrs.define
class Goal:
    """One goal of the issue, checked on ratios (or values) from this run.

    ``value`` and ``met`` are None when a variant it needs was not measured.
    """

    name: str
    value: float | None
    target: str
    met: bool | None
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class Result:
    """What one benchmark returns: rows, goals and how it was measured."""

    name: str
    title: str
    method: str
    params: dict[str, Any] = attrs.Factory(dict)
    rows: list[Row] = attrs.Factory(list)
    goals: list[Goal] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)

    def row(self, group: str, variant: str) -> Row:
        for row in self.rows:
            if row.group == group and row.variant == variant:
                return row
        raise KeyError((group, variant))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Result:
        return cls(
            data["name"],
            data["title"],
            data["method"],
            dict(data["params"]),
            [Row.from_json(row) for row in data["rows"]],
            [Goal(**goal) for goal in data["goals"]],
            list(data["notes"]),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "method": self.method,
            "params": self.params,
            "rows": [row.as_json() for row in self.rows],
            "goals": [goal.as_json() for goal in self.goals],
            "notes": self.notes,
        }


@contextlib.contextmanager
def quiet_logs(level: int = logging.ERROR) -> Iterator[None]:
    """Silence trio_ws_bus's expected warnings while benchmarking; restore after."""
    logger = logging.getLogger("trio_ws_bus")
    saved = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved)


@contextlib.contextmanager
def tracing() -> Iterator[None]:
    """Trace allocations (tracemalloc) in the block, unless already tracing."""
    if tracemalloc.is_tracing():
        yield
        return
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def interleave(
    variants: Mapping[str, Callable[[], float]], rounds: int, *, warmup: int = 1
) -> dict[str, list[float]]:
    """Run every variant once per round, rotating the order; one sample each.

    Round r runs the variants starting from the r-th (A B C, B C A, C A B, ...),
    so that a slow phase of the machine and the position in a round hit every
    variant alike. ``warmup`` untimed rounds come first.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            gc.collect()
            variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        start = index % len(names)
        for name in names[start:] + names[:start]:
            gc.collect()
            samples[name].append(variants[name]())
    return samples


def ratio(numerator: Row, denominator: Row) -> tuple[float, float, float]:
    """``numerator / denominator`` per round: the median, min and max over rounds.

    Rows of one interleaved run have one sample per round, in round order, so
    sample i of both comes from the same round, measured moments apart. On a
    shared machine whose speed drifts during the run, the median of these
    paired ratios is steadier than the ratio of the two medians.
    """
    pairs = [
        n / d for n, d in zip(numerator.samples, denominator.samples, strict=True) if d
    ]
    return statistics.median(pairs), min(pairs), max(pairs)


def not_measured(variant: str) -> str:
    """The note of a variant this run cannot measure: it needs ``variant``."""
    return f"n/a (needs {variant})"


def faster(name: str, fast: Row, slow: Row, target: float) -> Goal:
    """At least ``target`` times the throughput: ``slow`` time / ``fast`` time.

    Both rows are times per message; n/a when either was not measured.
    """
    for row in (fast, slow):
        if not row.samples:
            return Goal(name, None, f">= {target:g}", None, row.note)
    value, low, high = ratio(slow, fast)
    return at_least(name, value, target, f"per-round {low:.2f}-{high:.2f}")


def at_least(name: str, value: float, target: float, detail: str = "") -> Goal:
    return Goal(name, value, f">= {target:g}", value >= target, detail)


def at_most(name: str, value: float, target: float, detail: str = "") -> Goal:
    return Goal(name, value, f"<= {target:g}", value <= target, detail)


# ---------------------------------------------------------------------------
# The machine


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.machine()


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def machine() -> dict[str, Any]:
    """Where the numbers come from: CPU, cores, Python, library versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    return {
        "cpu": _cpu_model(),
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "commit": _git_commit(),
        "versions": {
            name: _version(name)
            for name in (
                "trio-ws-bus",
                "trio",
                "trio-websocket",
                "wsproto",
                "msgspec",
                "attrs",
                "websockets",
            )
        },
    }
