"""scikit-learn's bundled 8x8 handwritten digits: real data that ships with the package, the embedded default.

1,797 images, flattened to 64 features in [0, 1] (pixel counts 0..16, divided by 16), 10 classes.
Split: 800 members (400 known / 400 eval), 800 non-members (400 known / 400 eval), val the remaining 197.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np

from samprivacy.compat import sklearn_digits_file

from .base import DatasetArrays
from .splits import check_seed, make_splits, random_pools

N_MEMBERS, N_KNOWN, N_EVAL = 800, 400, 400


def read_digits(*, root: str | Path | None = None, seed: int = 0, download: bool = False) -> DatasetArrays:
    """The digits dataset; `root` and `download` are ignored (the data is inside scikit-learn)."""
    seed = check_seed(seed)
    pixels, labels = _read_digits()
    x = (pixels / 16.0).astype(np.float32)  # pixel values are counts 0..16 of a 4x4 block
    y = labels.astype(np.int64)
    members, nonmembers = random_pools(len(y), N_MEMBERS, seed)
    splits = make_splits(members, nonmembers, n_known=N_KNOWN, n_eval=N_EVAL, seed=seed)
    return DatasetArrays(
        name="digits", x=x, y=y, num_classes=10,
        feature_kind="continuous", splits=splits,
        info={"source": f"sklearn.datasets.load_digits (scikit-learn {version('scikit-learn')})", "seed": seed},
    )


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 64) pixel counts and (1797,) labels: scikit-learn's bundled table, read as its load_digits reads
    it, without importing scikit-learn where the file is found (samprivacy.compat)."""
    path = sklearn_digits_file()
    if path is None:
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        return bunch.data, bunch.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)
