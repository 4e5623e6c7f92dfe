"""MemGuard: the predicted label never changes, every distortion is within the budget, and the noise moves the
defender's surrogate attack towards 0.5."""

import pytest
import torch

from samprivacy.learn.defenses.memguard import MemGuard
from samprivacy.learn.train import train

from .conftest import config, mlp, noisy_labels


@pytest.fixture(scope="module")
def memorised():
    data = noisy_labels()
    result = train(mlp(data, hidden=(128,)), data, config(epochs=30, batch_size=32, selection="last",
                                                          schedule="constant"))
    return data, result.model


@pytest.mark.parametrize("budget", [0.05, 0.3, 1.0])
def test_labels_unchanged_and_distortion_within_budget(memorised, budget):
    data, model = memorised
    members = data.x[torch.as_tensor(data.splits.train)]
    reference = data.subset("val")[0]
    guarded = MemGuard.fit(model, members, reference, budget=budget, seed=0)
    x = data.x
    with torch.no_grad():
        s = torch.softmax(model(x), 1)
        defended = torch.softmax(guarded(x), 1)
    assert torch.equal(defended.argmax(1), s.argmax(1))
    distortion = (defended - s).abs().sum(1)
    assert distortion.max().item() <= budget + 1e-5
    assert distortion.mean().item() > 0.1 * budget  # it does add noise
    torch.testing.assert_close(defended.sum(1), torch.ones(len(x)))


def test_noise_drives_the_surrogate_towards_one_half(memorised):
    data, model = memorised
    members = data.x[torch.as_tensor(data.splits.train)]
    guarded = MemGuard.fit(model, members, data.subset("val")[0], budget=2.0, seed=0)
    with torch.no_grad():
        before = torch.sigmoid(guarded.surrogate(torch.softmax(model(members), 1)))
        after = torch.sigmoid(guarded.surrogate(torch.softmax(guarded(members), 1)))
    assert (after - 0.5).abs().mean() < 0.5 * (before - 0.5).abs().mean()


def test_memguard_through_train_returns_the_defended_model(blobs):
    result = train(mlp(blobs), blobs, config(defense="memguard", memguard_budget=0.2))
    assert isinstance(result.model, MemGuard)
    assert result.test_acc > 0.8  # labels, hence accuracy, are the undefended model's
