"""The client owns its wire: no other WebSocket library, no dependency's privates.

The client drives websockets' documented sans-I/O protocol from its own
tasks. trio-websocket (and wsproto under it) is only the reference server's
engine, in ``trio_ws_bus/testing/``. No code of the project reads a private
attribute of a dependency: a dependency's release must not be able to change
how the library behaves by renaming one.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT

PACKAGE = ROOT / "trio_ws_bus"
OUR_CODE = [PACKAGE, ROOT / "tests", ROOT / "bench", ROOT / "examples", ROOT / "docs"]
SERVER_ONLY = {"trio_websocket", "wsproto"}
#: Our own code: the package, the benchmarks and the tests' helper modules.
OURS = {"trio_ws_bus", "bench", "conftest", "helpers", "_fault_helpers"}


def python_files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from sorted(p for p in root.rglob("*.py") if "_build" not in p.parts)


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def foreign_names(tree: ast.AST) -> set[str]:
    """Names bound by imports from other packages (stdlib included)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in OURS:
                    names.add(alias.asname or alias.name.split(".")[0])
        elif (
            isinstance(node, ast.ImportFrom)
            and not node.level
            and (node.module or "").split(".")[0] not in OURS
        ):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_reads(tree: ast.AST) -> list[str]:
    """``foreign._x`` (at any depth of a dotted chain) and ``getattr(x, "_x")``."""
    foreign = foreign_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            if root_name(node.value) in foreign:
                found.append((node.lineno, ast.unparse(node)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and root_name(node.args[0]) in foreign
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and is_private(node.args[1].value)
        ):
            found.append((node.lineno, ast.unparse(node)))
    return [f"line {line}: {text}" for line, text in sorted(found)]


@pytest.mark.parametrize(
    "path",
    [p for p in python_files(PACKAGE) if "testing" not in p.relative_to(PACKAGE).parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_client_imports_no_other_websocket_library(path: Path) -> None:
    """Outside testing/, nothing imports trio-websocket or wsproto."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert imported_roots(tree) & SERVER_ONLY == set()


@pytest.mark.parametrize(
    "path", list(python_files(*OUR_CODE)), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_code_reads_a_private_attribute_of_a_dependency(path: Path) -> None:
    """No ``dependency._private`` and no ``getattr(obj, "_private")`` anywhere."""
    assert private_reads(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_checks_catch_what_they_look_for() -> None:
    """The detectors see an import, a private read, and a private getattr."""
    sample = ast.parse(
        "import trio_websocket\n"
        "from wsproto.events import TextMessage\n"
        "x = trio_websocket._impl.RECEIVE_BYTES\n"
        "y = getattr(trio_websocket.WebSocketConnection, '_wsproto', None)\n"
        "z = self._own_state\n"
    )
    assert imported_roots(sample) >= SERVER_ONLY
    assert private_reads(sample) == [
        "line 3: trio_websocket._impl",
        "line 4: getattr(trio_websocket.WebSocketConnection, '_wsproto', None)",
    ]


def test_importing_the_client_loads_no_other_websocket_library() -> None:
    """``import trio_ws_bus`` (and opening a manager's modules) loads neither."""
    import subprocess

    code = (
        "import sys, trio_ws_bus, trio_ws_bus._manager;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('trio_websocket', 'wsproto')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def local_imports(module: str) -> set[str]:
    """The trio_ws_bus modules ``module`` imports, directly or not (not __init__)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                todo.append(node.module)
    return seen


def test_the_sans_io_session_imports_no_trio() -> None:
    """The session and everything it imports is I/O-free: no trio anywhere below.

    It returns events and leaves routing to the pump: no router, no bus below it.
    """
    core = local_imports("_session")
    assert {"_session", "_heartbeat", "_protocol", "_failures", "_retry"} <= core
    assert not {"_routing", "_bus", "_subscription", "_connection"} & core
    for name in sorted(core):
        tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
        assert "trio" not in imported_roots(tree), name
