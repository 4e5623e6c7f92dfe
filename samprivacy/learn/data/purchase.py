"""Purchase-100 (Shokri et al. 2017): 197,324 shoppers, 600 binary "bought item j" features, 100 classes.

Reads, under `root` (or `root` itself when it is one of these files), the first that exists:
  purchase100.npz    keys features/labels (or X/Y, x/y); labels integer or one-hot
  X.npy + Y.npy      MIAdefenseSELENA's prepare_dataset.py output (labels already 0-based)
  dataset_purchase   the canonical raw file: comma-separated, no header, column 0 the label 1..100,
                     then 600 binary features (from the dataset_purchase.tgz tarball)
Split: SELENA's 19,732 members / 29,599 reference on the full file, scaled by the same fractions on a smaller one
(see `_tabular.selena_sizes`).
"""

from __future__ import annotations

from pathlib import Path

from .base import DatasetArrays
from ._tabular import TabularSpec, check_features, check_labels, check_rows, read_npy, read_npz, read_text
from ._tabular import require_root, tabular_dataset
from .splits import check_seed
import numpy as np

SPEC = TabularSpec(
    name="purchase100", n_features=600, n_classes=100, canonical_size=197_324, members=19_732, reference=29_599,
    canonical="Shokri et al. 2017 Purchase-100 (Kaggle Acquire Valued Shoppers)",
)
EXPECTED = ("purchase100.npz, X.npy + Y.npy, or dataset_purchase (comma-separated, no header: "
            "label 1..100 then 600 binary features)")


def read_purchase100(*, root: str | Path | None = None, seed: int = 0, download: bool = False) -> DatasetArrays:
    """Purchase-100 from local files (never downloads: the data sits behind the authors' and Kaggle's terms)."""
    seed = check_seed(seed)
    root = require_root(root, SPEC, EXPECTED)
    if root.is_file():
        x, y, source = _read_file(root)
    elif (root / "purchase100.npz").is_file():
        x, y, source = _read_file(root / "purchase100.npz")
    elif (root / "X.npy").is_file() and (root / "Y.npy").is_file():
        xs, ys = read_npy(root / "X.npy", SPEC), read_npy(root / "Y.npy", SPEC)
        check_rows(xs, ys, root / "X.npy", root / "Y.npy", SPEC)
        x, y = check_features(xs, root / "X.npy", SPEC), check_labels(ys, root / "Y.npy", SPEC, one_based=None)
        source = root / "X.npy"
    elif (root / "dataset_purchase").is_file():
        x, y, source = _read_file(root / "dataset_purchase")
    else:
        raise SPEC.fail(root, f"no Purchase-100 file here; expected {EXPECTED} (samprivacy does not download it)")
    return tabular_dataset(SPEC, x, y, seed, source)


def _read_file(path: Path) -> tuple[np.ndarray, np.ndarray, Path]:
    if path.suffix == ".npz":
        xs, ys = read_npz(path, SPEC)
        check_rows(xs, ys, path, path, SPEC)
        return check_features(xs, path, SPEC), check_labels(ys, path, SPEC, one_based=None), path
    table = read_text(path, SPEC, ndmin=2)
    if table.shape[1] != SPEC.n_features + 1:
        raise SPEC.fail(path, f"has {table.shape[1]} columns; expected 601: the label 1..100, then 600 binary features")
    x = check_features(table[:, 1:], path, SPEC, row="line")
    y = check_labels(table[:, 0], path, SPEC, one_based=True, row="line")
    return x, y, path
