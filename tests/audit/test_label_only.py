import numpy as np
import pytest
import torch

from samprivacy.audit.label_only import image_augmentations, label_only_scores, perturb
from samprivacy.errors import ConfigError


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_image_augmentations_identity_first_and_count():
    augs = image_augmentations(1)
    assert augs[:2] == [(False, 0, 0), (True, 0, 0)]
    assert len(augs) == 10 and len(image_augmentations(2)) == 26  # (1 + 4) and (1 + 4 + 8) shifts, x2 flips


def test_image_perturbations():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4)
    q = perturb(x, "image", 10, max_shift=1)
    assert q.shape == (10, 2, 1, 3, 4)
    torch.testing.assert_close(q[0], x)
    torch.testing.assert_close(q[1], x.flip(-1))
    shifts = [a for a in image_augmentations(1)]
    right = q[shifts.index((False, 1, 0))]  # dx = +1: content moves one column right, zeros enter on the left
    torch.testing.assert_close(right[..., 1:], x[..., :-1])
    assert (right[..., 0] == 0).all()
    down = q[shifts.index((False, 0, 1))]
    torch.testing.assert_close(down[..., 1:, :], x[..., :-1, :])
    torch.testing.assert_close(perturb(x, "image", 10, max_shift=1), q)  # deterministic


def test_binary_flips_stay_binary_and_are_seeded():
    x = (torch.rand(50, 40, generator=_gen(1)) > 0.5).float()
    q = perturb(x, "binary", 8, _gen(0), num_flips=3)
    assert q.shape == (8, 50, 40)
    assert set(q.unique().tolist()) <= {0.0, 1.0}
    assert ((q != x).sum(dim=-1) == 3).all()  # exactly k features flipped in every copy
    torch.testing.assert_close(perturb(x, "binary", 8, _gen(0), num_flips=3), q)
    assert not torch.equal(perturb(x, "binary", 8, _gen(1), num_flips=3), q)


def test_continuous_noise_scale_and_seed():
    x = torch.randn(2000, 3, generator=_gen(2)) * torch.tensor([1.0, 10.0, 100.0])
    q = perturb(x, "continuous", 4, _gen(0), noise_scale=0.1)
    assert q.shape == (4, 2000, 3)
    noise_std = (q - x).std(dim=(0, 1))
    torch.testing.assert_close(noise_std, 0.1 * x.std(dim=0), rtol=0.05, atol=0)
    torch.testing.assert_close(perturb(x, "continuous", 4, _gen(0), noise_scale=0.1), q)


def test_bad_options_raise_config_errors():
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ConfigError, match="feature_kind 'audio'"):
        perturb(x, "audio", 2)
    with pytest.raises(ConfigError, match="label_only_queries=30"):
        perturb(x, "image", 30, max_shift=1)
    with pytest.raises(ConfigError, match="num_flips"):
        perturb(torch.zeros(2, 5), "binary", 2, num_flips=9)


def test_scores_are_fractions_of_correct_copies():
    # The model labels an example by the sign of feature 0; noise flips it only near 0.
    class Sign(torch.nn.Module):
        def forward(self, x):
            return torch.stack([-x[:, 0], x[:, 0]], dim=1)

    x = torch.tensor([[5.0, 0.0], [0.01, 0.0], [-5.0, 0.0]])
    y = torch.tensor([1, 1, 1])
    scores = label_only_scores(Sign(), x, y, "continuous", 16, feature_std=torch.ones(2), noise_scale=0.5)
    assert scores.shape == (3,) and scores.dtype == np.float64
    assert scores[0] == 1.0 and scores[2] == 0.0 and 0 < scores[1] < 1
    np.testing.assert_allclose(scores * 16, np.round(scores * 16))  # multiples of 1/K
