"""The memorization report carries its own noise: a null baseline, the examples without an entropy, the
reference measured on models that did not fix the buckets, and a note in words when the models are too few."""

import numpy as np

from samprivacy.learn.population import PopulationStats, balanced_membership
from samprivacy.report.memorization import bucket_rows, memorization_report


def population(keep: np.ndarray, test_correct: np.ndarray) -> PopulationStats:
    k, n = keep.shape
    m = test_correct.shape[1]
    zeros = np.zeros((k, n, 1), np.float32)
    return PopulationStats(keep=keep, conf=zeros, prob=zeros.astype(np.float64), correct=np.ones((k, n), bool),
                           loss=zeros[..., 0], test_conf=np.zeros((k, m, 1), np.float32),
                           test_prob=np.zeros((k, m, 1)), test_correct=test_correct,
                           test_loss=np.zeros((k, m), np.float32))


def test_a_null_world_of_16_models_is_reported_as_noise_with_its_baseline():
    rng = np.random.default_rng(1)
    keep = balanced_membership(16, 300, 0.5, rng)  # a draw whose halves of 8 have every example IN and OUT
    correct = rng.random((16, 150)) < 0.7
    correct[:, :10] = True  # ten test examples every model gets right: no influence, no entropy
    labels, test_labels = rng.integers(0, 3, 300), rng.integers(0, 3, 150)
    report = memorization_report({"sgd": population(keep, correct), "sam": population(keep, correct)},
                                 labels, test_labels, reference="sgd", shuffles=3)
    doc = report.to_dict()
    assert doc["no_entropy"] >= 10 and any("no influence entropy" in n for n in doc["notes"])
    assert doc["reference_split"] is True
    # the reference is measured on the odd models, the other optimizer on all 16: same correctness, other numbers
    assert not np.allclose(report.optimizers["sgd"].bucket_acc, report.optimizers["sam"].bucket_acc)
    assert doc["null"]["shuffles"] == 3 and doc["null"]["spread"] > 0.05
    assert any("noise alone" in n and "models would bring it under" in n for n in doc["notes"])
    assert bucket_rows(report)[-1]["optimizer"] == "null (sgd, shuffled)"


def test_a_population_too_small_to_split_says_so():
    rng = np.random.default_rng(0)
    keep = balanced_membership(4, 200, 0.5, rng)
    correct = rng.random((4, 300)) < 0.7
    report = memorization_report({"sgd": population(keep, correct)}, rng.integers(0, 3, 200),
                                 rng.integers(0, 3, 300), reference="sgd", shuffles=2)
    assert report.split is False and any("too small to split" in n for n in report.notes)
