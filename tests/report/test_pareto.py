"""Pareto front and hypervolume on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from samprivacy.report.pareto import default_reference, hypervolume_2d, non_dominated, pareto_table, to_minimize

MAXMIN = ["max", "min"]  # (test_acc, attack_acc)
nan, inf = math.nan, math.inf


@pytest.mark.parametrize("points,directions,expected", [
    ([[0.5, 0.5]], MAXMIN, [True]),  # a single point is the front
    ([[0.9, 0.6], [0.8, 0.55], [0.7, 0.5]], MAXMIN, [True, True, True]),  # a clean trade-off
    ([[0.9, 0.5], [0.8, 0.6], [0.7, 0.7], [0.9, 0.55]], MAXMIN, [True, False, False, False]),  # one dominates all
    ([[0.9, 0.6], [0.9, 0.6], [0.8, 0.7]], MAXMIN, [True, True, False]),  # duplicates of a front point both stay
    ([[0.9, 0.6], [0.9, 0.7]], MAXMIN, [True, False]),  # tie in one objective, worse in the other: dominated
    ([[1, 2], [2, 1], [2, 2]], ["min", "min"], [True, True, False]),
    ([[1, 2], [2, 1], [2, 2]], ["max", "max"], [False, False, True]),
    ([[1, 2], [2, 1], [2, 2]], ["min", "max"], [True, False, False]),  # (1, 2) is best in both
    ([[0.9, nan], [0.8, 0.6]], MAXMIN, [False, True]),  # NaN rows are never on the front
    ([[nan, nan]], MAXMIN, [False]),
    ([[0.95, inf], [0.8, 0.6]], MAXMIN, [False, True]),  # +inf in a minimised objective: off the front
    ([[0.7, -inf], [0.8, 0.6]], MAXMIN, [False, True]),  # -inf (a broken trial) does not win either
    ([[-inf, 0.1], [0.8, 0.6]], MAXMIN, [False, True]),
    (np.zeros((0, 2)), MAXMIN, []),
])
def test_non_dominated(points, directions, expected):
    assert non_dominated(points, directions).tolist() == expected


def brute_force(pts, directions):
    loss = to_minimize(pts, directions)
    finite = np.isfinite(loss).all(axis=1)
    return [bool(finite[i]) and not any(finite[j] and (loss[j] <= loss[i]).all() and (loss[j] < loss[i]).any()
                                        for j in range(len(pts))) for i in range(len(pts))]


@pytest.mark.parametrize("directions", [MAXMIN, ["min", "min", "max"], ["max", "min", "min", "max"]])
def test_non_dominated_matches_brute_force(directions):
    rng = np.random.default_rng(len(directions))
    pts = rng.integers(0, 12, size=(600, len(directions))).astype(float)  # many ties and duplicates
    pts[rng.random(pts.shape) < 0.01] = rng.choice([nan, inf, -inf])  # and a few broken values
    assert non_dominated(pts, directions).tolist() == brute_force(pts, directions)


def test_three_objectives():
    pts = [[0.9, 0.6, 0.1], [0.9, 0.6, 0.2], [0.8, 0.5, 0.3]]
    assert non_dominated(pts, ["max", "min", "min"]).tolist() == [True, False, True]


def test_bad_directions_and_shapes_raise():
    with pytest.raises(ValueError, match="'max' or 'min', got 'up'"):
        non_dominated([[1, 2]], ["up", "min"])
    with pytest.raises(ValueError, match="points must be"):
        non_dominated([[1, 2, 3]], MAXMIN)


@pytest.mark.parametrize("points,reference,expected", [
    ([[0.5, 0.5]], None, 0.25),  # one box: 0.5 x 0.5 against the default reference (0, 1)
    ([[0.9, 0.6], [0.8, 0.55], [0.7, 0.5]], None, 0.36 + 0.04 + 0.035),
    ([[0.9, 0.6], [0.9, 0.6]], None, 0.9 * 0.4),  # duplicates count once
    ([[0.9, 0.6], [0.8, 0.7]], None, 0.9 * 0.4),  # a dominated point adds nothing
    ([[0.9, 0.6], [nan, 0.1], [0.99, inf]], None, 0.9 * 0.4),  # non-finite rows add nothing
    ([[0.9, 0.6], [0.4, 0.2]], [0.5, 0.8], 0.4 * 0.2),  # (0.4, 0.2) is worse than the reference in test_acc
    ([], None, 0.0),
    ([[0.0, 0.3]], None, 0.0),  # on the reference's edge: zero area
])
def test_hypervolume_2d(points, reference, expected):
    assert hypervolume_2d(np.asarray(points, float).reshape(-1, 2), MAXMIN, reference) == pytest.approx(expected)


def test_hypervolume_minimise_both():
    # boxes from (1,3), (2,1) to (4,4): 3*1 + 2*3 - overlap 2*1 = 7
    assert hypervolume_2d([[1, 3], [2, 1]], ["min", "min"], [4, 4]) == pytest.approx(7.0)


def test_default_reference_is_worst_accuracy():
    assert default_reference(MAXMIN).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="exactly 2 objectives"):
        hypervolume_2d([[1, 2, 3]], ["min"] * 3)


def test_pareto_table_flags_and_orders_rows():
    rows = [{"trial": 0, "test_acc": 0.8, "attack_acc": 0.7}, {"trial": 1, "test_acc": 0.9, "attack_acc": 0.6},
            {"trial": 2, "test_acc": 0.7, "attack_acc": 0.5}, {"trial": 3, "test_acc": None, "attack_acc": 0.1}]
    table = pareto_table(rows, {"test_acc": "max", "attack_acc": "min"})
    assert [(r["trial"], r["pareto"]) for r in table] == [(1, True), (2, True), (0, False), (3, False)]
    assert pareto_table([], {"test_acc": "max", "attack_acc": "min"}) == []

