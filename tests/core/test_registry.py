"""core.registry: trainers come from what the operator installed, by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.registry import GROUP, RegistryError, installed_trainers, parse_setting, registered
from tests.trainers import EXAMPLE, EXAMPLE_DIR


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("os:system", "'os:system' is not name=module:attr"),
        ("shell=os.system", "'shell=os.system' is not name=module:attr"),
        ("mlp=mypkg:Net", "'mlp' is the built-in net's name"),
        ("a b=mypkg:Net", "'a b=mypkg:Net' is not name=module:attr"),
    ],
)
def test_a_malformed_setting_is_refused_naming_the_entry(setting: str, message: str) -> None:
    with pytest.raises(RegistryError, match=f"HPSEARCH_TRAINERS: {message}"):
        parse_setting(setting)


def test_a_trainer_of_the_setting_is_loaded_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    trainers = installed_trainers(EXAMPLE)
    assert list(trainers) == ["twolayer"]
    assert trainers["twolayer"].__name__ == "TwoLayerTrainer"


def test_a_trainer_that_cannot_be_imported_is_named() -> None:
    with pytest.raises(RegistryError, match=r"trainer net \(HPSEARCH_TRAINERS no_such_mod:Net\)"):
        installed_trainers("net=no_such_mod:Net")


def test_a_target_that_declares_no_hyperparameters_is_refused() -> None:
    with pytest.raises(RegistryError, match="trainer sys: its `hyperparameters` must map"):
        installed_trainers("sys=os:getcwd")


def test_an_installed_package_registers_trainers_by_its_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `pip install` of a package with an hpsearch.trainers entry point leaves: its
    dist-info on sys.path."""
    dist = tmp_path / "my_cnn-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-cnn\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{GROUP}]\nmy-cnn = twolayer_trainer:TwoLayerTrainer\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    assert [(r.name, r.source) for r in registered()] == [("my-cnn", "entry point")]
    assert installed_trainers()["my-cnn"].__name__ == "TwoLayerTrainer"
    # The operator's setting wins over an entry point of the same name.
    [entry] = registered("my-cnn=twolayer_net:TwoLayerNet")
    assert entry.target == "twolayer_net:TwoLayerNet"
