"""The ``no_tasks_left`` fixture fails a test that leaves a task behind, only that."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

SCENARIOS = """
import trio


async def test_leaves_a_task(no_tasks_left: None) -> None:
    trio.lowlevel.spawn_system_task(trio.sleep_forever, name="left-behind")


async def test_ends_its_tasks(no_tasks_left: None) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 0, name="ended")
"""


def test_a_task_left_running_fails_the_test_and_is_named(tmp_path: Path) -> None:
    """In a pytest of its own: the leaky test fails, naming the task; not the other."""
    (tmp_path / "test_scenarios.py").write_text(SCENARIOS, encoding="utf-8")
    paths = [str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*pytest, "-p", "conftest", "-o", "trio_mode=true", "-rA", "test_scenarios.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = result.stdout
    assert "FAILED test_scenarios.py::test_leaves_a_task" in report, report
    assert "assert ['left-behind'] == []" in report
    assert "PASSED test_scenarios.py::test_ends_its_tasks" in report
    assert "1 failed, 1 passed" in report
