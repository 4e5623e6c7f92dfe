"""RMIA against cases computed by hand: the offline prior, pairwise ratios, gamma, reference choice."""

import numpy as np
import pytest

from samprivacy.audit.rmia import choose_out_references, prior, rmia_scores


def test_offline_prior_stands_in_for_the_missing_in_models():
    reference = np.array([[0.2, 0.6], [0.4, np.nan]])  # example 1 has one reference
    np.testing.assert_allclose(prior(reference, a=1.0), [0.3, 0.6])  # a = 1: the OUT mean as it is
    np.testing.assert_allclose(prior(reference, a=0.0), [0.65, 0.8])  # a = 0: (mean + 1) / 2
    np.testing.assert_allclose(prior(reference, a=0.5), [0.75 * 0.3 + 0.25, 0.75 * 0.6 + 0.25])


def test_score_counts_population_samples_beaten_by_the_likelihood_ratio():
    # a = 1: Pr(x) = reference probability. ratio_x = (0.9/0.3, 0.3/0.6) = (3, 0.5)
    target_x, reference_x = np.array([0.9, 0.3]), np.array([[0.3, 0.6]])
    # ratio_z = (0.5/0.5, 0.4/0.2, 0.8/0.2, 0.1/0.2) = (1, 2, 4, 0.5)
    target_z, reference_z = np.array([0.5, 0.4, 0.8, 0.1]), np.array([[0.5, 0.2, 0.2, 0.2]])
    # counts: 3 >= (1, 2, 0.5) -> 3; 0.5 >= (0.5) -> 1 (ties count). score = (count + rank) / (|Z| + 1), where
    # rank in [0, 1) orders equal counts by ratio_x: x0 has rank 1/2, x1 rank 0
    scores = rmia_scores(target_x, reference_x, target_z, reference_z, a=1.0, gamma=1.0)
    np.testing.assert_allclose(scores, [3.5 / 5, 1 / 5])
    scores = rmia_scores(target_x, reference_x, target_z, reference_z, a=1.0, gamma=2.0)
    np.testing.assert_allclose(scores, [2.5 / 5, 0.0])  # LR >= 2: ratio_z <= 1.5 -> (1, 0.5); <= 0.25 -> none


def test_equal_counts_are_ordered_by_the_likelihood_ratio():
    # nobody beats any z (the target is unsure of everything), yet x1's ratio is higher than x0's
    scores = rmia_scores([0.1, 0.2], [[0.5, 0.5]], [0.9, 0.9], [[0.1, 0.1]], a=1.0)
    assert (scores < 1 / 3).all() and scores[1] > scores[0]


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="gamma"):
        rmia_scores([0.5], [[0.5]], [0.5], [[0.5]], gamma=0)
    with pytest.raises(ValueError, match="a must lie"):
        prior(np.ones((1, 2)), a=1.5)


def test_references_are_chosen_among_out_models_only():
    out = np.array([[True, False, True], [True, True, False], [False, True, True], [True, True, True]])
    chosen = choose_out_references(out, 2, np.random.default_rng(0))
    assert (chosen.sum(axis=0) == 2).all() and not (chosen & ~out).any()
    with pytest.raises(ValueError, match="fewer than 4"):
        choose_out_references(out, 4, np.random.default_rng(0))


def test_a_is_tuned_on_reference_models_alone():
    from samprivacy.audit.metrics import auc
    from samprivacy.audit.rmia import A_GRID, tune_a

    rng = np.random.default_rng(0)
    r, n, z = 6, 400, 300
    keep = np.zeros((r, n), bool)
    for i in range(n):
        keep[rng.permutation(r)[:3], i] = True
    difficulty = rng.uniform(0.05, 0.9, n)
    prob = np.clip(np.where(keep, 0.7 * difficulty + 0.3, difficulty) + rng.normal(0, 0.05, (r, n)), 0.01, 1)
    prob_z = np.clip(rng.uniform(0.05, 0.9, z)[None, :] + rng.normal(0, 0.05, (r, z)), 0.01, 1)
    a = tune_a(prob, keep, prob_z, 2, np.random.default_rng(1))
    assert a in A_GRID and a == tune_a(prob, keep, prob_z, 2, np.random.default_rng(1))
    # model 0 (a reference, never a target) attacked with 2 OUT references among the others: no a does better
    chosen = choose_out_references(~keep[1:], 2, np.random.default_rng(1))

    def score(value):
        reference_x = np.where(chosen, prob[1:], np.nan)
        return auc(rmia_scores(prob[0], reference_x, prob_z[0], prob_z[1:3], a=value), keep[0])

    assert score(a) == max(score(v) for v in A_GRID)
    # too few references to tune on (an example has no OUT model besides model 0): None, the caller falls back
    assert tune_a(prob[:2], keep[:2], prob_z[:2], 2, np.random.default_rng(1)) is None


def test_a_is_tuned_with_four_shared_references():
    """4 references at fraction 0.5: model 0's non-members have one other OUT model, so the tuning uses one
    reference model (it used to fall back to 0.3 every time); members drift up by a known lift."""
    from samprivacy.audit.rmia import A_GRID, tune_a
    from samprivacy.learn.population import balanced_membership

    rng = np.random.default_rng(3)
    keep = balanced_membership(4, 2000, 0.5, rng)
    difficulty = rng.uniform(0.05, 0.6, 2000)
    prob = np.clip(np.where(keep, difficulty + 0.35, difficulty) + rng.normal(0, 0.02, keep.shape), 0.01, 1)
    prob_z = np.clip(rng.uniform(0.05, 0.6, 500)[None, :] + rng.normal(0, 0.02, (4, 500)), 0.01, 1)
    tuned = {tune_a(prob, keep, prob_z, 2, np.random.default_rng(s)) for s in range(3)}
    assert None not in tuned and tuned <= set(A_GRID)
