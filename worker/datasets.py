"""Datasets, loaded once per worker process and shared by every trial it runs.

The worker loads a job's dataset in its main process before it forks the work horse (see
worker.runner), so every horse inherits the arrays instead of loading them again.
"""

from __future__ import annotations

from core.data import Dataset, load_dataset


class DatasetCache:
    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str], Dataset] = {}

    def get(self, spec: str, dtype: str = "float32") -> Dataset:
        key = (spec, dtype)
        if key not in self._loaded:
            self._loaded[key] = load_dataset(spec, dtype=dtype)
        return self._loaded[key]

    def __len__(self) -> int:
        return len(self._loaded)


# One per process on purpose: it is what lets a forked work horse reuse its parent's arrays.
DATASETS = DatasetCache()
