"""Datasets, loaded once per worker process and shared by every trial it runs.

Trials run in the worker's own process (worker.runner), so a dataset is read and
preprocessed by the first trial that needs it and reused by every later one.
"""

from __future__ import annotations

from core.data import Dataset, load_dataset


class DatasetCache:
    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str, str], Dataset] = {}

    def get(self, spec: str, dtype: str = "float32", preprocessing: str = "mean") -> Dataset:
        key = (spec, dtype, preprocessing)
        if key not in self._loaded:
            self._loaded[key] = load_dataset(spec, dtype=dtype, preprocessing=preprocessing)
        return self._loaded[key]

    def __len__(self) -> int:
        return len(self._loaded)


# One per worker process: every trial the worker runs shares it.
DATASETS = DatasetCache()
