"""DP-SGD (Abadi et al. 2016) through Opacus: Poisson-sampled batches, per-sample gradients clipped to
`max_grad_norm`, Gaussian noise of std `noise_multiplier * max_grad_norm`, and the RDP accountant's epsilon.

    private = DPTraining.attach(model, base_optimizer, x, y, config, generator_seed)   # Opacus's make_private
    loss_sum, correct = private.epoch(amp)            # one expected pass over the data (1 / q steps)
    private.epsilon()                                  # what the accountant has spent so far, at delta
    private.detach()                                   # the plain module again (hooks removed)

Everything private is Opacus's (PrivacyEngine.make_private: GradSampleModule hooks, DPOptimizer, DPDataLoader);
this file only picks the noise (from `target_epsilon` with Opacus's own search when asked), refuses what Opacus
cannot train, and runs the loop. DP composes with plain SGD/Adam only: the sharpness-aware second pass would
need its own privacy analysis (DP-SAT, Park et al. 2023, reuses the previous noisy gradient), not done here.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from samprivacy.errors import ConfigError

ACCOUNTANT = "rdp"  # Opacus's Renyi accountant (Mironov 2017): the one get_noise_multiplier searches with


def check_model(model: nn.Module) -> None:
    """Refuse a model Opacus cannot compute per-sample gradients for (BatchNorm mixes the examples of a batch)."""
    errors = ModuleValidator.validate(model.train(), strict=False)
    if errors:
        kinds = sorted({type(e).__name__ for e in errors})
        norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        fix = ("BatchNorm shares statistics across the examples of a batch, so a per-sample gradient is undefined; "
               "use model 'fc' or 'mlp' (or a model with GroupNorm: Opacus's ModuleValidator.fix swaps BatchNorm "
               "for GroupNorm)") if norm else "use model 'fc' or 'mlp'"
        raise ConfigError(f"`defense` 'dp' cannot train this model ({', '.join(kinds)}: {errors[0]}); {fix}")


def noise_option(config: Any) -> float | None:
    """sigma as given; None when a target epsilon decides it; the catalog default when neither is given."""
    if config.noise_multiplier is None and config.target_epsilon is None:
        from samprivacy import catalog
        return catalog.DEFENSE_DEFAULTS["noise_multiplier"]
    return config.noise_multiplier


def resolve_delta(delta: float | None, n_train: int) -> float:
    """delta defaults to 1 / (training-set size)."""
    return 1.0 / n_train if delta is None else delta


def resolve_noise(*, noise_multiplier: float | None, target_epsilon: float | None, delta: float,
                  sample_rate: float, epochs: int) -> float:
    """sigma as given, or Opacus's search for the smallest sigma that spends at most target_epsilon in `epochs`."""
    if noise_multiplier is not None:
        return noise_multiplier
    try:
        return get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
                                    epochs=epochs, accountant=ACCOUNTANT)
    except ValueError:  # Opacus: "The privacy budget is too low." (sigma would exceed 1e6)
        raise ConfigError(f"`target_epsilon` {target_epsilon} cannot be reached in {epochs} epochs at batch "
                          f"sampling rate {sample_rate:.4g} and delta {delta:.3g} (the noise would exceed 1e6); "
                          "raise target_epsilon or target_delta, or lower epochs or batch_size") from None


class DPTraining:
    """Opacus's private model, optimizer and Poisson data loader around one training set."""

    def __init__(self, engine: PrivacyEngine, hooks: Any, optimizer: Any, loader: DataLoader, delta: float,
                 noise_multiplier: float, sample_rate: float,
                 generators: tuple[torch.Generator, torch.Generator]) -> None:
        self.engine, self.hooks, self.optimizer, self.loader = engine, hooks, optimizer, loader
        self.delta, self.noise_multiplier, self.sample_rate = delta, noise_multiplier, sample_rate
        self.generators = generators  # (Poisson sampling, noise), reseeded every epoch

    @classmethod
    def attach(cls, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *,
               batch_size: int, epochs: int, max_grad_norm: float, noise_multiplier: float | None,
               target_epsilon: float | None, delta: float | None, seed: int) -> "DPTraining":
        check_model(model)
        n = len(x)
        delta = resolve_delta(delta, n)
        sampling = torch.Generator().manual_seed(seed)
        loader = DataLoader(TensorDataset(x, y), batch_size=min(batch_size, n), generator=sampling)
        sample_rate = 1 / len(loader)  # what make_private gives the accountant
        sigma = resolve_noise(noise_multiplier=noise_multiplier, target_epsilon=target_epsilon, delta=delta,
                              sample_rate=sample_rate, epochs=epochs)
        with warnings.catch_warnings():  # "Secure RNG turned off": seeded noise is what a reproducible sweep needs
            warnings.simplefilter("ignore", UserWarning)
            engine = PrivacyEngine(accountant=ACCOUNTANT)
        noise = torch.Generator(device=x.device).manual_seed(seed)
        # wrap_model=False: hooks on the model itself, so the caller keeps one plain module throughout
        hooks, optimizer, loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma,
            max_grad_norm=max_grad_norm, poisson_sampling=True, noise_generator=noise, wrap_model=False)
        return cls(engine, hooks, optimizer, loader, delta, sigma, sample_rate, (sampling, noise))

    def epoch(self, model: nn.Module, amp: bool, seed: int,
              label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One pass of Poisson-sampled batches: (sum of losses, correct count, examples seen). Sampling and noise
        are drawn from `seed`, so an epoch resumed from a checkpoint draws what it drew the first time."""
        for offset, generator in enumerate(self.generators):
            generator.manual_seed(seed + offset)
        loss_sum, correct, seen = 0.0, 0, 0
        for xb, yb in self.loader:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(xb)
            # an empty Poisson batch still takes a (pure-noise) step, as the accountant counts it
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing) if len(xb) else \
                logits.sum() * 0.0
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(yb)
        return torch.tensor(loss_sum), torch.tensor(correct), seen

    def epsilon(self) -> float:
        return float(self.engine.accountant.get_epsilon(delta=self.delta)) if len(self.engine.accountant) else 0.0

    def steps(self) -> int:
        return sum(s for _, _, s in self.engine.accountant.history)

    def state(self) -> dict:
        return {"accountant": self.engine.accountant.state_dict()}

    def load_state(self, state: dict) -> None:
        self.engine.accountant.load_state_dict(state["accountant"])

    def metrics(self) -> dict[str, float]:
        return {"epsilon": self.epsilon(), "delta": self.delta, "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate, "dp_steps": float(self.steps())}

    def detach(self) -> None:
        self.hooks.cleanup()

