"""constraints.txt pins every dependency pyproject.toml declares, within its bounds."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    chosen = [*project["dependencies"], *extras["test"], *extras["bench"], *extras["torch"]]
    return [Requirement(r) for r in chosen]


def pinned() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_declared_dependency_is_pinned_within_its_bounds() -> None:
    pins = pinned()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in constraints.txt: run bash .ci/lock"
        assert requirement.specifier.contains(pins[name]), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's "
            f"{requirement}: run bash .ci/lock"
        )
        for extra in requirement.extras:  # psycopg[binary] brings psycopg-binary
            assert canonicalize_name(f"{name}-{extra}") in pins, f"{name}[{extra}]"


def test_the_known_breaking_pytest_is_kept_out() -> None:
    pytest = next(r for r in declared() if r.name == "pytest")
    assert not pytest.specifier.contains("9.2.0")


def test_every_package_directory_is_installed() -> None:
    """A non-editable install (the Dockerfile's) has only the packages pyproject.toml lists:
    one left out (e.g. the schema migrations) is missing from the image."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("core", "master", "worker", "dashboard")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)


def test_torch_is_pinned_to_the_cpu_build_never_a_range() -> None:
    """Any torch newer than the CPU build these machines hold is a multi-GB CUDA download."""
    [torch] = [r for r in declared() if r.name == "torch"]
    assert str(torch.specifier) == "==2.13.0"
