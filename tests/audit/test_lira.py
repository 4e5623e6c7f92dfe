"""LiRA against cases computed by hand: Gaussian fits, online / offline scores, variance choices."""

import math

import numpy as np
import pytest

from samprivacy.audit.lira import PER_EXAMPLE_FROM, gaussian, lira_offline, lira_online, resolve_variance

# Two examples, four shadows. Example 0: IN shadows 0, 1 (phi 4, 6), OUT shadows 2, 3 (phi 0, 2).
# Example 1: IN shadows 2, 3 (phi 3, 5), OUT shadows 0, 1 (phi -1, 1).
SHADOWS = np.array([[4.0, -1.0], [6.0, 1.0], [0.0, 3.0], [2.0, 5.0]])
SHADOW_IN = np.array([[True, False], [True, False], [False, True], [False, True]])


def normal_logpdf(x, mean, var):
    return -0.5 * math.log(2 * math.pi * var) - (x - mean) ** 2 / (2 * var)


def test_gaussians_per_example_and_pooled():
    mean, var = gaussian(SHADOWS[..., None], SHADOW_IN, "per_example")
    assert mean[:, 0].tolist() == [5.0, 4.0] and var[:, 0].tolist() == [1.0, 1.0]  # (4, 6) and (3, 5)
    mean, var = gaussian(SHADOWS[..., None], ~SHADOW_IN, "global")
    # OUT deviations: example 0 (0, 2) around 1, example 1 (-1, 1) around 0: squares 1+1+1+1 over 4 values
    assert mean[:, 0].tolist() == [1.0, 0.0] and var[:, 0].tolist() == [1.0, 1.0]


def test_online_score_is_the_log_likelihood_ratio():
    target = np.array([5.5, 0.5])
    scores = lira_online(target, SHADOWS, SHADOW_IN, variance="global")
    expected = [normal_logpdf(5.5, 5, 1) - normal_logpdf(5.5, 1, 1), normal_logpdf(0.5, 4, 1) - normal_logpdf(0.5, 0, 1)]
    np.testing.assert_allclose(scores, expected)
    assert scores[0] > 0 > scores[1]  # a member-like and a non-member-like confidence


def test_global_variance_pools_the_spread_inside_examples_not_between_them():
    shadows = np.array([[10.0, 0.0], [12.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    keep = np.array([[True, True], [True, True], [False, False], [False, False]])
    _, var = gaussian(shadows[..., None], keep, "global")
    assert var[0, 0] == pytest.approx(1.0)  # deviations +-1 in both examples; the means 11 and 1 do not count


def test_offline_test_is_one_sided():
    # OUT Gaussians: example 0 N(1, 1), example 1 N(0, 1)
    high, low = lira_offline([3.0, 0.0], SHADOWS, SHADOW_IN, "global"), lira_offline([-1.0, -2.0], SHADOWS,
                                                                                       SHADOW_IN, "global")
    np.testing.assert_allclose(np.exp(high), [0.9772498680518208, 0.5])  # Phi(2), Phi(0)
    np.testing.assert_allclose(np.exp(low), [0.022750131948179195, 0.022750131948179195])  # Phi(-2)
    # two-sided scoring would rank -1 (two stds below) like 3 (two stds above) for example 0; one-sided does not
    assert high[0] > low[0]


def test_offline_without_membership_treats_every_shadow_as_out():
    out = np.array([[0.0, -1.0], [2.0, 1.0]])  # each example's two OUT values
    np.testing.assert_allclose(lira_offline([3.0, 0.0], out, None, "per_example"),
                               lira_offline([3.0, 0.0], SHADOWS, SHADOW_IN, "per_example"))


def test_queries_are_scored_separately_and_averaged():
    shadows = np.stack([SHADOWS, SHADOWS + 1.0], axis=-1)  # a second query, everything shifted by 1
    target = np.array([[5.5, 6.5], [0.5, 1.5]])
    both = lira_online(target, shadows, SHADOW_IN, "global")
    np.testing.assert_allclose(both, lira_online(target[:, 0], SHADOWS, SHADOW_IN, "global"))


def test_auto_variance_follows_the_number_of_shadows():
    assert resolve_variance("auto", PER_EXAMPLE_FROM - 1) == "global"
    assert resolve_variance("auto", PER_EXAMPLE_FROM) == "per_example"
    with pytest.raises(ValueError, match="variance"):
        resolve_variance("median", 8)


def test_groups_are_cut_to_the_same_number_of_shadows_for_every_example():
    from samprivacy.audit.lira import equal_groups

    # example 0: IN for shadows 0, 1, 2; example 1: IN for shadow 3 only
    shadow_in = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], bool)
    members, others = equal_groups(shadow_in, online=True)
    assert members.sum(axis=0).tolist() == [1, 1] and others.sum(axis=0).tolist() == [1, 1]
    assert members[:, 0].tolist() == [True, False, False, False]  # the first shadows in order
    _, offline = equal_groups(shadow_in, online=False)
    assert offline.sum(axis=0).tolist() == [1, 1]


def test_without_signal_members_and_non_members_score_alike():
    # Shadows and targets all draw from one Gaussian per example: nothing tells members apart. With the target
    # left out, members have one IN shadow fewer; without equal groups non-members would rank higher.
    from samprivacy.audit.metrics import auc

    rng = np.random.default_rng(0)
    k, n = 6, 20_000
    keep = np.zeros((k, n), bool)
    for i in range(n):
        keep[rng.permutation(k)[:3], i] = True
    stats = rng.standard_normal((k, n)) + rng.standard_normal(n) * 3
    aucs = [auc(lira_online(stats[t], np.delete(stats, t, 0), np.delete(keep, t, 0), "global"), keep[t])
            for t in range(2)]
    assert all(abs(a - 0.5) < 0.01 for a in aucs), aucs
