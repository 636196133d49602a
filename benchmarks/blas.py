"""Which BLAS kernel a benchmark's NumPy runs, printed first by every benchmark.

This workplace sets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which force OpenBLAS onto slower
kernels (about 1.9x slower GEMM here) than a user's machine gets: a benchmark run as a user's
machine runs unsets both (`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 ...`), and
this line shows whether it did.
"""

from __future__ import annotations

import os

import numpy as np

FORCING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def describe_blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS: unknown (pip install -e '.[bench]' -c constraints.txt adds threadpoolctl)"
    np.ones((2, 2)) @ np.ones((2, 2))  # loads the BLAS library if nothing has yet
    libraries = [
        f"{info.get('internal_api')} {info.get('version')}, kernel "
        f"{info.get('architecture')}, {info.get('num_threads')} thread(s)"
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    forced = [f"{name}={os.environ[name]}" for name in FORCING if name in os.environ]
    note = f" (forced by {', '.join(forced)}: not a user's machine)" if forced else ""
    return "BLAS: " + ("; ".join(libraries) or "none found") + note
