"""TPR at low FPR: the pooled ROC against a hand-computed case, negatives counted, the missing rule below
1 / negatives, and the bootstrap interval's coverage checked by simulation."""

import math

import numpy as np
import pytest

from samprivacy.audit.lowfpr import low_fpr_figures, missing_reason

# Two targets, three examples. Pooled: 0.9 (m) 0.8 0.6 (m) 0.5 0.2 0.1 -> 2 members, 4 non-members.
SCORES = np.array([[0.9, 0.2, 0.5], [0.8, 0.6, 0.1]])
MEMBERS = np.array([[True, False, False], [False, True, False]])


def test_pooled_roc_matches_the_hand_computed_case():
    f = low_fpr_figures(SCORES, MEMBERS, rng=np.random.default_rng(0), fprs=(0.25, 0.5), resamples=50)
    # member 0.9 beats all 4 non-members, member 0.6 beats 3 of them: AUC 7 / 8
    assert f.pooled_auc == pytest.approx(7 / 8)
    assert f.pooled[0.25].value == 1.0 and f.pooled[0.25].negatives == 4  # one non-member (0.8) above 0.6
    # per target: 2 non-members each, so FPR 0.25 cannot be shown; at 0.5 both targets find their member
    assert f.per_target[0.25].value is None and "below 1/2" in f.per_target[0.25].missing
    assert f.per_target[0.5].value == 1.0 and f.per_target[0.5].negatives == 2
    assert f.pooled[0.25].low <= f.pooled[0.25].value <= f.pooled[0.25].high


def test_a_tpr_below_one_over_the_negatives_is_missing_with_its_reason():
    assert missing_reason(0.001, 1000) is None
    reason = missing_reason(0.001, 999)
    assert "below 1/999" in reason and "1000 non-members" in reason
    rng = np.random.default_rng(0)
    scores, members = rng.normal(size=(3, 400)), rng.random((3, 400)) < 0.5
    f = low_fpr_figures(scores, members, rng=rng, fprs=(0.001,), resamples=20)
    negatives = int((~members).sum())
    assert f.pooled[0.001].negatives == negatives < 1000
    assert f.pooled[0.001].value is None and f.pooled[0.001].low is None and f.pooled[0.001].missing


def test_the_95_percent_interval_covers_a_known_tpr_about_95_percent_of_the_time():
    """Scores N(0, 1) for non-members and N(mu, 1) for members: the TPR at FPR f is known in closed form."""
    mu, fpr, n = 1.5, 0.01, 3000
    z = 2.3263478740408408  # Phi^-1(0.99)
    truth = 0.5 * math.erfc((z - mu) / math.sqrt(2))  # 1 - Phi(z - mu)
    rng = np.random.default_rng(1)
    covered, draws = 0, 200
    for _ in range(draws):
        members = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        scores = np.r_[rng.normal(mu, 1, n), rng.normal(0, 1, n)]
        figure = low_fpr_figures(scores[None], members[None], rng=rng, fprs=(fpr,), resamples=200).pooled[fpr]
        covered += figure.low <= truth <= figure.high
    assert 0.88 <= covered / draws <= 0.99, covered / draws


def test_pooling_targets_multiplies_the_negatives():
    rng = np.random.default_rng(2)
    members = np.stack([rng.permutation(np.r_[np.ones(600, bool), np.zeros(600, bool)]) for _ in range(16)])
    scores = rng.normal(size=members.shape) + members
    f = low_fpr_figures(scores, members, rng=rng, resamples=20)
    assert f.pooled[0.001].negatives == 16 * 600 and f.per_target[0.001].negatives == 600
    assert f.pooled[0.001].value is not None and f.per_target[0.001].value is None


def test_a_bootstrap_replicate_is_the_roc_of_the_resampled_examples():
    """Each replicate against the plain ROC of the resample (every example repeated as often as it was drawn)."""
    from samprivacy.audit.lowfpr import _sorted, _weighted_tprs
    from samprivacy.audit.metrics import roc_curve, tpr_at_fpr

    rng = np.random.default_rng(4)
    k, n = 3, 500
    members = rng.random((k, n)) < 0.5
    scores = np.round(rng.normal(size=(k, n)) + members, 1)  # rounded: ties across members and non-members
    roc = _sorted(scores.ravel(), members.ravel(), np.tile(np.arange(n), k), n)
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(5)]).astype(float)
    got = _weighted_tprs(roc, weights, (0.001, 0.01, 0.2))
    for b in range(5):
        repeat = np.tile(weights[b].astype(int), k)
        fpr, tpr, _ = roc_curve(np.repeat(scores.ravel(), repeat), np.repeat(members.ravel(), repeat))
        np.testing.assert_allclose(got[b], [tpr_at_fpr(fpr, tpr, f) for f in (0.001, 0.01, 0.2)])
