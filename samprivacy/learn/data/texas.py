"""Texas-100 (Shokri et al. 2017): 67,330 hospital discharges, 6,169 binary features, 100 classes (procedures).

Reads, under `root` (or `root` itself when it is one of these files), the first that exists:
  texas100.npz                     keys features/labels (or X/Y, x/y); labels integer or one-hot
  feats.npy + labels.npy           MIAdefenseSELENA's prepare_dataset.py output (labels already 0-based)
  texas/100/feats + .../labels     the canonical raw files from dataset_texas.tgz: comma-separated, no header,
                                   6,169 binary features per line; one label 1..100 per line
  feats + labels                   the same two raw files, when `root` is the texas/100 folder itself
Split: SELENA's 10,000 members / 20,199 reference on the full file, scaled by the same fractions on a smaller one
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
    name="texas100", n_features=6169, n_classes=100, canonical_size=67_330, members=10_000, reference=20_199,
    canonical="Shokri et al. 2017 Texas-100 (Texas Department of State Health Services hospital discharge data)",
)
EXPECTED = ("texas100.npz, feats.npy + labels.npy, or texas/100/feats + texas/100/labels (comma-separated, "
            "no header: 6,169 binary features per line; one label 1..100 per line)")


def read_texas100(*, root: str | Path | None = None, seed: int = 0, download: bool = False) -> DatasetArrays:
    """Texas-100 from local files (never downloads: the data sits behind the authors' terms)."""
    seed = check_seed(seed)
    root = require_root(root, SPEC, EXPECTED)
    npz = root if root.is_file() else root / "texas100.npz"
    if npz.is_file():
        xs, ys = read_npz(npz, SPEC)
        check_rows(xs, ys, npz, npz, SPEC)
        x, y = check_features(xs, npz, SPEC), check_labels(ys, npz, SPEC, one_based=None)
        return tabular_dataset(SPEC, x, y, seed, npz)
    if (root / "feats.npy").is_file() and (root / "labels.npy").is_file():
        x, y = _pair(root / "feats.npy", root / "labels.npy", binary_files=True)
        return tabular_dataset(SPEC, x, y, seed, root / "feats.npy")
    for folder in (root / "texas" / "100", root):
        if (folder / "feats").is_file() or (folder / "labels").is_file():
            x, y = _pair(folder / "feats", folder / "labels", binary_files=False)
            return tabular_dataset(SPEC, x, y, seed, folder / "feats")
    raise SPEC.fail(root, f"no Texas-100 files here; expected {EXPECTED} (samprivacy does not download it)")


def _pair(feats: Path, labels: Path, binary_files: bool) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels from two files, checked row by row against each other."""
    for path in (feats, labels):
        if not path.is_file():
            raise SPEC.fail(path, f"missing; Texas-100 needs both {feats.name} and {labels.name}")
    if binary_files:
        xs, ys = read_npy(feats, SPEC), read_npy(labels, SPEC)
    else:
        xs, ys = read_text(feats, SPEC, ndmin=2), read_text(labels, SPEC, ndmin=1)
    check_rows(xs, ys, feats, labels, SPEC)
    row = "row" if binary_files else "line"
    # The raw labels file is 1-based by construction; the .npy files follow the inference in _tabular.
    one_based = None if binary_files else True
    return check_features(xs, feats, SPEC, row=row), check_labels(ys, labels, SPEC, one_based=one_based, row=row)
