"""`TrialConfig`: everything that determines one trial, what `samprivacy trial`, the sweep's trainable and the
reports pass around."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from samprivacy.errors import ConfigError
from samprivacy.spec.errors import problems

OPTIMIZERS = ("sgd", "sam", "asam", "sharpreg")
# Which optimizer takes which hyperparameter (learn.optim.PRESETS fixes the rest: a test keeps them in step).
OPTIMIZER_PARAMS = {"sgd": (), "sam": ("rho",), "asam": ("rho",), "sharpreg": ("rho", "lam", "xi")}
SINGLE_QUERY_ATTACKS = ("correctness", "confidence", "entropy", "modified_entropy", "loss")

class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrialConfig(_Frozen):
    """Everything that determines one trial: data, model, optimizer, budget, seed, attacks."""

    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    model: str | None = Field(None, description="model name; None picks the dataset's default")
    hidden: tuple[int, ...] | None = Field(None, description="hidden sizes of the FC model")
    optimizer: Literal["sgd", "sam", "asam", "sharpreg"] = "sgd"
    base_optimizer: Literal["sgd", "adam"] = "sgd"
    rho: float | None = Field(None, ge=0.0, description="radius ρ; sam/asam/sharpreg only; None = preset default")
    lam: float | None = Field(None, description="sharpness weight λ; only sharpreg takes it")
    xi: float | None = Field(None, description="anti-overfitting weight ξ; only sharpreg takes it")
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = Field(0, ge=0)
    split_seed: int | None = Field(None, ge=0, description="seed of the member/non-member split; None = seed")
    attacks: tuple[str, ...] | None = Field(None, description="attack names; None runs every attack")
    device: str | None = Field(None, description="'cpu', 'cuda', ...; None picks CUDA when available")

    @field_validator("rho", "lr", "momentum", "weight_decay", "lam", "xi")
    @classmethod
    def _finite(cls, v: float | None, info) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"`{info.field_name}` must be a finite number, got {v}")
        return v

    @model_validator(mode="after")
    def _own_params_only(self) -> "TrialConfig":
        for name in ("rho", "lam", "xi"):
            if getattr(self, name) is not None and name not in OPTIMIZER_PARAMS[self.optimizer]:
                takers = ", ".join(f"'{o}'" for o, params in OPTIMIZER_PARAMS.items() if name in params)
                raise ValueError(f"`{name}` applies only to {takers} (got optimizer '{self.optimizer}'); "
                                 f"drop `{name}` or choose one of those")
        return self


def parse_trial_config(fields: dict) -> TrialConfig:
    """Build a TrialConfig from user input, turning pydantic's errors into one clear ConfigError."""
    try:
        return TrialConfig(**fields)
    except ValidationError as exc:
        lines = [f"  {path or '<top level>'}: {message}" for path, message in problems(exc, TrialConfig.model_fields)]
        raise ConfigError("\n".join(["invalid trial configuration:", *lines])) from None
