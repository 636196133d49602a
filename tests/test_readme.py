"""The README's two set-up commands are the ones CI runs and the ones that work."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```sh\n(.+?)\n```", text, flags=re.M)


def test_readme_has_exactly_two_setup_commands_near_the_top() -> None:
    text = (ROOT / "README.md").read_text()
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert text.index(commands[1]) < 2500  # near the top
    run, test = commands
    assert "pip install -e . -c constraints.txt" in run and "hpsearch up" in run
    assert 'pip install -e ".[test]" -c constraints.txt' in test and "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = readme_commands()[1]
    assert any(line.strip() == test_command for line in ci.splitlines()), test_command


def test_ci_installs_into_a_new_virtual_environment() -> None:
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    made = next(i for i, line in enumerate(lines) if line.startswith("python3 -m venv "))
    activated = next(i for i, line in enumerate(lines) if "/bin/activate" in line)
    installed = lines.index(readme_commands()[1])
    assert made < activated < installed
