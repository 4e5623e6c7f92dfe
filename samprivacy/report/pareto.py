"""Pareto fronts of sweep results: pure numpy functions (the plots are in plots.py).

Every objective is turned to lower-is-better once (`to_minimize`), as in optuna/study/_multi_objective.py.
Points are (n_trials, n_objectives) arrays in the objectives' own units; directions are "max"/"min"
(or Optuna's "maximize"/"minimize").

Non-finite values: a row with NaN or +-inf in any objective is never on the front and dominates nothing. An
infinite loss or accuracy marks a broken trial, not a perfect one, so even -inf in a minimised objective does
not win; +inf in a minimised objective is simply off the front. Duplicates of a non-dominated point are all
non-dominated (neither is strictly better).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["axis_label", "default_reference", "hypervolume_2d", "non_dominated", "pareto_table", "staircase",
           "to_minimize"]

_SIGN = {"max": -1.0, "maximize": -1.0, "maximise": -1.0, "min": 1.0, "minimize": 1.0, "minimise": 1.0}


def _signs(directions: Sequence[str]) -> np.ndarray:
    bad = [d for d in directions if str(d).lower() not in _SIGN]
    if bad:
        raise ValueError(f"directions must be 'max' or 'min', got {bad[0]!r}")
    return np.array([_SIGN[str(d).lower()] for d in directions])


def to_minimize(points: npt.ArrayLike, directions: Sequence[str]) -> np.ndarray:
    """(n, k) float array where lower is better in every column (maximised columns negated)."""
    pts = np.asarray(points, dtype=float)
    pts = pts.reshape(0, len(directions)) if pts.size == 0 else pts
    if pts.ndim != 2 or pts.shape[1] != len(directions):
        raise ValueError(f"points must be (n_trials, {len(directions)}) for {len(directions)} directions, "
                         f"got shape {pts.shape}")
    return pts * _signs(directions)


def non_dominated(points: npt.ArrayLike, directions: Sequence[str]) -> np.ndarray:
    """(n,) bool mask of the Pareto front: rows no other finite row is <= in all and < in one objective.

    The finite rows are taken in lexicographic order, so a row's dominators all come before it; and whatever
    dominates a dominated row dominates what it dominates, so each row is compared with the front found so far
    only: O(n x front size), not O(n^2) (10,000 configurations: milliseconds, not seconds)."""
    loss = to_minimize(points, directions)
    finite = np.flatnonzero(np.isfinite(loss).all(axis=1))
    f = loss[finite]
    order = np.lexsort(f.T[::-1])  # by the first objective, then the second, ...
    front = np.empty_like(f)
    size = 0
    on_front = np.zeros(len(f), dtype=bool)
    for i in order:
        row, kept = f[i], front[:size]
        if not ((kept <= row).all(axis=1) & (kept < row).any(axis=1)).any():
            front[size] = row
            size += 1
            on_front[i] = True
    mask = np.zeros(len(loss), dtype=bool)
    mask[finite[on_front]] = True
    return mask


def default_reference(directions: Sequence[str], low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """The worst value of each objective for metrics in [low, high] (accuracies, AUC, TPR): low for a maximised
    one, high for a minimised one. E.g. (test_acc max, attack_acc min) -> (0, 1)."""
    return np.where(_signs(directions) < 0, low, high).astype(float)


def hypervolume_2d(points: npt.ArrayLike, directions: Sequence[str], reference: npt.ArrayLike | None = None) -> float:
    """Exact area dominated by the points and bounded by `reference` (default: `default_reference`).

    Points that are non-finite or not strictly better than the reference in both objectives add nothing.
    """
    if len(directions) != 2:
        raise ValueError(f"hypervolume_2d needs exactly 2 objectives, got {len(directions)}")
    ref = to_minimize(np.asarray([default_reference(directions) if reference is None else reference]), directions)[0]
    if not np.isfinite(ref).all():
        raise ValueError(f"reference must be finite, got {reference!r}")
    loss = to_minimize(points, directions)
    loss = loss[np.isfinite(loss).all(axis=1) & (loss < ref).all(axis=1)]
    loss = loss[np.lexsort((loss[:, 1], loss[:, 0]))]  # by x, then y: each step can only lower the best y
    best_y = np.minimum.accumulate(np.concatenate([[ref[1]], loss[:, 1]]))
    return float(np.sum((ref[0] - loss[:, 0]) * (best_y[:-1] - best_y[1:])))


def pareto_table(rows: Sequence[Mapping[str, Any]], objectives: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rows (one per trial, holding each objective's value) with `pareto` added: front first, then best first
    by the first objective. A missing or None objective counts as NaN (never on the front)."""
    names = list(objectives)
    values = np.array([[np.nan if r.get(n) is None else float(r[n]) for n in names] for r in rows])
    values = values.reshape(-1, len(names))
    mask = non_dominated(values, list(objectives.values()))
    first = to_minimize(values, list(objectives.values()))[:, 0]
    order = sorted(range(len(rows)), key=lambda i: (not mask[i], np.nan_to_num(first[i], nan=np.inf)))
    return [{**rows[i], "pareto": bool(mask[i])} for i in order]


def staircase(front: npt.ArrayLike, directions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the front's attainment line (the boundary of what it dominates), in the objectives' units."""
    loss = to_minimize(front, directions)
    loss = loss[non_dominated(loss, ["min", "min"])]
    loss = loss[np.lexsort((loss[:, 1], loss[:, 0]))]
    signs = _signs(directions)
    return np.repeat(loss[:, 0], 2)[1:] * signs[0], np.repeat(loss[:, 1], 2)[:-1] * signs[1]


def axis_label(name: str, direction: str) -> str:
    return f"{name} ({'higher' if _signs([direction])[0] < 0 else 'lower'} is better)"

