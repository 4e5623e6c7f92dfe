"""DP-SGD's defining properties: per-sample gradients clipped to max_grad_norm before the noise, and the epsilon a
trial reports equal to Opacus's accountant for the same (sigma, q, steps)."""

import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from samprivacy.errors import ConfigError
from samprivacy.learn.defenses.dp import DPTraining
from samprivacy.learn.models import build_model
from samprivacy.learn.train import train

from .conftest import config, mlp


def per_sample_grads(model, x, y):
    """Each example's gradient of its own cross-entropy, by torch.func (independent of Opacus)."""
    params = dict(model.named_parameters())

    def loss(p, xi, yi):
        out = torch.func.functional_call(model, p, (xi[None],))
        return torch.nn.functional.cross_entropy(out, yi[None])

    return torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, y)


def test_per_sample_gradients_are_clipped_before_the_noise(blobs):
    model = mlp(blobs)
    x, y = blobs.subset("known_members")
    max_grad_norm = 0.05  # far below the raw per-sample norms: every example is clipped
    reference = per_sample_grads(model, x, y)
    private = DPTraining.attach(model, torch.optim.SGD(model.parameters(), lr=0.0), x, y, batch_size=len(x),
                                epochs=1, max_grad_norm=max_grad_norm, noise_multiplier=0.0, target_epsilon=None,
                                delta=None, seed=0)
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in reference.values()], 1).norm(dim=1)
    assert norms.min() > 10 * max_grad_norm  # the clipping has work to do

    private.optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    private.optimizer.pre_step()  # clip, add (zero) noise, scale by the expected batch size
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    for name, p in model.named_parameters():
        expected = torch.einsum("i,i...->...", factor, reference[name]) / len(x)
        torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-6)
    # each clipped per-sample gradient has norm <= C, so their mean does too
    total = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    assert total <= max_grad_norm + 1e-6
    private.detach()


def test_noise_has_the_std_of_noise_multiplier_times_the_clipping_norm(blobs):
    model = mlp(blobs)
    x, y = blobs.subset("known_members")
    private = DPTraining.attach(model, torch.optim.SGD(model.parameters(), lr=0.0), x, y, batch_size=len(x),
                                epochs=1, max_grad_norm=1e-6, noise_multiplier=2.0, target_epsilon=None,
                                delta=None, seed=0)
    private.optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    private.optimizer.pre_step()
    batch = private.optimizer.expected_batch_size
    # p.summed_grad: the clipped sum before noise; p.grad: (that + noise) / expected batch size
    noise = torch.cat([(p.grad * batch - p.summed_grad).flatten() for p in model.parameters()])
    assert noise.std().item() == pytest.approx(2.0 * 1e-6, rel=0.1)
    assert abs(noise.mean().item()) < 0.2 * 2.0 * 1e-6


def test_epsilon_equals_opacus_accountant_for_the_same_sigma_q_and_steps(blobs):
    result = train(mlp(blobs), blobs, config(defense="dp", max_grad_norm=1.0, noise_multiplier=1.1, epochs=3))
    metrics = result.defense_metrics
    n = len(blobs.splits.train)
    q = 1 / -(-n // 16)  # make_private: 1 / len(loader)
    assert metrics["sample_rate"] == pytest.approx(q)
    assert metrics["delta"] == pytest.approx(1 / n)  # delta defaults to 1 / training-set size
    assert metrics["dp_steps"] == 3 * round(1 / q)
    accountant = RDPAccountant()
    accountant.history = [(1.1, q, int(metrics["dp_steps"]))]
    assert metrics["epsilon"] == pytest.approx(accountant.get_epsilon(delta=1 / n), rel=1e-9)
    assert [row["epsilon"] for row in result.history] == sorted(row["epsilon"] for row in result.history)


def test_target_epsilon_picks_opacus_noise_and_stays_within_it(blobs):
    result = train(mlp(blobs), blobs, config(defense="dp", target_epsilon=8.0, epochs=2))
    n = len(blobs.splits.train)
    q = 1 / -(-n // 16)
    sigma = get_noise_multiplier(target_epsilon=8.0, target_delta=1 / n, sample_rate=q, epochs=2,
                                 accountant="rdp")
    assert result.defense_metrics["noise_multiplier"] == pytest.approx(sigma)
    assert result.defense_metrics["epsilon"] <= 8.0


def test_an_unreachable_target_epsilon_names_the_field(blobs):
    # at delta 1e-30 no noise below Opacus's ceiling of 1e6 spends only 0.01 in 50 epochs
    with pytest.raises(ConfigError, match="`target_epsilon` 0.01 cannot be reached in 50 epochs"):
        train(mlp(blobs), blobs, config(defense="dp", target_epsilon=0.01, target_delta=1e-30, epochs=50))


def test_batchnorm_is_refused_with_the_fix(blobs):
    from ..conftest import make_blobs
    images = make_blobs(image=True)
    model = build_model("cnn", images.input_shape, images.num_classes)
    with pytest.raises(ConfigError, match="BatchNorm.*'fc' or 'mlp'"):
        train(model, images, config(defense="dp"))


def test_dp_composes_with_sgd_only(blobs):
    with pytest.raises(ValueError, match="defense 'dp' runs with sgd only"):
        config(defense="dp", optimizer="sam")
    # train() checks again what did not come through TrialConfig's validation
    unchecked = config(defense="dp").model_copy(update={"optimizer": "sam"})
    with pytest.raises(ConfigError, match="`optimizer` defense 'dp' runs with sgd only"):
        train(mlp(blobs), blobs, unchecked)


def test_a_dp_run_resumed_from_an_epoch_checkpoint_matches_an_uninterrupted_one(blobs):
    saved = {}

    def on_epoch(row, checkpoint):
        if row["epoch"] == 2:
            saved.update(checkpoint())

    cfg = config(defense="dp", noise_multiplier=1.0, epochs=4, selection="last")
    full = train(mlp(blobs), blobs, cfg, on_epoch=on_epoch)
    resumed = train(mlp(blobs), blobs, cfg, resume=saved)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b)
    assert resumed.defense_metrics["epsilon"] == full.defense_metrics["epsilon"]  # the accountant resumed too
