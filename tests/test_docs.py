"""The docs stay true: every example runs, every public name is documented.

The one test that builds the docs needs Sphinx: the ``dev`` extra installs it,
so CI runs it.
"""

from __future__ import annotations

import ast
import csv
import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import re
import subprocess
import sys
import types
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing
from helpers import ROOT

import trio_ws_bus
import trio_ws_bus.otel
import trio_ws_bus.testing
from trio_ws_bus import (
    CONNECTION_TOPIC,
    Backoff,
    ConnectionEvent,
    MessageBus,
    TokenProvider,
    WebSocketManager,
    open_websocket_manager,
)
from trio_ws_bus.testing import ReferenceServer, make_alert, open_reference_server

DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
README = ROOT / "README.md"


def rst_sources() -> dict[Path, str]:
    return {
        path: path.read_text(encoding="utf-8")
        for path in sorted(DOCS.rglob("*.rst"))
        if "_build" not in path.parts
    }


def normalize(text: str) -> str:
    return " ".join(text.split())


# --- the reference covers the public API -------------------------------------

_AUTODOC = re.compile(
    r"^\.\. auto(class|function|data|exception)::"
    r"\s+(trio_ws_bus(?:\.testing|\.otel)?)\.(\w+)",
    re.MULTILINE,
)


def autodoc_entries() -> dict[str, str]:
    """Documented name -> directive kind, from docs/reference/*.rst."""
    entries: dict[str, str] = {}
    for path, text in rst_sources().items():
        if path.parent.name == "reference":
            for kind, module, name in _AUTODOC.findall(text):
                entries[f"{module}.{name}"] = kind
    return entries


def documented_names() -> set[str]:
    return set(autodoc_entries())


def public_names() -> set[str]:
    return {
        f"{module.__name__}.{name}"
        for module in (trio_ws_bus, trio_ws_bus.testing, trio_ws_bus.otel)
        for name in module.__all__
    }


def test_reference_documents_every_public_name() -> None:
    """Each name in both __all__ lists has an autodoc entry in docs/reference/."""
    missing = public_names() - documented_names()
    assert not missing, f"add these to docs/reference/*.rst: {sorted(missing)}"


def test_reference_documents_only_public_names() -> None:
    """The reference documents no private or removed name."""
    stale = documented_names() - public_names()
    assert not stale, f"not in any __all__: {sorted(stale)}"


def _is_class(obj: object) -> bool:
    # list[int] passes isinstance(..., type) on Python 3.10.
    return inspect.isclass(obj) and not isinstance(obj, types.GenericAlias)


def _is_exception(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseException)


_KIND_FITS: dict[str, Callable[[object], bool]] = {
    "class": _is_class,
    "exception": _is_exception,
    "function": inspect.isroutine,
    "data": lambda obj: not (inspect.isroutine(obj) or _is_class(obj)),
}


def test_reference_uses_the_right_directive_for_each_name() -> None:
    """Functions use autofunction, constants and aliases autodata, and so on."""
    for name, kind in autodoc_entries().items():
        module_name, _, attribute = name.rpartition(".")
        obj = getattr(importlib.import_module(module_name), attribute)
        assert _KIND_FITS[kind](obj), f"{name} is not a {kind}: use another auto*"


# --- every example is tested, every include points somewhere real -------------

#: The examples under docs/examples/ and the clock each runs under in tests:
#: "mock" (in-memory transport, autojump clock) or "real" (loopback sockets).
RUNNABLE = {
    "tutorial": "real",
    "token_refresh": "mock",
    "buffers": "mock",
    "tls": "real",
    "logging_setup": "mock",
    "service": "mock",
    "otel_metrics": "mock",
    "typed_topics": "real",
}
#: The testing how-to's app and its pytest module (run by a test below).
PYTEST_EXAMPLE = "test_alert_pager"
#: proxies.py needs a proxy server: tests/test_proxy.py runs it against pproxy.
SUPPORT = {"alert_pager", "proxies", PYTEST_EXAMPLE}


def test_every_example_file_is_run_by_a_test() -> None:
    """A new file in docs/examples/ must be added to RUNNABLE (or SUPPORT)."""
    files = {path.stem for path in EXAMPLES.glob("*.py")}
    assert files == set(RUNNABLE) | SUPPORT


_INCLUDE = re.compile(
    r"^\s*\.\. literalinclude:: (?P<path>\S+)\n(?P<options>(?:\s+:[\w-]+:.*\n)*)",
    re.MULTILINE,
)


def test_literalincludes_point_to_existing_code() -> None:
    """Included files exist, and each :pyobject: names a top-level definition."""
    checked = 0
    for path, text in rst_sources().items():
        for match in _INCLUDE.finditer(text):
            target = (path.parent / match["path"]).resolve()
            assert target.is_file(), f"{path.name}: {match['path']} does not exist"
            pyobject = re.search(r":pyobject: (\w+)", match["options"])
            if pyobject is not None:
                tree = ast.parse(target.read_text(encoding="utf-8"))
                defined = {
                    node.name
                    for node in tree.body
                    if isinstance(
                        node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
                    )
                }
                assert pyobject[1] in defined, f"{path.name}: {pyobject[1]}?"
            checked += 1
    assert checked > 10


#: Pages whose authors have not moved their snippets into docs/examples/ yet.
UNTESTED_SNIPPETS_ALLOWED = {"reconnect_policy.rst"}

_SNIPPET = re.compile(
    r"^(?:(?!\s*\.\. ).*::[ \t]*$"  # a paragraph ending in "::"
    r"|\s*\.\. (?:code-block|code|sourcecode):: *(?:python|py|pycon)\b.*$"
    r"|\s*\.\. (?:doctest|testcode)::.*$)",
    re.MULTILINE,
)


def test_python_in_the_docs_comes_from_tested_files() -> None:
    """No inline Python snippets: examples are literalincludes of tested files."""
    for path, text in rst_sources().items():
        if path.name not in UNTESTED_SNIPPETS_ALLOWED:
            snippet = _SNIPPET.search(text)
            assert snippet is None, f"{path.name}: {snippet[0] if snippet else ''}"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"docs_example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def comparable(output: str) -> dict[str, list[str]]:
    """Output lines grouped by their first word, in order within each group.

    Lines printed by different tasks may interleave differently from run to
    run; the order of the lines of one kind may not change. OpenSSL words
    certificate errors differently from version to version.
    """
    groups: dict[str, list[str]] = {}
    for line in output.splitlines():
        line = re.sub(r"(verification failed: ).*", r"\1...", line.rstrip())
        if line:
            groups.setdefault(line.split()[0], []).append(line)
    return groups


@pytest.mark.parametrize("name", sorted(RUNNABLE))
def test_example_runs_and_prints_what_the_docs_show(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run docs/examples/<name>.py's main(); its output is <name>.out."""
    module = load_example(name)
    main: Callable[[], Awaitable[None]] = module.main
    if RUNNABLE[name] == "mock":
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    else:

        async def capped() -> None:
            with trio.fail_after(30):
                await main()

        trio.run(capped)
    expected = (EXAMPLES / f"{name}.out").read_text(encoding="utf-8")
    assert comparable(capsys.readouterr().out) == comparable(expected)


def test_testing_howto_example_passes_under_pytest() -> None:
    """docs/examples/test_alert_pager.py passes, as the testing how-to shows it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            # The example marks its tests itself: no trio_mode needed.
            "-o",
            "trio_mode=false",
            str(EXAMPLES / f"{PYTEST_EXAMPLE}.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_library_docstring_examples() -> None:
    """The >>> examples in the library's docstrings pass."""
    attempted = 0
    for info in pkgutil.walk_packages(trio_ws_bus.__path__, "trio_ws_bus."):
        module = importlib.import_module(info.name)
        results = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert results.failed == 0, info.name
        attempted += results.attempted
    assert attempted >= 1


# --- the logging page ---------------------------------------------------------


def test_logging_page_names_every_logger_and_record_field() -> None:
    """Each logger name and ``ws_bus_*`` record field in the library is documented."""
    page = (DOCS / "logging.rst").read_text(encoding="utf-8")
    source = "\n".join(
        path.read_text(encoding="utf-8")
        for path in (ROOT / "trio_ws_bus").rglob("*.py")
    )
    loggers = set(
        re.findall(r"(?:getLogger|get_logger)\(\s*\"(trio_ws_bus[\w.]*)\"", source)
    )
    fields = set(re.findall(r"\"(ws_bus_\w+)\"\s*:", source))  # extra={...} keys
    assert {"trio_ws_bus.manager", "trio_ws_bus.session"} <= loggers
    for name in sorted(loggers | fields):
        assert f"``{name}``" in page, f"docs/logging.rst lacks {name}"


#: Logger names that follow no single module, as docs/logging.rst explains.
SHARED_LOGGERS = {"trio_ws_bus.wire", "trio_ws_bus.testing"}


def test_each_logger_is_named_after_its_module() -> None:
    """``_session.py`` logs as ``trio_ws_bus.session``; only shared names differ."""
    for path in sorted((ROOT / "trio_ws_bus").glob("_*.py")):
        source = path.read_text(encoding="utf-8")
        names = set(re.findall(r"get_logger\(\s*\"(trio_ws_bus[\w.]*)\"", source))
        expected = "trio_ws_bus." + path.stem.lstrip("_")
        assert names - SHARED_LOGGERS <= {expected}, path.name


# --- README ------------------------------------------------------------------


def fenced_block(text: str, language: str) -> str:
    match = re.search(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no ```{language} block"
    return match[1]


def test_the_readme_start_list_names_every_page() -> None:
    """Each page of the docs (but the index) is in the README's "Start with" list."""
    start = README.read_text(encoding="utf-8").split("Start with:", 1)[1]
    start = start.split("Every code example", 1)[0]
    for path in rst_sources():
        page = path.relative_to(ROOT).as_posix()
        if page == "docs/index.rst" or page.startswith("docs/reference/"):
            continue  # the reference is listed as a whole: docs/reference/
        in_howto = page.startswith("docs/howto/") and f"`{path.name}`" in start
        assert page in start or in_howto, f"README's 'Start with' lacks {page}"


async def test_readme_example_prints_alerts(
    ws_bus_server: ReferenceServer,
    monkeypatch: pytest.MonkeyPatch,
    dead_proxy_env: str,
) -> None:
    """The README's example connects to the test kit's server and prints alerts.

    HTTP_PROXY and ALL_PROXY name a dead proxy: the loopback server is reached
    directly all the same.
    """
    code = fenced_block(README.read_text(encoding="utf-8"), "python")
    printed: list[str] = []
    alert_shown = trio.Event()

    def fake_print(*args: object) -> None:
        printed.append(" ".join(map(str, args)))
        if printed[-1] == "[5] device-1: Overheat":
            alert_shown.set()

    namespace: dict[str, Any] = {"__name__": "readme_example", "print": fake_print}
    exec(compile(code, str(README), "exec"), namespace)
    monkeypatch.setenv("OPS_TOKEN", ws_bus_server.issue_token())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(namespace["print_alerts"], ws_bus_server.url)
        await ws_bus_server.wait_subscribed("alerts")
        await ws_bus_server.publish_alerts(
            [make_alert(1, severity=5, summary="Overheat")]
        )
        with trio.fail_after(10):
            await alert_shown.wait()
        nursery.cancel_scope.cancel()
    assert printed[:3] == [
        "status: connecting",
        "status: connected",
        "[5] device-1: Overheat",
    ]


def test_readme_starts_with_the_two_commands() -> None:
    """The first block is the demo command, then the test command."""
    commands = fenced_block(README.read_text(encoding="utf-8"), "bash").splitlines()
    assert [line.split("#")[0].strip() for line in commands] == [
        "python3 -m venv .venv && .venv/bin/pip install -e '.[testing]'"
        " && .venv/bin/trio-ws-bus demo",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'"
        " && .venv/bin/python -m pytest",
    ]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'trio-ws-bus = "trio_ws_bus._cli:main"' in pyproject


def test_readme_links_work_on_the_package_index() -> None:
    """The README links only absolute https URLs: relative ones break on PyPI."""
    links = re.findall(r"\]\(([^)]+)\)", README.read_text(encoding="utf-8"))
    assert links
    for link in links:
        assert link.startswith("https://"), link


def test_readme_names_files_that_exist() -> None:
    """The docs files and folders the README names are in the repository."""
    named = re.findall(
        r"`((?:docs/|LICENSE)[^`]*)`", README.read_text(encoding="utf-8")
    )
    assert len(named) > 5
    for path in named:
        assert "_build" in path or (ROOT / path).exists(), path


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("demo", []),
        ("listen", ["--token-env", "--token-file", "--token-command"]),
        ("serve", []),
    ],
)
def test_readme_cli_commands_exist(command: str, words: list[str]) -> None:
    """The subcommands and options the README names are real."""
    result = subprocess.run(
        [sys.executable, "-m", "trio_ws_bus", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for word in words:
        assert word in result.stdout


# --- design.rst is checked against the library ----------------------------------


@pytest.mark.parametrize(
    ("module", "heading"),
    [
        ("trio_ws_bus._manager", "Rules of the connection task"),
        ("trio_ws_bus._lifecycle", "Rules (the browser client's"),
    ],
)
def test_design_page_quotes_the_rules(module: str, heading: str) -> None:
    """Every rule of the manager and of the lifecycle is in design.rst verbatim."""
    doc = importlib.import_module(module).__doc__
    assert doc is not None
    rules = doc.split(heading, 1)[1].split(":\n", 1)[1]
    bullets = [normalize(b) for b in re.split(r"^\* ", rules, flags=re.MULTILINE)]
    design = normalize((DOCS / "design.rst").read_text(encoding="utf-8"))
    assert len([b for b in bullets if b]) >= 3
    for bullet in filter(None, bullets):
        assert bullet in design, f"design.rst lacks the rule: {bullet}"


def event_table() -> dict[str, list[str]]:
    """The scenario -> events table of design.rst."""
    text = (DOCS / "design.rst").read_text(encoding="utf-8")
    start = text.index(".. csv-table:: Events published on CONNECTION_TOPIC")
    lines = text[start:].splitlines()[1:]
    body: list[str] = []
    for line in lines:
        if line and not line.startswith("   "):
            break
        if not line.strip().startswith(":"):
            body.append(line[3:] + "\n")
    return {
        scenario: [event.removeprefix("| ").strip() for event in cell.splitlines()]
        for scenario, cell in filter(None, csv.reader(body, skipinitialspace=True))
    }


def describe(event: ConnectionEvent) -> str:
    """An event in the table's notation."""
    fields = []
    if event.code is not None:
        fields.append(f"code={int(event.code)}")
    if event.reason is not None:
        fields.append(f"reason={event.reason}")
    if event.retry_in is not None:
        fields.append(f"retry_in={float(event.retry_in)!r}")
    if event.retry_count is not None:
        fields.append(f"retry_count={event.retry_count}")
    text = str(event.status)
    if event.message is not None:
        text += f": {event.message}"
    if fields:
        text += f" ({', '.join(fields)})"
    return text


def matches(actual: list[str], expected: list[str]) -> bool:
    """Equal, where an expected event ending in "…" only fixes the start."""
    return len(actual) == len(expected) and all(
        a.startswith(e[:-1]) if e.endswith("…") else a == e
        for a, e in zip(actual, expected, strict=True)
    )


Action = Callable[[ReferenceServer, WebSocketManager, list[str]], Awaitable[int]]


async def nothing(
    server: ReferenceServer, manager: WebSocketManager, events: list[str]
) -> int:
    return 0


async def once_connected(
    then: Callable[[ReferenceServer, WebSocketManager], Awaitable[object]],
    server: ReferenceServer,
    manager: WebSocketManager,
    events: list[str],
) -> int:
    await manager.wait_connected()
    start = len(events)
    await then(server, manager)
    return start


async def disconnect(server: ReferenceServer, manager: WebSocketManager) -> None:
    manager.disconnect()
    await trio.lowlevel.checkpoint()


async def disconnect_while_waiting(
    server: ReferenceServer, manager: WebSocketManager, events: list[str]
) -> int:
    async with manager.bus.subscribe(CONNECTION_TOPIC) as connection_events:
        async for event in connection_events:
            if event.retry_in is not None:
                break
    start = len(events)
    manager.disconnect()
    return start


def raises_once(server: ReferenceServer) -> TokenProvider:
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the token service is down")
        return server.issue_token()

    return provider


#: Scenario -> (prepare the server, token provider, backoff, action).
SCENARIOS: dict[
    str,
    tuple[
        Callable[[ReferenceServer], object],
        Callable[[ReferenceServer], TokenProvider],
        Backoff,
        Action,
    ],
] = {
    "connect ok": (
        lambda server: None,
        lambda server: server.issue_token(),
        Backoff(),
        nothing,
    ),
    "drop: the connection vanishes (no close frame) while connected": (
        lambda server: None,
        lambda server: server.issue_token(),
        Backoff(),
        partial(once_connected, lambda server, _: server.drop_connections()),
    ),
    'the server closes with 1001 "going away" while connected': (
        lambda server: None,
        lambda server: server.issue_token(),
        Backoff(),
        partial(
            once_connected,
            lambda server, _: server.close_connections(1001, "going away"),
        ),
    ),
    "refused handshake: the server answers HTTP 503, then accepts": (
        lambda server: server.reject_next(1, 503),
        lambda server: server.issue_token(),
        Backoff(),
        nothing,
    ),
    "unreachable: the connection is refused once": (
        lambda server: server.transport.fail_next(1),
        lambda server: server.issue_token(),
        Backoff(),
        nothing,
    ),
    "give up: unreachable, with Backoff(max_retries=1)": (
        lambda server: server.transport.fail_next(10),
        lambda server: server.issue_token(),
        Backoff(max_retries=1),
        nothing,
    ),
    "no token: the provider returns None": (
        lambda server: None,
        lambda server: lambda: None,
        Backoff(),
        nothing,
    ),
    "the token provider raises once": (
        lambda server: None,
        raises_once,
        Backoff(),
        nothing,
    ),
    "intentional disconnect() while connected": (
        lambda server: None,
        lambda server: server.issue_token(),
        Backoff(),
        partial(once_connected, disconnect),
    ),
    "intentional disconnect() while waiting to retry": (
        lambda server: server.transport.fail_next(1),
        lambda server: server.issue_token(),
        Backoff(),
        disconnect_while_waiting,
    ),
}


def test_event_table_lists_the_tested_scenarios() -> None:
    """design.rst's event table has exactly the scenarios checked here."""
    assert list(event_table()) == list(SCENARIOS)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_event_table_is_what_the_manager_publishes(
    scenario: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Each row of design.rst's event table, replayed against the manager."""
    prepare, make_token, backoff, action = SCENARIOS[scenario]
    expected = event_table()[scenario]
    events: list[str] = []
    bus = MessageBus()
    stop_recording = bus.on(CONNECTION_TOPIC, lambda e: events.append(describe(e)))
    async with open_reference_server(listen=False) as server:
        prepare(server)
        async with open_websocket_manager(
            "http://localhost",
            token=make_token(server),
            bus=bus,
            backoff=backoff,
            transport=server.transport,
        ) as manager:
            start = await action(server, manager, events)
            await trio.sleep(100)  # settle: every retry is over by then
            stop_recording()
    assert matches(events[start:], expected), events[start:]


# --- the docs build (needs Sphinx, from the dev extra) ---------------------------


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    """sphinx-build -W --keep-going succeeds."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
