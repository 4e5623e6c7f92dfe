"""The sharpness-aware optimizer family as one `torch.optim.Optimizer` (after davda54/sam).

Every member minimises Equation (6) of the paper with the first-order step of Foret et al.:

    min_w (1 + lam - xi) * L(w) - lam * L(w + eps),   eps = rho * g / ||g||,  g = grad L(w)

so its gradient is (1 + lam - xi) * grad L(w) - lam * grad L(w + eps). Presets:
    sgd       lam = 0,  xi = 0   one forward/backward pass, plain base optimizer
    sam       lam = -1, xi = 0   gradient at w + eps only
    asam      as sam, eps scaled elementwise by T_w = |w| + eta, eta = 0.01 (Kwon et al. 2021)
    sharpreg  lam > 0 seeks sharper minima, xi keeps the training loss away from zero (paper: rho .01, lam 1.5, xi .3)

The base optimizer (SGD with momentum, Adam), its weight decay and any LR scheduler stay standard.
`step(closure)` calls `closure()` once or twice; the closure runs forward + backward and returns the loss
(gradients are zeroed before each call). BatchNorm statistics are the training loop's business.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Callable

import torch

from samprivacy import catalog
from samprivacy.errors import ConfigError

# name -> fixed (lam, xi, adaptive) and default rho; eta (ASAM's T_w = |w| + eta) matters only when adaptive.
# SWA's weight averaging (averaged, swa_start, swa_lr_scale) is the training loop's business (learn.train); its
# steps are plain SGD steps.
_STEP_KEYS = ("lam", "xi", "rho", "adaptive", "eta")
PRESETS: dict[str, dict] = {name: {k: v for k, v in entry.preset.items() if k in _STEP_KEYS}
                            for name, entry in catalog.OPTIMIZERS.items()}
BASE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def _check(name: str, value: float, *, minimum: float | None = None) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"`{name}` must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"`{name}` must be >= {minimum}, got {value}")
    return float(value)


class SharpnessAware(torch.optim.Optimizer):
    """Wraps `base_optimizer` and feeds it the gradient of Equation (6)."""

    def __init__(self, params: Iterable[torch.Tensor], base_optimizer: type[torch.optim.Optimizer], *, rho: float,
                 lam: float, xi: float = 0.0, adaptive: bool = False, eta: float = 0.01, **base_kwargs: Any) -> None:
        defaults: dict[str, Any] = dict(rho=_check("rho", rho, minimum=0.0), lam=_check("lam", lam), xi=_check("xi", xi),
                        adaptive=adaptive, eta=_check("eta", eta, minimum=0.0), **base_kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups  # one set of groups: schedulers see the base's lr
        self.defaults.update(self.base_optimizer.defaults)

    def state_dict(self) -> dict:
        # Momentum / Adam moments live in the base optimizer; the wrapper keeps nothing between steps.
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups

    @property
    def passes(self) -> int:
        """Forward/backward passes per step: 1 when no group has a sharpness term (lam = 0 or rho = 0)."""
        return 2 if any(g["lam"] != 0.0 and g["rho"] > 0.0 for g in self.param_groups) else 1

    @staticmethod
    def _t_w(params: list[torch.Tensor], eta: float) -> list[torch.Tensor]:
        t_w = list(torch._foreach_abs(params))
        torch._foreach_add_(t_w, eta)
        return t_w

    def _grads(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params = [p for p in group["params"] if p.grad is not None]
        return params, [p.grad for p in params]

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        # ||g|| over all parameters; ASAM measures ||T_w g|| with T_w = |w| + eta (Kwon et al. 2021).
        norms: list[torch.Tensor] = []
        for group in self.param_groups:
            params, grads = self._grads(group)
            if not params:
                continue
            if group["adaptive"]:
                grads = list(torch._foreach_mul(grads, self._t_w(params, group.get("eta", self.defaults["eta"]))))
            norms.extend(torch._foreach_norm(grads))
        return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())

    @torch.no_grad()
    def first_step(self) -> None:
        """Move to w + eps, eps = rho * g / ||g|| (ASAM: rho * T_w^2 g / ||T_w g||, T_w = |w| + eta).

        Costs one read of g (the norm) and one fused write of w + eps. The old weights and g(w) are kept by
        reference, not copied: the second pass writes fresh gradient tensors and w comes back by a storage swap.
        """
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            params, grads = self._grads(group)
            if not params:
                continue
            scale = group["rho"] / (grad_norm + 1e-12)
            if group["adaptive"]:
                t_w = self._t_w(params, group.get("eta", self.defaults["eta"]))
                eps = torch._foreach_mul(torch._foreach_mul(t_w, t_w), grads)
                torch._foreach_mul_(eps, scale)
                moved = torch._foreach_add(params, eps)
            elif scale.device.type == "cpu":
                moved = torch._foreach_add(params, grads, alpha=scale.item())
            else:  # keep the GPU free of a host sync: scale stays a device tensor
                moved = torch._foreach_add(params, torch._foreach_mul(grads, scale))
            for p, g, w_eps in zip(params, grads, moved):
                self.state[p]["w"], self.state[p]["grad_w"] = p.data, g
                p.data, p.grad = w_eps, None

    @torch.no_grad()
    def second_step(self) -> None:
        """Return to w and set grad = (1 + lam - xi) * g(w) - lam * g(w + eps), then step the base optimizer."""
        for group in self.param_groups:
            coef_w, lam = 1.0 + group["lam"] - group["xi"], group["lam"]
            for p in group["params"]:
                state = self.state[p]
                if "w" not in state:
                    continue
                p.data = state.pop("w")
                grad_w = state.pop("grad_w")
                if p.grad is None:  # no gradient at w + eps: the term vanishes
                    p.grad = torch.zeros_like(grad_w)
                if lam != -1.0:
                    p.grad.mul_(-lam)
                if coef_w != 0.0:  # SAM's coefficient is 0: g(w) is dropped
                    p.grad.add_(grad_w, alpha=coef_w)
        self.base_optimizer.step()

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        if closure is None:
            raise ConfigError("SharpnessAware.step needs a closure that runs forward + backward and returns the loss")
        closure = torch.enable_grad()(closure)
        self.zero_grad(set_to_none=True)
        loss = closure()
        if self.passes == 1:
            with torch.no_grad():
                for group in self.param_groups:
                    # lam = 0 or rho = 0 (L(w + 0) = L(w)): Equation (6) reduces to (1 - xi) * L(w),
                    # so the gradient is (1 - xi) * g
                    coef = 1.0 - group["xi"]
                    if coef != 1.0:
                        torch._foreach_mul_(self._grads(group)[1], coef)
            self.base_optimizer.step()
            return loss
        self.first_step()
        closure()
        self.second_step()
        return loss


def make_optimizer(name: str, params: Iterable[torch.Tensor], *, base: str = "sgd", lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0, rho: float | None = None, lam: float | None = None,
                   xi: float | None = None) -> SharpnessAware:
    """Build a preset (catalog.OPTIMIZERS). `rho` applies to sam/asam/sharpreg; `lam` and `xi` only to sharpreg."""
    if name not in PRESETS:
        raise ConfigError(f"unknown optimizer {name!r}; choose from: {', '.join(PRESETS)}")
    if base not in BASE_OPTIMIZERS:
        raise ConfigError(f"unknown base optimizer {base!r}; choose from: {', '.join(BASE_OPTIMIZERS)}")
    preset: dict[str, Any] = dict(PRESETS[name])
    for key, value in (("rho", rho), ("lam", lam), ("xi", xi)):
        if value is None:
            continue
        if (problem := catalog.misplaced_param(name, key)) is not None:
            raise ConfigError(problem)
        preset[key] = value
    base_kwargs = dict(lr=_check("lr", lr, minimum=0.0), weight_decay=_check("weight_decay", weight_decay, minimum=0.0))
    if base == "sgd":
        base_kwargs["momentum"] = _check("momentum", momentum, minimum=0.0)
    return SharpnessAware(params, BASE_OPTIMIZERS[base], **preset, **base_kwargs)  # type: ignore[arg-type]  # preset: rho, lam, xi, adaptive, eta
