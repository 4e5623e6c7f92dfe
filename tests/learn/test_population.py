"""Population plans and per-example statistics: balanced membership, seeds, the logit-scaled confidence."""

import numpy as np
import pytest
import torch

from samprivacy.learn.population import PopulationPlan, balanced_membership, logit_confidence, query

from .conftest import make_blobs


def test_membership_is_balanced_per_example_and_random_per_model():
    keep = balanced_membership(16, 1000, 0.5, np.random.default_rng(0))
    assert keep.shape == (16, 1000) and (keep.sum(axis=0) == 8).all()
    per_model = keep.sum(axis=1)
    assert per_model.min() > 420 and per_model.max() < 580 and len(set(per_model.tolist())) > 1
    assert (balanced_membership(10, 50, 0.3, np.random.default_rng(1)).sum(axis=0) == 3).all()


def test_plan_is_seeded_and_keeps_the_test_set_out_of_the_pool():
    data = make_blobs()
    a, b = PopulationPlan.make(data, 8, 0.5, seed=3), PopulationPlan.make(data, 8, 0.5, seed=3)
    assert a.fingerprint() == b.fingerprint() and np.array_equal(a.keep, b.keep)
    assert PopulationPlan.make(data, 8, 0.5, seed=4).fingerprint() != a.fingerprint()
    assert set(a.pool) == set(data.splits.train) and not set(a.pool) & set(a.test)
    assert not set(a.test) & set(data.splits.val) and a.known.sum() == len(a.pool) // 2
    assert len(set(a.seeds.tolist())) == 8
    assert set(a.train_index(2)) == set(a.pool[a.keep[2]])


def test_logit_confidence_is_log_p_over_one_minus_p():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 40.0, 0.0]])
    labels = torch.tensor([0, 1])
    p = torch.softmax(logits.double(), 1)
    expected = torch.log(p[0, 0]) - torch.log(1 - p[0, 0])
    conf = logit_confidence(logits, labels)
    assert conf[0].item() == pytest.approx(expected.item())
    # a saturated p_y = 1 - 4e-18 still has a finite, exact score: 40 - log(2)
    assert conf[1].item() == pytest.approx(40 - np.log(2))


def test_image_queries_are_the_image_then_its_mirror():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    x = torch.randn(5, 1, 4, 4)
    y = torch.zeros(5, dtype=torch.long)
    stats, logits = query(model, x, y, queries=2, image=True)
    mirrored, _ = query(model, x.flip(-1), y, queries=1, image=True)
    np.testing.assert_allclose(stats["conf"][:, 1], mirrored["conf"][:, 0], rtol=1e-5)
    assert stats["conf"].shape == (5, 2) and stats["prob"].shape == (5, 2) and logits.shape == (5, 2)
