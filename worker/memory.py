"""Keeping the memory a trial frees for its next iteration, instead of handing it back to the
kernel and faulting it in again.

glibc's malloc returns the top of its heap to the kernel once more than M_TRIM_THRESHOLD is
free there, and serves blocks above M_MMAP_THRESHOLD from fresh mappings; both thresholds
start at 128 KiB and only grow as mapped blocks are freed. A training step
allocates and frees arrays of about that size every iteration (a 100 x 256 batch of float64
activations is 200 KiB), so the heap shrinks and grows again all the time, each time as page
faults: 1500 an epoch of the search benchmark's model, 2.4-3.5 ms of its 35-40 ms in the
kernel, and slower epochs besides (measured in one fresh process each, 3 alternations: 38.3
against 34.8 ms an epoch, the same 46 MB peak). A worker is a long-lived process that trains
one trial after another: it keeps up to TRIM_BYTES free for the next one instead.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)
# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks below this come from the heap, as glibc's own threshold would let them once it had
# grown: 32 MiB is glibc's ceiling for it on 64-bit machines. Larger ones (a big dataset
# array) are mapped as before, and unmapped when freed.
MMAP_BYTES = 32 * 1024 * 1024
# What the heap keeps free before it gives memory back: a trial's working set several times
# over, and a bound on what an idle worker holds beyond its peak use.
TRIM_BYTES = 64 * 1024 * 1024
# Set by the user for glibc itself: theirs is kept.
GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds for this process; False where that is not
    done (another C library, or the user set glibc's own variables)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in GLIBC_VARIABLES):
        log.info("malloc thresholds left as the environment sets them")
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_BYTES)
    )
    if not applied:
        log.warning("glibc refused the malloc thresholds; training pays page faults")
    return applied
