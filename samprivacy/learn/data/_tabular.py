"""Shared reading, validation and SELENA-sized splitting for the binary tabular sources (Purchase-100, Texas-100).

Formats read (each source names its files):
  raw text   comma-separated numbers, no header; labels 1..C (the canonical tarballs of Shokri et al. 2017)
  .npz       features under `features`, `X` or `x`; labels under `labels`, `Y` or `y` (integer or one-hot)
  .npy pair  features and labels in two files (MIAdefenseSELENA's prepare_dataset.py writes these 0-based)
Integer labels in the numpy forms are taken as 0-based unless they reach C, which only 1-based labels do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samprivacy.errors import ConfigError, DataError

from .base import DatasetArrays
from .splits import make_splits, random_pools

FEATURE_KEYS = ("features", "X", "x")
LABEL_KEYS = ("labels", "Y", "y")


@dataclass(frozen=True)
class TabularSpec:
    """What one binary tabular source looks like and how SELENA (Tang et al. 2022) split it."""

    name: str
    n_features: int
    n_classes: int
    canonical_size: int  # rows in the full canonical file
    members: int  # SELENA's training set on the full file
    reference: int  # SELENA's reference set on the full file (known_nonmembers + val here)
    canonical: str  # where the data comes from, for error messages

    def fail(self, path: Path | str, problem: str) -> DataError:
        return DataError(f"{path}: {problem}; canonical data: {self.canonical}, see README")


def require_root(root: str | Path | None, spec: TabularSpec, expected: str) -> Path:
    if root is None:
        raise ConfigError(f"dataset '{spec.name}' needs `root`: the folder holding {expected}")
    root = Path(root).expanduser()
    if not root.exists():
        raise spec.fail(root, f"no such file or folder; expected a folder holding {expected} "
                              "(samprivacy does not download this dataset)")
    return root


def read_text(path: Path, spec: TabularSpec, ndmin: int) -> np.ndarray:
    """A comma-separated numeric file as float32, with numpy's row/column diagnosis kept in the message."""
    if path.stat().st_size == 0:
        raise spec.fail(path, "is empty; expected comma-separated numbers, one example per line")
    try:
        # float32 holds 0/1 and labels up to 100 exactly, at half the memory of float64.
        return np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=ndmin)  # type: ignore[call-overload]  # numpy stubs: ndmin is 0, 1 or 2
    except (ValueError, OSError) as e:
        raise spec.fail(path, f"cannot read as comma-separated numbers without a header ({e})") from None


def read_npz(path: Path, spec: TabularSpec) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            xkey = next((k for k in FEATURE_KEYS if k in f.files), None)
            ykey = next((k for k in LABEL_KEYS if k in f.files), None)
            if xkey is None or ykey is None:
                raise spec.fail(path, f"has keys {sorted(f.files)}; expected features under one of {FEATURE_KEYS} "
                                      f"and labels under one of {LABEL_KEYS}")
            return f[xkey], f[ykey]
    except DataError:
        raise  # our own diagnosis (a ValueError too): keep it as it is
    except (ValueError, OSError) as e:
        raise spec.fail(path, f"not a readable .npz archive ({e})") from None


def read_npy(path: Path, spec: TabularSpec) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise spec.fail(path, f"not a readable .npy array ({e})") from None


def check_features(x: np.ndarray, path: Path, spec: TabularSpec, row: str = "row") -> np.ndarray:
    """(N, n_features) binary float32, or a DataError naming the first offending row and column."""
    if x.ndim != 2 or x.shape[1] != spec.n_features or x.shape[0] == 0:
        raise spec.fail(path, f"features have shape {x.shape}; expected (N, {spec.n_features}) with N >= 1")
    _require_numbers(x, path, spec, "features")
    for start in range(0, len(x), 4096):  # in blocks: a full-size mask of Texas-100 would take 400 MB
        bad = np.argwhere((x[start : start + 4096] != 0) & (x[start : start + 4096] != 1))
        if bad.size:
            i, j = bad[0][0] + start, bad[0][1]
            raise spec.fail(path, f"{_where(i, row)}, feature {j + 1} of {spec.n_features} holds "
                                  f"{x[i, j].item():g}; expected {spec.n_features} binary features (0 or 1)")
    return np.ascontiguousarray(x, dtype=np.float32)


def check_labels(y: np.ndarray, path: Path, spec: TabularSpec, one_based: bool | None, row: str = "row") -> np.ndarray:
    """Labels as int64 in [0, n_classes). one_based None: infer (see module docstring); one-hot rows allowed."""
    c = spec.n_classes
    _require_numbers(y, path, spec, "labels")
    if y.ndim == 2 and y.shape[1] == c and np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all():
        return y.argmax(1).astype(np.int64)  # one-hot, as in the public purchase100.npz / texas100.npz
    if y.ndim != 1 or y.size == 0:
        raise spec.fail(path, f"labels have shape {y.shape}; expected (N,) class ids or (N, {c}) one-hot rows")
    if one_based is None:
        one_based = bool(y.min() >= 1 and y.max() == c)
    low, high = (1, c) if one_based else (0, c - 1)
    bad = np.flatnonzero((y != np.round(y)) | (y < low) | (y > high))
    if bad.size:
        i = bad[0]
        raise spec.fail(path, f"{_where(i, row)} has label {y[i].item():g}; "
                              f"expected integer class ids in {low}..{high} ({c} classes)")
    return y.astype(np.int64) - int(one_based)


def _require_numbers(a: np.ndarray, path: Path, spec: TabularSpec, what: str) -> None:
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise spec.fail(path, f"{what} have dtype {a.dtype}; expected numbers")


def _where(i: int, row: str) -> str:
    """Text files are read by editors in 1-based lines; arrays by 0-based rows."""
    return f"line {i + 1}" if row == "line" else f"row {i}"


def check_rows(x: np.ndarray, y: np.ndarray, xpath: Path, ypath: Path, spec: TabularSpec) -> None:
    if len(x) != len(y):
        raise spec.fail(ypath, f"has {len(y)} labels but {xpath} has {len(x)} feature rows; expected one label per row")


def selena_sizes(n: int, spec: TabularSpec) -> dict[str, int]:
    """SELENA's sizes, scaled to a file of n rows by the same fractions of the file.

    members = round(n * members / canonical_size), halved into known_members and eval_members;
    reference = round(n * reference / canonical_size) = known_nonmembers (as many as known_members) + val;
    eval_nonmembers: as many as eval_members, drawn from the remaining rows. On the full file this is exactly
    SELENA's split (Purchase-100: 19,732 / 29,599; Texas-100: 10,000 / 20,199).
    """
    sizes = _scaled(n, spec)
    if sizes is None:
        smallest = next(m for m in range(n + 1, 100 * n + 1000) if _scaled(m, spec))
        raise ConfigError(f"dataset '{spec.name}' has {n} rows: too few for SELENA's split scaled down "
                          f"(it needs at least {smallest} rows)")
    return sizes


def _scaled(n: int, spec: TabularSpec) -> dict[str, int] | None:
    members = round(n * spec.members / spec.canonical_size)
    reference = round(n * spec.reference / spec.canonical_size)
    n_known, n_eval = members // 2, members - members // 2
    if n_known < 1 or reference - n_known < 1 or n - members - reference < n_eval:
        return None
    return {"members": members, "n_known": n_known, "n_eval": n_eval, "n_val": reference - n_known}


def tabular_dataset(spec: TabularSpec, x: np.ndarray, y: np.ndarray, seed: int, source: Path) -> DatasetArrays:
    info = {"source": str(source), "format": {".npz": "npz", ".npy": "npy"}.get(source.suffix, "raw text")}
    sizes = selena_sizes(len(y), spec)
    members, nonmembers = random_pools(len(y), sizes["members"], seed)
    splits = make_splits(members, nonmembers, n_known=sizes["n_known"], n_eval=sizes["n_eval"],
                         n_val=sizes["n_val"], seed=seed)
    return DatasetArrays(name=spec.name, x=x, y=y, num_classes=spec.n_classes,
                         feature_kind="binary", splits=splits, info={**info, "sizes": sizes, "seed": seed})
