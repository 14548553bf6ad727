"""nox sessions: tests on every supported Python, lint, typing, docs, benchmarks."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy --strict."""
    session.install("-e", ".[dev,lint]")
    session.run("mypy", "--strict", "trio_ws_bus")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs, warnings as errors."""
    session.install("-e", ".[docs,testing,otel]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and write bench/results/latest.json."""
    session.install("-e", ".[bench,testing]")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation-test the pure modules (on demand: about 5 minutes on one core).

    Settings are in ``[tool.mutmut]`` of pyproject.toml; pass ``-- --max-children
    N`` to use more cores. ``mutmut results`` lists the survivors afterwards.
    """
    session.install("-e", ".[dev]", "mutmut>=3.3")
    session.run("mutmut", "run", *(session.posargs or ["--max-children", "1"]))
    session.run("mutmut", "results")
