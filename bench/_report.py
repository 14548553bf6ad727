"""Text and reStructuredText tables of benchmark results."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._common import Goal, Result, Row


def number(value: float) -> str:
    """A number with as many decimals as its size deserves."""
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _relative(row: Row, first: Row) -> str:
    if row is first or not (first.samples and first.median and row.samples):
        return ""
    return f"{row.median / first.median:.2f}x"


def _cells(result: Result) -> list[list[str]]:
    cells = []
    firsts: dict[str, Row] = {}
    for row in result.rows:
        first = firsts.setdefault(row.group, row)
        values = (
            [number(v) for v in (row.median, min(row.samples), max(row.samples))]
            if row.samples
            else ["n/a", "", ""]
        )
        cells.append(
            [row.group, row.variant, *values, row.unit, _relative(row, first), row.note]
        )
    return cells


HEADER = ["group", "variant", "median", "min", "max", "unit", "vs 1st", "note"]
_RIGHT = {2, 3, 4, 6}


def goal_line(goal: Goal) -> str:
    if goal.value is None:
        return f"{goal.name}: {goal.detail} ({goal.target})"
    verdict = "met" if goal.met else "MISSED"
    detail = f", {goal.detail}" if goal.detail else ""
    return f"{goal.name}: {number(goal.value)} ({goal.target}{detail}) {verdict}"


def text_table(result: Result) -> str:
    """The result as a plain-text table, with its goals and notes under it."""
    rows = [HEADER, *_cells(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = [f"== {result.title} ==", result.method, ""]
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(width) if column in _RIGHT else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    lines.extend(f"GOAL {goal_line(goal)}" for goal in result.goals)
    lines.extend(f"NOTE {note}" for note in result.notes)
    return "\n".join(lines)


def _rst_grid(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * width for width in widths)
    out = [rule]
    for index, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if index == 0:
            out.append(rule)
    out.append(rule)
    return [line.rstrip() for line in out]


def _rst_escape(text: str) -> str:
    return text.replace("*", r"\*").replace("`", r"\`").replace("|", r"\|")


def rst_tables(results: Iterable[Result], machine: dict[str, Any]) -> str:
    """Every result as an RST simple table, for ``docs/performance.rst``."""
    versions = ", ".join(
        f"{name} {version}"
        for name, version in machine["versions"].items()
        if version is not None
    )
    lines = [
        f"Machine: {machine['cpu']}, {machine['nproc']} usable cores; "
        f"{machine['implementation']} {machine['python']}; {versions}.",
        "",
    ]
    for result in results:
        lines.extend([_rst_escape(result.title), "~" * len(result.title), ""])
        rows = [[_rst_escape(cell) for cell in row] for row in _cells(result)]
        header = [*HEADER]
        # Drop empty columns (notes, relative) to keep the table narrow.
        keep = [i for i in range(len(header)) if any(r[i] for r in rows)]
        table = [[header[i] for i in keep], *[[r[i] for i in keep] for r in rows]]
        lines.extend(_rst_grid(table))
        lines.append("")
        for goal in result.goals:
            lines.append(f"* Goal: {_rst_escape(goal_line(goal))}")
        for note in result.notes:
            lines.append(f"* {_rst_escape(note)}")
        if result.goals or result.notes:
            lines.append("")
    return "\n".join(lines)
