"""The optimizer family against hand-computed steps on a quadratic L(w) = 1/2 w^T A w."""

import math

import pytest
import torch
from torch import nn

from samprivacy.errors import ConfigError
from samprivacy.learn.optim import PRESETS, make_optimizer

A = torch.diag(torch.tensor([1.0, 4.0, 0.5]))
W0 = torch.tensor([1.0, -1.0, 2.0])
LR = 0.1


def one_step(name: str, w0: torch.Tensor = W0, **kw) -> torch.Tensor:
    w = nn.Parameter(w0.clone())
    opt = make_optimizer(name, [w], lr=LR, momentum=0.0, **kw)

    def closure():
        loss = 0.5 * w @ A @ w
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def grad(w: torch.Tensor) -> torch.Tensor:
    return A @ w


def eps(w: torch.Tensor, rho: float) -> torch.Tensor:
    g = grad(w)
    return rho * g / g.norm()


def test_sgd_is_a_plain_gradient_step():
    torch.testing.assert_close(one_step("sgd"), W0 - LR * grad(W0))


def test_sam_uses_the_gradient_at_the_perturbed_point():
    expected = W0 - LR * grad(W0 + eps(W0, 0.1))
    torch.testing.assert_close(one_step("sam", rho=0.1), expected)


@pytest.mark.parametrize("lam,xi", [(1.5, 0.3), (0.5, 0.0), (2.0, 1.0)])
def test_sharpreg_gradient_is_equation_6(lam, xi):
    # d/dw [(1 + lam - xi) L(w) - lam L(w + eps)] with eps held fixed (first-order approximation)
    g = (1 + lam - xi) * grad(W0) - lam * grad(W0 + eps(W0, 0.01))
    torch.testing.assert_close(one_step("sharpreg", rho=0.01, lam=lam, xi=xi), W0 - LR * g)


def test_sharpreg_with_lam_minus_one_is_sam():
    torch.testing.assert_close(one_step("sharpreg", rho=0.1, lam=-1.0, xi=0.0), one_step("sam", rho=0.1))


def test_sharpreg_with_lam_zero_is_sgd_scaled_by_one_minus_xi():
    torch.testing.assert_close(one_step("sharpreg", rho=0.1, lam=0.0, xi=0.25), W0 - LR * 0.75 * grad(W0))


def test_rho_zero_collapses_sam_to_sgd():
    torch.testing.assert_close(one_step("sam", rho=0.0), one_step("sgd"))


def test_asam_scales_the_perturbation_by_weight_magnitude():
    rho, g = 0.5, grad(W0)
    t = W0.abs() + 0.01  # Kwon et al.'s T_w = |w| + eta, eta = 0.01
    e = rho * t * t * g / (t * g).norm()
    torch.testing.assert_close(one_step("asam", rho=rho), W0 - LR * grad(W0 + e))


def test_asam_perturbs_a_weight_at_zero():
    # With T_w = |w| alone a zero weight would never move; eta keeps it in the perturbation.
    w0 = torch.tensor([0.0, -1.0, 2.0])
    rho, g = 0.5, torch.tensor([1.0, -4.0, 1.0])  # nonzero gradient on the zero weight
    w = nn.Parameter(w0.clone())
    opt = make_optimizer("asam", [w], lr=LR, momentum=0.0, rho=rho)
    w.grad = g.clone()
    opt.first_step()
    t = w0.abs() + 0.01
    expected = w0 + rho * t * t * g / (t * g).norm()
    torch.testing.assert_close(w.detach(), expected)
    assert w.detach()[0] != 0.0


def test_weights_return_to_w_before_the_base_step():
    # With lr = 0 nothing may move: the perturbation must be undone exactly.
    w = nn.Parameter(W0.clone())
    opt = make_optimizer("sam", [w], lr=0.0, momentum=0.0, rho=0.3)
    opt.step(lambda: (0.5 * w @ A @ w).backward())
    torch.testing.assert_close(w.detach(), W0)


def test_momentum_and_weight_decay_stay_the_base_optimizers():
    w_ref = nn.Parameter(W0.clone())
    ref = torch.optim.SGD([w_ref], lr=LR, momentum=0.9, weight_decay=0.1)
    w = nn.Parameter(W0.clone())
    opt = make_optimizer("sgd", [w], lr=LR, momentum=0.9, weight_decay=0.1)
    for _ in range(3):
        ref.zero_grad()
        (0.5 * w_ref @ A @ w_ref).backward()
        ref.step()
        opt.step(lambda: (0.5 * w @ A @ w).backward())
    torch.testing.assert_close(w.detach(), w_ref.detach())


def test_the_closure_runs_once_for_sgd_and_twice_for_sam():
    for name, expected in (("sgd", 1), ("sam", 2), ("sharpreg", 2)):
        w, calls = nn.Parameter(W0.clone()), []
        opt = make_optimizer(name, [w], lr=LR)
        opt.step(lambda: calls.append(1) or (0.5 * w @ A @ w).backward())
        assert len(calls) == expected, name


def test_lr_schedulers_drive_the_base_optimizer():
    w = nn.Parameter(W0.clone())
    opt = make_optimizer("sam", [w], lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step(lambda: (0.5 * w @ A @ w).backward())
    sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == 0.5


def test_adam_base():
    w = nn.Parameter(W0.clone())
    opt = make_optimizer("sam", [w], base="adam", lr=0.01, rho=0.05)
    opt.step(lambda: (0.5 * w @ A @ w).backward())
    assert isinstance(opt.base_optimizer, torch.optim.Adam)
    assert not torch.equal(w.detach(), W0)


@pytest.mark.parametrize("kwargs,field", [
    (dict(name="sam", rho=-0.1), "rho"),
    (dict(name="sam", rho=math.nan), "rho"),
    (dict(name="sharpreg", lam=math.inf), "lam"),
    (dict(name="sharpreg", xi=math.nan), "xi"),
    (dict(name="adamw"), "optimizer"),
    (dict(name="sam", lam=1.0), "lam"),
    (dict(name="sgd", base="rmsprop"), "base optimizer"),
    (dict(name="sgd", rho=0.1), "`rho` applies only to sam, asam and sharpreg"),
])
def test_invalid_hyperparameters_are_named(kwargs, field):
    name = kwargs.pop("name")
    with pytest.raises(ConfigError, match=field):
        make_optimizer(name, [nn.Parameter(W0.clone())], lr=LR, **kwargs)


def test_presets_cover_the_paper():
    assert PRESETS["sam"]["lam"] == -1.0 and PRESETS["sgd"]["lam"] == 0.0
    assert (PRESETS["sharpreg"]["rho"], PRESETS["sharpreg"]["lam"], PRESETS["sharpreg"]["xi"]) == (0.01, 1.5, 0.3)
