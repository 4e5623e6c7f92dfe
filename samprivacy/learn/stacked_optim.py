"""The optimizer family of learn.optim on stacked weights: every per-model quantity kept per model.

K models stacked on a leading axis (learn.stacked) step as K `SharpnessAware` optimizers would: the SAM/ASAM/
SharpReg perturbation is normalised by each model's own gradient norm, and the base optimizer (torch.optim.SGD
with momentum, or Adam, L2 weight decay) is written out with its momentum, moments and step count per model. A
model with an empty batch (its epoch ended earlier) keeps every tensor, as if it had not stepped.
"""

from __future__ import annotations

from typing import Callable

import torch

from samprivacy.learn.optim import make_optimizer
from samprivacy.learn.train import TrainConfig


def per_model(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (K,) vector shaped to broadcast against a stacked tensor (K, ...)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


class StackedOptimizer:
    """The optimizer family of learn.optim (Equation (6)) and its base optimizer, per model on stacked weights.

    Hyperparameters live in an ordinary `SharpnessAware` over one dummy parameter (presets, validation and the LR
    scheduler stay the single-model ones); this class applies them with every per-model quantity (||g||, momentum,
    Adam's moments and step count) kept per model.
    """

    def __init__(self, params: list[torch.Tensor], config: TrainConfig):
        self.params = params
        self.holder = make_optimizer(config.optimizer, [torch.zeros(1, requires_grad=True)],
                                     base=config.base_optimizer, lr=config.lr, momentum=config.momentum,
                                     weight_decay=config.weight_decay, rho=config.rho, lam=config.lam, xi=config.xi)
        # its steps are taken here: the LR scheduler need not warn that the holder's own step() never runs
        self.holder._opt_called = True  # type: ignore[attr-defined]
        self.adam = config.base_optimizer == "adam"
        k = params[0].shape[0]
        self.state: dict[str, list[torch.Tensor]] = (
            {"exp_avg": [torch.zeros_like(p) for p in params], "exp_avg_sq": [torch.zeros_like(p) for p in params],
             "step": [torch.zeros(k, device=params[0].device)]} if self.adam else
            {"momentum_buffer": [torch.zeros_like(p) for p in params]})

    @property
    def group(self) -> dict:
        return self.holder.param_groups[0]

    @property
    def passes(self) -> int:
        return self.holder.passes

    def state_dict(self) -> dict:
        # the group's lr too: the scheduler moves it, and a resumed schedule starts from where it was
        return {"lr": self.group["lr"],
                **{name: [t.detach().cpu().clone() for t in tensors] for name, tensors in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.group["lr"] = state["lr"]
        for name, tensors in self.state.items():
            for t, saved in zip(tensors, state[name]):
                t.copy_(saved)

    def _grads(self) -> list[torch.Tensor]:
        """Every stacked parameter's gradient, which closure()'s backward has just filled."""
        grads = []
        for i, p in enumerate(self.params):
            if p.grad is None:
                raise RuntimeError(f"stacked parameter {i} has no gradient after closure(); closure() must run "
                                   "backward through every stacked parameter")
            grads.append(p.grad)
        return grads

    @torch.no_grad()
    def _grad_norm(self, grads: list[torch.Tensor], t_w: list[torch.Tensor] | None) -> torch.Tensor:
        """(K,) ||g_k|| over every parameter of model k (ASAM: ||T_w g_k||)."""
        if t_w is not None:
            grads = [g * t for g, t in zip(grads, t_w)]
        return torch.linalg.vector_norm(torch.stack([g.flatten(1).norm(dim=1) for g in grads]), dim=0)

    def step(self, closure: Callable[[], torch.Tensor], active: torch.Tensor | None = None) -> torch.Tensor:
        """closure() runs forward + backward of the summed per-model losses and returns them (K,); models where
        `active` (K,) is False (an empty batch) keep their weights and optimizer state (None: every model steps)."""
        group = self.group
        for p in self.params:
            p.grad = None
        with torch.enable_grad():
            loss = closure()
        if self.passes == 1:
            coef = 1.0 - group["xi"]  # Equation (6) with lam = 0 or rho = 0: (1 - xi) * g
            if coef != 1.0:
                with torch.no_grad():
                    for grad in self._grads():
                        grad.mul_(coef)
            self._base_step(active)
            return loss
        with torch.no_grad():  # first step: w + eps, eps = rho g / ||g|| per model (ASAM: rho T_w^2 g / ||T_w g||)
            grads_w = self._grads()
            t_w = [p.abs() + group["eta"] for p in self.params] if group["adaptive"] else None
            scale = group["rho"] / (self._grad_norm(grads_w, t_w) + 1e-12)
            saved = []
            for i, p in enumerate(self.params):
                direction = grads_w[i] if t_w is None else t_w[i] * t_w[i] * grads_w[i]
                saved.append(p.data)
                p.data = p.data + direction * per_model(scale, p)
                p.grad = None
        with torch.enable_grad():
            closure()
        with torch.no_grad():  # second step: back to w, grad = (1 + lam - xi) g(w) - lam g(w + eps)
            coef_w, lam = 1.0 + group["lam"] - group["xi"], group["lam"]
            for p, w, grad_w in zip(self.params, saved, grads_w):
                p.data = w
                if p.grad is None:
                    p.grad = torch.zeros_like(grad_w)
                if lam != -1.0:
                    p.grad.mul_(-lam)
                if coef_w != 0.0:
                    p.grad.add_(grad_w, alpha=coef_w)
        self._base_step(active)
        return loss

    @torch.no_grad()
    def _base_step(self, active: torch.Tensor | None) -> None:
        # torch.optim.SGD / Adam (L2 weight decay) written out per model, in place when every model steps (SGD);
        # otherwise models with an empty batch keep every tensor (torch.where).
        group = self.group
        lr, wd = group["lr"], group["weight_decay"]
        if active is None and not self.adam:  # the common case: torch.optim.SGD's own sequence, fused over params
            grads, bufs = self._grads(), self.state["momentum_buffer"]
            if wd != 0:
                torch._foreach_add_(grads, self.params, alpha=wd)
            if group["momentum"] != 0:
                torch._foreach_mul_(bufs, group["momentum"])
                torch._foreach_add_(bufs, grads)
                grads = bufs
            torch._foreach_add_(self.params, grads, alpha=-lr)
            return
        if self.adam:
            beta1, beta2 = group["betas"]
            step = self.state["step"][0]
            step.add_(1 if active is None else active.to(step.dtype))
            bias1, bias2_sqrt = 1 - beta1 ** step, (1 - beta2 ** step).sqrt()
        grads = self._grads()
        for i, p in enumerate(self.params):
            grad = grads[i] if wd == 0 else grads[i].add_(p, alpha=wd)
            if self.adam:
                exp_avg, exp_avg_sq = self.state["exp_avg"][i], self.state["exp_avg_sq"][i]
                new_avg = exp_avg.lerp(grad, 1 - beta1)
                new_sq = exp_avg_sq.mul(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (new_sq.sqrt() / per_model(bias2_sqrt, p)).add_(group["eps"])
                new_p = p - per_model(lr / bias1, p) * new_avg / denom
                updates: tuple[tuple[torch.Tensor, torch.Tensor], ...] = (
                    (exp_avg, new_avg), (exp_avg_sq, new_sq), (p, new_p))
            else:
                buf = self.state["momentum_buffer"][i]
                new_buf = buf.mul(group["momentum"]).add_(grad) if group["momentum"] != 0 else grad
                updates = ((buf, new_buf), (p, p.add(new_buf, alpha=-lr)))
            keep = None if active is None else per_model(active, p)
            for target, value in updates:
                target.copy_(value if keep is None else torch.where(keep, value, target))
