"""Writing .npz archives: an uncompressed zip of .npy files, what np.savez writes and np.load
reads.

A worker writes a checkpoint at every epoch end. Through zipfile, its dozen entries cost as
much CPU as their bytes did (an entry's headers built and written twice, a seek back to
patch in sizes and CRC, a zip64 record each); here the sizes are known up front, each entry
is one small write and one write of the array's own memory, and the .npy headers of arrays
whose shape does not change are built once. An archive of 4 GiB or more, which needs zip64
records, goes through zipfile.
"""

from __future__ import annotations

import io
import struct
import time
import zipfile
import zlib
from functools import lru_cache
from typing import BinaryIO

import numpy as np

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_VERSION = 20  # 2.0: stored entries, no zip64
_MADE_ON_UNIX = 3 << 8
_FILE_MODE = 0o600 << 16  # what zipfile gives an entry it writes
_ZIP32_LIMIT = 0xFFFFFFFF
_MAX_ENTRIES = 0xFFFF


def write_npz(file: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to `file` as np.savez would (uncompressed), each as `<name>.npy`."""
    entries = []
    for key, array in arrays.items():
        array = np.asarray(array, order="C")  # the header says C order
        data = array.reshape(-1).view(np.uint8).data
        entries.append((f"{key}.npy".encode(), _npy_header(array.dtype, array.shape), data))
    # Each entry's name is in its local header and in the central directory.
    total = sum(_LOCAL.size + _CENTRAL.size + 2 * len(n) + len(h) + d.nbytes for n, h, d in entries)
    if total >= _ZIP32_LIMIT or len(entries) > _MAX_ENTRIES:
        _write_with_zipfile(file, entries)
        return
    dos_time, dos_date = _dos_now()
    central = []
    offset = 0
    for name, header, data in entries:
        crc = zlib.crc32(data, zlib.crc32(header))
        size = len(header) + data.nbytes
        local = _LOCAL.pack(
            0x04034B50, _VERSION, 0, zipfile.ZIP_STORED, dos_time, dos_date, crc, size, size,
            len(name), 0,
        )  # fmt: skip
        file.write(local + name + header)
        file.write(data)
        record = _CENTRAL.pack(
            0x02014B50, _VERSION | _MADE_ON_UNIX, _VERSION, 0, zipfile.ZIP_STORED,
            dos_time, dos_date, crc, size, size, len(name), 0, 0, 0, 0, _FILE_MODE, offset,
        )  # fmt: skip
        central.append(record + name)
        offset += len(local) + len(name) + size
    directory = b"".join(central)
    end = _END.pack(0x06054B50, 0, 0, len(entries), len(entries), len(directory), offset, 0)
    file.write(directory + end)


@lru_cache(maxsize=256)
def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    header = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(dtype)
    np.lib.format.write_array_header_1_0(
        header, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return header.getvalue()


def _dos_now() -> tuple[int, int]:
    """The local time as a zip entry stores it (two-second steps), as zipfile does."""
    t = time.localtime()
    dos_time = t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2
    dos_date = max(0, t.tm_year - 1980) << 9 | t.tm_mon << 5 | t.tm_mday
    return dos_time, dos_date


def _write_with_zipfile(file: BinaryIO, entries: list[tuple[bytes, bytes, memoryview]]) -> None:
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, header, data in entries:
            with archive.open(name.decode(), "w", force_zip64=True) as entry:
                entry.write(header)
                entry.write(data)
