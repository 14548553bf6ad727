"""The developer tooling agrees with the package: nox, CI and the README."""

from __future__ import annotations

import re

from helpers import ROOT

PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
NOXFILE = (ROOT / "noxfile.py").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def extras() -> set[str]:
    """The optional-dependency groups pyproject.toml defines."""
    section = PYPROJECT.split("[project.optional-dependencies]\n", 1)[1]
    section = section.split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+) = \[", section, re.MULTILINE))


def claimed_pythons() -> list[str]:
    return re.findall(r'"Programming Language :: Python :: (3\.\d+)"', PYPROJECT)


def test_every_extra_nox_installs_exists() -> None:
    """A renamed extra breaks nox sessions (pip only warns): none is missing."""
    installed = {
        name
        for group in re.findall(r'"(?:-e", )?"\.\[([\w,-]+)\]"', NOXFILE)
        for name in group.split(",")
    }
    assert installed, "no '.[extra]' found in noxfile.py"
    assert installed <= extras(), sorted(installed - extras())


def test_nox_and_the_readme_claim_the_pythons_of_the_classifiers() -> None:
    """The nox test sessions and the README list the classifiers' versions."""
    versions = claimed_pythons()
    assert versions == ["3.10", "3.11", "3.12", "3.13"]
    nox_pythons = re.search(r"^PYTHONS = \[(.*)\]$", NOXFILE, re.MULTILINE)
    assert nox_pythons is not None
    assert re.findall(r'"([\d.]+)"', nox_pythons[1]) == versions
    listed = ", ".join(versions[:-1]) + f" and {versions[-1]}"
    assert f"Python {listed}; " in README


def test_ci_runs_the_readme_commands_in_venvs_of_its_own() -> None:
    """CI installs and tests as the README says, and never deletes a .venv."""
    assert ".venv/bin/pip install -e '.[dev]'" in README
    assert ".venv/bin/python -m pytest" in README
    assert "-m pip install --quiet -e '.[dev]'" in CI
    assert '"$VENV"/bin/python -m pytest\n' in CI
    assert '"$venv"/bin/python -m pytest\n' in CI
    removed = re.findall(r"rm -rf (\S+)", CI)
    assert removed == ['"$venv"', '"$RELEASE"\'']
    assert 'echo ".ci-venv-' in CI
    assert ".ci-venv*/" in (ROOT / ".gitignore").read_text(encoding="utf-8")
