"""core.contract_check and `hpsearch check-trainer`: a user trainer checked against the
contract before a sweep relies on it."""

from __future__ import annotations

from typing import Any

import pytest

from core.contract_check import check_trainer
from core.data import Dataset, load_dataset
from master.cli import main
from tests.trainers import (
    EXAMPLE,
    EXAMPLE_DIR,
    ForgetfulTrainer,
    ScoresTrainer,
    UnsavedRngTrainer,
    example_trainer,
)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_the_example_passes_every_check(digits: Dataset) -> None:
    findings = check_trainer("twolayer", example_trainer(), digits, {"learning_rate": 1e-2})
    assert [f.ok for f in findings] == [True] * 5, findings
    assert findings[3].text.startswith("resumes exactly from a state saved at iteration 12 of 22")
    assert findings[4].text.startswith("goes on exactly from a checkpoint file (1 -> 2 epochs")


@pytest.mark.parametrize(
    ("cls", "failures"),
    [
        (
            UnsavedRngTrainer,  # neither a saved state nor a file brings its RNG back
            [
                "resumes differently: iteration 24's cost is",
                "goes on differently: iteration 23's cost is",
            ],
        ),
        (ForgetfulTrainer, ["trainer checked: load_state raised KeyError: 'steps'"]),
        (ScoresTrainer, ["probabilities: rows sum to 1 within 9, not 0.0001"]),
    ],
)
def test_a_trainer_that_breaks_the_contract_fails_the_checks_that_show_it(
    digits: Dataset, cls: Any, failures: list[str]
) -> None:
    findings = check_trainer("checked", cls, digits, {})
    failed = [f.text for f in findings if not f.ok]
    assert len(failed) == len(failures), findings
    for text, start in zip(failed, failures, strict=True):
        assert text.startswith(start), text


def test_the_command_exits_1_on_a_failed_check_and_2_for_a_trainer_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HPSEARCH_TRAINERS", f"{EXAMPLE},rng=tests.trainers:UnsavedRngTrainer")
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    assert main(["check-trainer", "twolayer", "--set", "learning_rate=1e-2"]) == 0
    assert "every check passed" in capsys.readouterr().out
    assert main(["check-trainer", "rng"]) == 1
    out = capsys.readouterr().out
    assert "  FAIL  resumes differently" in out and "2 check(s) failed" in out
    assert main(["check-trainer", "cnn"]) == 2
    assert "trainer 'cnn' is not installed here (installed: rng, twolayer)" in (
        capsys.readouterr().err
    )
    assert main(["check-trainer", "twolayer", "--set", "hidden_size"]) == 2
    assert "--set: 'hidden_size' is not NAME=VALUE" in capsys.readouterr().err
