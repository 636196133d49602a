"""core.npz writes what np.load and zipfile read back exactly, through both of its paths."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core import npz

ARRAYS = {
    "params/W1": np.arange(12, dtype=np.float32).reshape(3, 4),
    "scalar": np.array(2.5),
    "empty": np.zeros((0, 3)),
    "ints": np.arange(-5, 5, dtype=np.int64),
    "flags": np.array([True, False, True]),
    "bytes": np.frombuffer(b'{"json": 1}', dtype=np.uint8),
    "strided": np.arange(20.0).reshape(4, 5)[:, ::2],  # not contiguous: written in C order
}


def check(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None  # every entry's CRC matches its bytes
        assert sorted(archive.namelist()) == sorted(f"{name}.npy" for name in ARRAYS)
    with np.load(path) as loaded:
        for name, array in ARRAYS.items():
            assert loaded[name].dtype == array.dtype
            assert loaded[name].shape == array.shape
            np.testing.assert_array_equal(loaded[name], array)


def test_an_archive_reads_back_exactly_with_np_load_and_zipfile(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    with path.open("wb") as f:
        npz.write_npz(f, ARRAYS)
    check(path)


def test_an_archive_past_the_zip32_limit_is_written_by_zipfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = []
    monkeypatch.setattr(npz, "_ZIP32_LIMIT", 100)  # as if the arrays were 4 GiB
    original = npz._write_with_zipfile

    def through_zipfile(file: Any, entries: Any) -> None:
        written.append(1)
        original(file, entries)

    monkeypatch.setattr(npz, "_write_with_zipfile", through_zipfile)
    path = tmp_path / "big.npz"
    with path.open("wb") as f:
        npz.write_npz(f, ARRAYS)
    assert written == [1]
    with zipfile.ZipFile(path) as archive:
        assert all(info.file_size == info.compress_size for info in archive.infolist())
    check(path)


def test_an_entry_is_stored_as_np_savez_stores_it(tmp_path: Path) -> None:
    """The same .npy bytes as np.savez, uncompressed: tools that read either read both."""
    ours, theirs = tmp_path / "ours.npz", tmp_path / "theirs.npz"
    with ours.open("wb") as f:
        npz.write_npz(f, ARRAYS)
    np.savez(theirs, **ARRAYS)  # type: ignore[arg-type]
    with zipfile.ZipFile(ours) as a, zipfile.ZipFile(theirs) as b:
        for name in ARRAYS:
            entry = f"{name}.npy"
            assert a.getinfo(entry).compress_type == zipfile.ZIP_STORED
            assert a.read(entry) == b.read(entry)
