"""CIFAR-10 / CIFAR-100 from the python-version archives (the folders `cifar-10-batches-py`, `cifar-100-python`).

We read the pickled batches ourselves, in the layout torchvision reads (file names come from torchvision's own
class attributes), so that a copy whose bytes differ from the published md5s (a re-pickled or truncated copy, or
the tiny fixtures the tests write) still loads, with errors that name the file; torchvision is used to download
(`download=True`), which checks the archive's md5. info["md5_verified"] says whether every file matches.

Split: the training images are members, the test images non-members. The test images are halved: one half is
eval_nonmembers, the other the reference, halved again into known_nonmembers and val. eval_members and
known_members are drawn from the training images to match (balanced); the other training images are
extra_members (trained on, in no attack set). Full data: 5,000 eval / 2,500 known / 2,500 val / 42,500 extra.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from samprivacy.errors import ConfigError, DataError

from .base import DatasetArrays
from .splits import check_seed, make_splits

# The canonical pickles hold only dicts, lists, bytes and numpy arrays: refuse anything else rather than run it.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),  # pickle protocol <= 4
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5 (numpy >= 1.16)
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),  # _codecs: bytes in protocol 2 (Python 2)
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path, folder: str) -> dict:
    try:
        with open(path, "rb") as f:
            # latin1: the archives were pickled by Python 2 (torchvision reads them the same way)
            entry = _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: cannot read as a CIFAR python-version pickle ({e}); expected the extracted "
                        f"folder `{folder}` of the official archive, or pass --download to fetch it") from None
    if not isinstance(entry, dict):
        raise DataError(f"{path}: holds a {type(entry).__name__}; expected a dict with 'data' and labels")
    return entry


def _read_batches(folder: Path, files: list, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from the named batch files."""
    images, labels = [], []
    for name, _md5 in files:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: missing; the folder `{folder.name}` must hold {[f for f, _ in files]}")
        entry = _unpickle(path, folder.name)
        data = np.asarray(entry.get("data"))
        target = entry.get("labels", entry.get("fine_labels"))
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
            raise DataError(f"{path}: 'data' has shape {data.shape} dtype {data.dtype}; expected (N, 3072) uint8")
        target = np.asarray(target if target is not None else [], dtype=np.int64)
        if target.shape != (len(data),) or (target.size and (target.min() < 0 or target.max() >= n_classes)):
            raise DataError(f"{path}: expected {len(data)} labels ('labels' or 'fine_labels') in 0..{n_classes - 1}, "
                            f"got shape {target.shape}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(target)
    return np.concatenate(images), np.concatenate(labels)


def cifar_sizes(n_test: int) -> dict[str, int]:
    """Test images halved into eval_nonmembers and a reference, the reference halved into known_nonmembers and val."""
    n_eval = n_test // 2
    n_known = (n_test - n_eval) // 2
    return {"n_eval": n_eval, "n_known": n_known, "n_val": n_test - n_eval - n_known}


def _read_cifar(tv_class_name: str, n_classes: int, root: str | Path | None, seed: int, download: bool) -> DatasetArrays:
    import torchvision.datasets as tvd  # imported here: only CIFAR needs torchvision, and it is slow to import
    from torchvision.datasets.utils import check_integrity

    seed = check_seed(seed)
    tv_class = getattr(tvd, tv_class_name)
    name = tv_class_name.lower()
    if root is None:
        raise ConfigError(f"dataset '{name}' needs `root`: the folder that holds (or will hold, with --download) "
                          f"`{tv_class.base_folder}`")
    root = Path(root).expanduser()
    folder = root / tv_class.base_folder
    if download:
        root.mkdir(parents=True, exist_ok=True)
        tv_class(str(root), train=True, download=True)  # fetches and md5-checks the archive, then extracts it
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; pass --download to fetch it, or put the python-version "
                        f"archive's extracted folder `{tv_class.base_folder}` in {root}")
    x_train, y_train = _read_batches(folder, tv_class.train_list, n_classes)
    x_test, y_test = _read_batches(folder, tv_class.test_list, n_classes)

    x = np.concatenate([x_train, x_test]).astype(np.float32)
    x /= 255.0  # in place: the full float32 array is 737 MB
    mean = x[: len(x_train)].mean(axis=(0, 2, 3), keepdims=True)  # statistics of the training images only
    std = x[: len(x_train)].std(axis=(0, 2, 3), keepdims=True) + 1e-8
    x -= mean
    x /= std
    y = np.concatenate([y_train, y_test])

    splits = make_splits(np.arange(len(x_train)), len(x_train) + np.arange(len(x_test)), seed=seed,
                         **cifar_sizes(len(x_test)))  # type: ignore[arg-type]  # the sizes: ints by name
    files = [f for f, _ in tv_class.train_list + tv_class.test_list]
    verified = all(check_integrity(str(folder / f), md5) for f, md5 in tv_class.train_list + tv_class.test_list)
    return DatasetArrays(
        name=name, x=x, y=y, num_classes=n_classes, feature_kind="image",
        splits=splits,
        info={"source": str(folder), "files": files, "md5_verified": verified, "seed": seed,
              "mean": mean.ravel().tolist(), "std": std.ravel().tolist(), "n_train_images": len(x_train)},
    )


def read_cifar10(*, root: str | Path | None = None, seed: int = 0, download: bool = False) -> DatasetArrays:
    """CIFAR-10: 50,000 training images (members) and 10,000 test images (non-members), 10 classes."""
    return _read_cifar("CIFAR10", 10, root, seed, download)


def read_cifar100(*, root: str | Path | None = None, seed: int = 0, download: bool = False) -> DatasetArrays:
    """CIFAR-100 (fine labels): 50,000 training images (members) and 10,000 test images (non-members), 100 classes."""
    return _read_cifar("CIFAR100", 100, root, seed, download)
