import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from samprivacy.audit.metrics import attack_metrics, auc, best_threshold, roc_curve, tpr_at_fpr


def test_auc_with_ties_hand_computed():
    # Pairs (member, non-member): (.9,.5)=1 (.9,.1)=1 (.5,.5)=1/2 twice (.5,.1)=1 twice -> 5/6.
    scores = [0.9, 0.5, 0.5, 0.5, 0.1]
    membership = [1, 1, 1, 0, 0]
    assert auc(scores, membership) == pytest.approx(5 / 6)
    assert auc(scores, membership) == pytest.approx(roc_auc_score(membership, scores))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [2, 5, 1000])
def test_auc_and_roc_match_sklearn(seed, levels):
    g = np.random.default_rng(seed)
    scores = g.integers(0, levels, 300).astype(float)
    membership = g.random(300) < 0.4
    assert auc(scores, membership) == pytest.approx(roc_auc_score(membership, scores), abs=1e-12)
    fpr, tpr, thr = roc_curve(scores, membership)
    sk_fpr, sk_tpr, _ = sk_roc_curve(membership, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert thr[0] == np.inf and np.all(np.diff(thr) < 0)


def test_perfect_separation():
    known, eval_ = np.r_[5.0, 6, 7, 1, 2, 3], np.r_[8.0, 4.5, 9, 0, 3.9, -1]
    membership = np.r_[True, True, True, False, False, False]
    m = attack_metrics(eval_, membership, best_threshold(known, membership))
    assert (m.accuracy, m.auc, m.tpr_at_fpr_0001, m.tpr_at_fpr_001, m.advantage) == (1, 1, 1, 1, 1)


def test_identical_distributions_give_chance():
    g = np.random.default_rng(0)
    scores, membership = g.normal(size=20_000), np.r_[np.ones(10_000, bool), np.zeros(10_000, bool)]
    m = attack_metrics(scores, membership, best_threshold(g.normal(size=2000), membership[::10]))
    assert m.auc == pytest.approx(0.5, abs=0.015)
    assert m.accuracy == pytest.approx(0.5, abs=0.02)
    assert abs(m.advantage) < 0.04


def test_tpr_at_fpr_hand_constructed():
    # 1000 non-members at 0..999; 100 members: 5 above everything, 10 between 998 and 999, 20 between 991
    # and 992, 65 at the bottom. TPR is 0.05 at FPR 0, 0.15 at FPR 0.001, 0.35 at FPR 0.008.
    members = np.r_[np.full(5, 2000.0), np.full(10, 998.5), np.full(20, 991.5), np.full(65, -1.0)]
    scores = np.r_[members, np.arange(1000.0)]
    membership = np.r_[np.ones(100, bool), np.zeros(1000, bool)]
    fpr, tpr, _ = roc_curve(scores, membership)
    assert tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(0.05)
    assert tpr_at_fpr(fpr, tpr, 0.001) == pytest.approx(0.15)
    assert tpr_at_fpr(fpr, tpr, 0.01) == pytest.approx(0.35)
    m = attack_metrics(scores, membership, threshold=0.0)
    assert (m.tpr_at_fpr_0001, m.tpr_at_fpr_001) == pytest.approx((0.15, 0.35))


def test_best_threshold_separable_is_midpoint():
    assert best_threshold([5, 6, 7, 1, 2, 3], [1, 1, 1, 0, 0, 0]) == 4.0


def test_best_threshold_separates_adjacent_floats():
    lo = 1.0
    hi = np.nextafter(lo, 2.0)
    t = best_threshold([hi, lo], [1, 0])
    assert hi >= t > lo


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_maximises_balanced_accuracy(seed):
    g = np.random.default_rng(seed)
    membership = g.random(200) < 0.3  # unbalanced on purpose: balanced accuracy, not accuracy
    scores = np.round(g.normal(membership * 0.8, 1.0), 1)
    def balanced(t):
        pred = scores >= t
        return (pred[membership].mean() + (~pred[~membership]).mean()) / 2
    best = max(balanced(t) for t in np.r_[np.unique(scores), np.inf])
    assert balanced(best_threshold(scores, membership)) == pytest.approx(best)


def test_best_threshold_when_nothing_separates_predicts_nobody():
    t = best_threshold([1.0, 1.0, 1.0, 1.0], [1, 0, 1, 0])
    assert t > 1.0


def test_attack_metrics_uses_given_threshold_and_to_dict_keys():
    scores, membership = np.r_[0.9, 0.8, 0.3, 0.7, 0.2, 0.1], np.r_[1, 1, 1, 0, 0, 0].astype(bool)
    m = attack_metrics(scores, membership, threshold=0.75)
    # predicted members: .9 .8 -> TPR 2/3, FPR 0, accuracy 5/6
    assert m.accuracy == pytest.approx(5 / 6) and m.advantage == pytest.approx(2 / 3)
    assert m.threshold == 0.75
    d = m.to_dict()
    assert list(d) == ["accuracy", "auc", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "advantage"]
    assert all(type(v) is float for v in d.values())


def test_one_sided_membership_is_an_error():
    with pytest.raises(ValueError, match="both members and non-members"):
        auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="1 per score|entries"):
        auc([0.1, 0.2], [1])
