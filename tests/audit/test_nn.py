import numpy as np
import torch

from samprivacy.audit.metrics import attack_metrics
from samprivacy.audit.nn import attack_features, nn_attack
from samprivacy.audit.signals import Signals


def _signals(n: int, seed: int, member_sharpness: float = 6.0):
    """Members: logits peaked on the true label; non-members: flat logits with noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (n,), generator=g)
    membership = torch.arange(n) < n // 2
    logits = torch.randn(n, 5, generator=g)
    logits[torch.arange(n), labels] += torch.where(membership, member_sharpness, 0.5)
    return Signals.from_logits(logits, labels), membership.numpy()


def test_features_shape():
    s, _ = _signals(10, 0)
    f = attack_features(s, 5)
    assert f.shape == (10, 11) and f.dtype == torch.float32
    assert torch.all(f[:, :5].diff(dim=1) <= 0)  # sorted descending


def test_nn_attack_learns_and_is_seeded():
    known, known_m = _signals(600, 0)
    eval_, eval_m = _signals(600, 1)
    state = torch.random.get_rng_state()
    scores, threshold = nn_attack(known, known_m, eval_, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert scores.shape == (600,) and threshold == 0.5
    assert attack_metrics(scores, eval_m, threshold).accuracy > 0.9
    again, _ = nn_attack(known, known_m, eval_, seed=3)
    np.testing.assert_array_equal(scores, again)
