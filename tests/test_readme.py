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
    assert len(commands) >= 2
    assert text.index(commands[1]) < 2500  # near the top
    run, test = commands[0], commands[1]
    assert "pip install -e ." in run and "hpsearch" in run
    assert 'pip install -e ".[test]"' in test and "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = readme_commands()[1]
    assert any(line.strip() == test_command for line in ci.splitlines()), test_command
