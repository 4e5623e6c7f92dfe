"""Shared test data: tiny in-memory datasets (`make_blobs`) and writers of each canonical dataset format under
tmp_path (raw CSV, npz, CIFAR pickles); nothing downloads."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from samprivacy.learn.data.base import Dataset
from samprivacy.learn.data.splits import make_splits


def make_blobs(n_per_split: int = 64, dim: int = 8, classes: int = 3, image: bool = False, seed: int = 0) -> Dataset:
    """Well-separated Gaussian classes a tiny model learns in a few epochs; image=True gives (1, dim, dim) images.

    Five equal splits (known/eval members, known/eval non-members, val) of n_per_split examples each.
    """
    g = np.random.default_rng(seed)
    n = 5 * n_per_split
    shape = (1, dim, dim) if image else (dim,)
    centres = 3.0 * g.standard_normal((classes, *shape))
    y = np.arange(n) % classes
    x = centres[y] + g.standard_normal((n, *shape))
    order = g.permutation(n)
    members, nonmembers = order[: 2 * n_per_split], order[2 * n_per_split :]
    splits = make_splits(members, nonmembers, n_known=n_per_split, n_eval=n_per_split, seed=seed)
    return Dataset("blobs", torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64), classes,
                   "image" if image else "continuous", splits)


@pytest.fixture
def blobs() -> Dataset:
    return make_blobs()


def binary_table(n: int, d: int, classes: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n rows of d binary features and 0-based labels covering 0 and classes - 1 (so the label base is visible)."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, d)) < 0.2).astype(np.int8)
    y = rng.integers(0, classes, n)
    y[:2] = (0, classes - 1)
    return x, y


def write_csv(path: Path, table: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, table, delimiter=",", fmt="%d")
    return path


@pytest.fixture
def purchase_raw(tmp_path):
    """`dataset_purchase`: label 1..100 then 600 binary features, no header (60 rows)."""
    def write(n: int = 60, root: Path | None = None):
        x, y = binary_table(n, 600)
        root = root or tmp_path / "purchase"
        write_csv(root / "dataset_purchase", np.column_stack([y + 1, x]))
        return root, x, y
    return write


@pytest.fixture
def texas_raw(tmp_path):
    """`texas/100/feats` (6,169 binary columns) and `texas/100/labels` (one label 1..100 per line), 40 rows."""
    def write(n: int = 40):
        x, y = binary_table(n, 6169, seed=1)
        root = tmp_path / "texasroot"
        write_csv(root / "texas" / "100" / "feats", x)
        write_csv(root / "texas" / "100" / "labels", (y + 1)[:, None])
        return root, x, y
    return write


def cifar_entry(n: int, classes: int, seed: int, label_key: str) -> dict:
    rng = np.random.default_rng(seed)
    return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key: rng.integers(0, classes, n).tolist(), "batch_label": f"fake batch {seed}"}


@pytest.fixture
def fake_cifar(tmp_path):
    """Tiny CIFAR folders in torchvision's on-disk layout: cifar-10-batches-py or cifar-100-python."""
    def write(kind: str = "cifar10", per_batch: int = 8, n_test: int = 20, protocol: int = pickle.HIGHEST_PROTOCOL):
        root = tmp_path / "cifar"
        if kind == "cifar10":
            folder, key, classes = root / "cifar-10-batches-py", "labels", 10
            batches = {f"data_batch_{i}": per_batch for i in range(1, 6)} | {"test_batch": n_test}
            meta = ("batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
        else:
            folder, key, classes = root / "cifar-100-python", "fine_labels", 100
            batches = {"train": 5 * per_batch, "test": n_test}
            meta = ("meta", {"fine_label_names": [f"class{i}" for i in range(100)]})
        folder.mkdir(parents=True)
        for seed, (name, n) in enumerate(batches.items()):
            (folder / name).write_bytes(pickle.dumps(cifar_entry(n, classes, seed, key), protocol=protocol))
        (folder / meta[0]).write_bytes(pickle.dumps(meta[1], protocol=protocol))
        return root, folder
    return write
