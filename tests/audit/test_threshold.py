import numpy as np
import pytest
import torch

from samprivacy.audit.metrics import attack_metrics, best_threshold
from samprivacy.audit.signals import Signals
from samprivacy.audit.threshold import (
    METRIC_SCORES,
    classwise_threshold_attack,
    classwise_thresholds,
    global_threshold_attack,
    metric_score,
)

from .conftest import signals_with


def test_scores_point_towards_members():
    # Example 0 is member-like (confident, correct), example 1 is not: every score ranks 0 above 1.
    s = Signals.from_logits(torch.tensor([[6.0, 0, 0], [0.2, 0.1, 0]]), torch.tensor([0, 1]))
    for metric in METRIC_SCORES:
        score = metric_score(metric, s)
        assert score[0] > score[1], metric


def test_unknown_metric():
    with pytest.raises(ValueError, match="'foo'.*choose from"):
        metric_score("foo", signals_with(np.r_[0.5], np.r_[0], 2))


def _shifted_classes(seed: int, n: int = 400):
    """Class 0: members at ~0.3, non-members ~0.1; class 1: members ~0.9, non-members ~0.7 (small noise)."""
    g = np.random.default_rng(seed)
    labels = g.integers(0, 2, n)
    membership = g.random(n) < 0.5
    score = 0.1 + 0.6 * labels + 0.2 * membership + g.normal(0, 0.02, n)
    return signals_with(score, labels, 2), membership


def test_classwise_beats_global_on_shifted_classes():
    known, known_m = _shifted_classes(0)
    eval_, eval_m = _shifted_classes(1)
    glob = attack_metrics(*_pair(global_threshold_attack("confidence", known, known_m, eval_), eval_m))
    cw = attack_metrics(*_pair(classwise_threshold_attack("confidence", known, known_m, eval_), eval_m))
    assert cw.accuracy > 0.99
    assert glob.accuracy < 0.8  # one threshold cannot split both classes (about 0.75)
    assert cw.auc > glob.auc


def _pair(scored, membership):
    scores, threshold = scored
    return scores, membership, threshold


@pytest.mark.parametrize("seed", range(4))
def test_classwise_thresholds_match_per_class_fits(seed):
    g = np.random.default_rng(seed)
    labels, membership = g.integers(0, 5, 300), g.random(300) < 0.5
    scores = np.round(g.normal(membership + labels * 0.3, 1.0), 1)
    thresholds = classwise_thresholds(scores, membership, labels, 5)
    for c in range(5):
        assert thresholds[c] == best_threshold(scores[labels == c], membership[labels == c])


def test_classwise_falls_back_to_global_for_missing_classes():
    labels = np.r_[0, 0, 0, 0, 1, 1]
    membership = np.r_[1, 1, 0, 0, 1, 1].astype(bool)  # class 1 has no non-members, class 2 is absent
    scores = np.r_[0.9, 0.8, 0.2, 0.1, 0.6, 0.7]
    thresholds = classwise_thresholds(scores, membership, labels, 3)
    glob = best_threshold(scores, membership)
    assert thresholds[0] == pytest.approx(0.5)
    assert thresholds[1] == glob and thresholds[2] == glob


def test_protocol_threshold_fitted_on_known_only():
    # Known sets: members confident. Eval sets: the relation is flipped. A threshold tuned on the eval sets
    # would reach accuracy 1 by flipping; one fitted on the known sets must score below chance.
    g = np.random.default_rng(0)
    labels = g.integers(0, 3, 200)
    membership = np.arange(200) < 100
    known = signals_with(np.where(membership, 0.9, 0.6) + g.normal(0, 0.01, 200), labels, 3)
    eval_ = signals_with(np.where(membership, 0.6, 0.9) + g.normal(0, 0.01, 200), labels, 3)
    for attack in (global_threshold_attack, classwise_threshold_attack):
        m = attack_metrics(*_pair(attack("confidence", known, membership, eval_), membership))
        assert m.accuracy < 0.5 and m.auc < 0.5, attack.__name__
