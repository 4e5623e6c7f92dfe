"""Membership defenses, each hooked into the one training loop (learn.train.train) by its TrainConfig fields:

    dp        dp.py       DP-SGD through Opacus: per-sample clipping, noise, the accountant's epsilon
    advreg    advreg.py   adversarial regularisation: an inference model in the loop (Nasr et al. 2018)
    selena    selena.py   Split-AI over K sub-models, then self-distillation (Tang et al. 2022)
    memguard  memguard.py noise on the confidence vector after training (Jia et al. 2019)
    label smoothing and last-epoch selection are plain TrainConfig options (label_smoothing, selection)

AdvReg and MemGuard need non-members the trial neither trains on nor attacks: `reference_split` takes them
from the validation split, and model selection uses the rest of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from samprivacy import catalog
from samprivacy.errors import ConfigError

REFERENCE_SHARE = 0.5  # of the validation split: AdvReg's and MemGuard's non-members


def reference_split(val: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference, selection): a random half of the validation split for the defense, the rest for selection."""
    val = np.sort(np.asarray(val))
    if len(val) < 2:
        raise ConfigError(f"AdvReg and MemGuard need a validation split of at least 2 examples to take their "
                          f"reference non-members from, got {len(val)}; use a larger dataset")
    order = np.random.default_rng([seed, 23]).permutation(len(val))
    cut = int(round(REFERENCE_SHARE * len(val)))
    return np.sort(val[order[:cut]]), np.sort(val[order[cut:]])


def uses_reference(config: Any) -> bool:
    return config.defense in ("advreg", "memguard")


def split_validation(config: Any, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reference, selection) rows: the defense's non-members (none unless it needs them) and model selection's."""
    if uses_reference(config):
        return reference_split(val, config.seed)
    return np.empty(0, np.int64), np.asarray(val)


def option(config: Any, name: str) -> Any:
    """A defense parameter as given, or its catalog default (catalog.DEFENSE_DEFAULTS)."""
    value = getattr(config, name)
    return catalog.DEFENSE_DEFAULTS[name] if value is None else value


def replace(config: Any, **changes: Any) -> Any:
    """The configuration with `changes`: a pydantic model (spec.TrialConfig) or a dataclass."""
    if hasattr(config, "model_copy"):
        return config.model_copy(update=changes)
    return dataclasses.replace(config, **changes)


def check(config: Any) -> None:
    """One ConfigError naming the field, the value and the fix (catalog.defense_problems: the same check the
    spec runs), for a configuration that did not come through spec.TrialConfig."""
    if config.defense is not None and config.defense not in catalog.DEFENSES:
        raise ConfigError(f"unknown `defense` {config.defense!r}; choose from: {', '.join(catalog.DEFENSES)}")
    if config.selection not in catalog.SELECTIONS:
        raise ConfigError(f"unknown `selection` {config.selection!r}; choose from: {', '.join(catalog.SELECTIONS)}")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise ConfigError(f"`label_smoothing` must lie in [0, 1), got {config.label_smoothing}")
    values = {p: getattr(config, p) for p in catalog.DEFENSE_PARAMS}
    for field, message in catalog.defense_problems(config.defense, config.optimizer, values):
        raise ConfigError(f"`{field}` {message}")
