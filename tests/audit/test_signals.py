import numpy as np
import pytest
import torch

from samprivacy.audit.signals import Signals, model_logits


def test_uniform_logits():
    c = 5
    s = Signals.from_logits(torch.zeros(3, c), torch.tensor([0, 2, 4]))
    np.testing.assert_allclose(s.entropy, np.log(c))
    np.testing.assert_allclose(s.loss, np.log(c))
    np.testing.assert_allclose(s.confidence, 1 / c)
    np.testing.assert_allclose(s.probs, 1 / c)
    # Mentr = -(1 - 1/C) log(1/C) - (C - 1) (1/C) log(1 - 1/C)
    expected = -(1 - 1 / c) * np.log(1 / c) - (c - 1) / c * np.log(1 - 1 / c)
    np.testing.assert_allclose(s.modified_entropy, expected)


def test_hand_made_probabilities():
    p = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])
    s = Signals.from_logits(torch.tensor(np.log(p)), torch.tensor([0, 2]))
    np.testing.assert_allclose(s.loss, -np.log([0.7, 0.1]))
    np.testing.assert_allclose(s.confidence, [0.7, 0.1])
    np.testing.assert_array_equal(s.correct, [True, False])
    np.testing.assert_allclose(s.entropy, -(p[0] * np.log(p[0])).sum())
    # Song & Mittal Mentr: label 0 -> -(.3) log .7 - .2 log .8 - .1 log .9;
    #                      label 2 -> -(.9) log .1 - .7 log .3 - .2 log .8
    np.testing.assert_allclose(s.modified_entropy, [
        -0.3 * np.log(0.7) - 0.2 * np.log(0.8) - 0.1 * np.log(0.9),
        -0.9 * np.log(0.1) - 0.7 * np.log(0.3) - 0.2 * np.log(0.8),
    ])


def test_extreme_logits_are_finite():
    s = Signals.from_logits(torch.tensor([[1000.0, 0, 0], [1000.0, 0, 0]]), torch.tensor([0, 1]))
    for name in ("loss", "confidence", "entropy", "modified_entropy"):
        assert np.isfinite(getattr(s, name)).all(), name
    assert s.loss[1] == pytest.approx(1000.0)  # loss comes from log-softmax, never clamped
    assert s.loss[0] == pytest.approx(0.0, abs=1e-12)
    # The member-like example (p_y = 1) has lower Mentr than the misclassified one.
    assert s.modified_entropy[0] < s.modified_entropy[1]


def test_non_finite_logits_raise():
    with pytest.raises(ValueError, match="diverged"):
        Signals.from_logits(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))


def test_select_and_concat():
    s = Signals.from_logits(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]))
    part = s.select(np.array([4, 1]))
    np.testing.assert_array_equal(part.labels, [1, 1])
    both = Signals.concat([s.select(slice(0, 2)), s.select(slice(2, None))])
    np.testing.assert_array_equal(both.loss, s.loss)


def test_model_logits_batched_eval_mode_cpu_float32():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3)).double()
    model.train()
    x = torch.randn(10, 4, dtype=torch.float64)
    out = model_logits(model, x, batch_size=3)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (10, 3)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(out, model(x).float())  # dropout off: eval mode was used
    assert model_logits(model, x, batch_size=3).requires_grad is False
    model.train()
    model_logits(model, x)
    assert model.training  # mode restored
