"""The dataset registry: every source reads numpy arrays (`DatasetArrays`) with the same member / non-member
`Splits`; `load_dataset` turns them into the tensors training uses (`Dataset`).

    ds = load_dataset("digits", seed=0)         # tensors
    x, y = ds.subset("known_members")
    arrays = read_dataset("digits", seed=0)     # the same as numpy arrays, read and checked without torch

Every reader takes the keyword arguments root, seed and download, plus options of its own (longtail: n,
classes, dim, subpopulations, zipf, noise, data_seed). The seed fixes the split: the same seed gives identical
index arrays. Nothing downloads unless `download=True` is passed (CIFAR only).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samprivacy import catalog
from samprivacy.errors import ConfigError

from .base import SPLIT_NAMES, Dataset, DatasetArrays, FeatureKind, Splits
from .splits import check_splits, make_splits, random_pools


def _import(target: str) -> Callable[..., DatasetArrays]:
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


# The registry is catalog.DATASETS (name -> "module:reader"); each source is one file of this package.
DATASETS: dict[str, Callable[..., DatasetArrays]] = {name: _import(entry.reader)
                                               for name, entry in sorted(catalog.DATASETS.items())}
_COMMON = ("root", "seed", "download")


def available_datasets() -> list[str]:
    return sorted(DATASETS)


def dataset_options(name: str) -> dict[str, object]:
    """The source-specific options of dataset `name` and their defaults."""
    params = inspect.signature(_reader(name)).parameters
    return {k: p.default for k, p in params.items() if k not in _COMMON}


def load_dataset(
    name: str, *, root: str | Path | None = None, seed: int = 0, download: bool = False, **options: Any
) -> Dataset:
    """Load dataset `name` with its partition fixed by `seed`; see each reader for `root` and `options`."""
    return read_dataset(name, root=root, seed=seed, download=download, **options).tensors()


def read_dataset(
    name: str, *, root: str | Path | None = None, seed: int = 0, download: bool = False, **options: Any
) -> DatasetArrays:
    """`load_dataset` without torch: the same checks of every file and option, the same arrays and splits.
    torch is not imported (CIFAR excepted: its file list comes from torchvision)."""
    known = dataset_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown option{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))} for dataset "
                          f"'{name}'; choose from: {', '.join(known) or '(none)'}")
    return _reader(name)(root=root, seed=seed, download=download, **options)


def _reader(name: str) -> Callable[..., DatasetArrays]:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose from: {', '.join(available_datasets())}")
    return DATASETS[name]


__all__ = [
    "DATASETS", "SPLIT_NAMES", "Dataset", "DatasetArrays", "FeatureKind", "Splits", "available_datasets",
    "check_splits", "dataset_options", "load_dataset", "make_splits", "random_pools", "read_dataset",
]
