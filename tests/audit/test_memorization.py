"""Feldman-Zhang memorization and influence, influence entropy and buckets, against hand-computed cases."""

import numpy as np
import pytest

from samprivacy.audit.memorization import (bucket_accuracy, entropy_buckets, influence, influence_entropy,
                                           memorization)

# Four models, three pool examples. Example 0: IN for models 0, 1 (correct, correct), OUT for 2, 3 (wrong, wrong)
# -> mem 1. Example 1: always correct -> 0. Example 2: IN 2, 3 (correct, wrong), OUT 0, 1 (correct, wrong) -> 0.
KEEP = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], bool)
CORRECT = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0]], bool)


def test_memorization_is_in_minus_out_accuracy():
    mem, err = memorization(KEEP, CORRECT)
    np.testing.assert_allclose(mem, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(err, [0.0, 0.0, np.sqrt(0.25 / 2 + 0.25 / 2)])


def test_influence_on_a_test_example():
    # test example 0 is right exactly when pool example 0 is IN (models 0, 1): a twin that needs it
    test_correct = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], bool)
    infl, _ = influence(KEEP, test_correct)
    assert infl.shape == (3, 2)
    np.testing.assert_allclose(infl[:, 0], [1.0, 0.0, -1.0])  # pool 2 is IN exactly when pool 0 is OUT
    np.testing.assert_allclose(infl[:, 1], [0.0, 0.0, 0.0])


def test_entropy_is_low_when_one_example_carries_the_influence():
    labels, test_labels = np.array([0, 0, 1]), np.array([0, 1])
    test_correct = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], bool)
    summary = influence_entropy(KEEP, test_correct, labels, test_labels, significance=0)
    # test 0 (class 0) sees pool 0 (infl 1) and pool 1 (infl 0): all mass on one example, entropy 0
    assert summary.entropy[0] == pytest.approx(0.0) and summary.top_index[0] == 0
    # test 1 (class 1) sees pool 2 only, whose influence on it is 0: no influence mass, entropy undefined
    assert np.isnan(summary.entropy[1])
    spread = influence_entropy(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], bool),
                               np.array([[1], [1], [1], [0]], bool), np.array([0, 0]), np.array([0]),
                               significance=0)
    # influences 1/2 and 1/2 -> p = (1/2, 1/2) -> entropy log 2
    assert spread.entropy[0] == pytest.approx(np.log(2))


def test_buckets_split_by_entropy_quantiles_and_accuracy_has_a_standard_error():
    entropy = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, np.nan])
    bucket, edges = entropy_buckets(entropy, buckets=5)
    assert bucket.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, -1] and len(edges) == 6
    test_correct = np.zeros((2, 11), bool)
    test_correct[0, :2] = True  # model 0 gets bucket 0 right, model 1 does not
    mean, stderr, size = bucket_accuracy(test_correct, bucket, 5)
    assert mean[0] == 0.5 and stderr[0] == pytest.approx(np.std([1, 0], ddof=1) / np.sqrt(2))
    assert size.tolist() == [2, 2, 2, 2, 2] and mean[1:].tolist() == [0, 0, 0, 0]


def test_every_example_needs_in_and_out_models():
    with pytest.raises(ValueError, match="IN for at least one"):
        memorization(np.ones((2, 3), bool), np.ones((2, 3), bool))


def _null_world(models: int, rng: np.random.Generator, n: int = 300, m: int = 400):
    """Correctness independent of membership (true influence zero): every test example right with probability
    0.7 for every model."""
    from samprivacy.learn.population import balanced_membership

    keep = balanced_membership(models, n, 0.5, rng)
    test_correct = rng.random((models, m)) < 0.7
    return keep, test_correct, rng.integers(0, 3, n), rng.integers(0, 3, m)


def test_the_null_baseline_spread_shrinks_with_the_number_of_models():
    from samprivacy.audit.memorization import null_buckets

    rng = np.random.default_rng(0)
    spreads = {}
    for models in (8, 128):
        keep, test_correct, labels, test_labels = _null_world(models, rng)
        spreads[models] = null_buckets(keep, test_correct, labels, test_labels, rng=rng, shuffles=4).spread
    assert spreads[8] > 2 * spreads[128] > 0, spreads


def test_shuffled_membership_keeps_each_examples_in_count():
    from samprivacy.audit.memorization import shuffled_membership

    rng = np.random.default_rng(1)
    keep = _null_world(16, rng)[0]
    shuffled = shuffled_membership(keep, rng)
    assert (shuffled.sum(axis=0) == keep.sum(axis=0)).all() and (shuffled != keep).any()
