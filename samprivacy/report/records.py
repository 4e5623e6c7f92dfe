"""What a sweep's results are, as typed objects: one `TrialRecord` per trained configuration x seed, one
`ConfigResult` per configuration (mean and standard deviation over its seeds), and `SweepResults` holding both.

Plain data (no MLflow, Ray or Optuna): `report.runs` fills these from MLflow; tables, plots and the front read them.
A configuration is a trial's parameters without its seed: the service's `samprivacy.config_id` tag when a run
carries one, else a hash of its params without SEED_PARAMS, so seeds of one configuration group the same way
whether they ran as replicates or as a seed search dimension.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from samprivacy.report.pareto import non_dominated

# Params that differ between the seeds of one configuration (or are bookkeeping), never part of its identity.
SEED_PARAMS = ("seed", "split_seed", "optuna_trial")


def config_id(params: Mapping[str, str]) -> str:
    """A stable 12-hex-digit id of a configuration: its params without SEED_PARAMS, as text."""
    kept = {k: str(v) for k, v in sorted(params.items()) if k not in SEED_PARAMS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TrialRecord:
    """One trained configuration x seed: an MLflow run of kind `trial`."""

    run_id: str
    name: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    trial_id: str | None = None
    config_id: str | None = None  # the run's tag; None = computed from its params

    @property
    def config_key(self) -> str:
        return self.config_id or config_id(self.params)

    @property
    def dataset(self) -> str:
        return self.params.get("dataset", "?")

    @property
    def optimizer(self) -> str:
        return self.params.get("optimizer", "?")

    @property
    def method(self) -> str:
        """What the front calls it: the run's `method` param (sgd, dp-sgd, advreg, ...), else its optimizer."""
        return self.params.get("method", self.optimizer)

    @property
    def seed(self) -> str | None:
        return self.params.get("seed")


@dataclass(frozen=True)
class ConfigResult:
    """One configuration over its seeds. `std` is the sample standard deviation (n - 1), NaN with one seed."""

    config_id: str
    dataset: str
    optimizer: str
    params: Mapping[str, str]  # without SEED_PARAMS
    seeds: tuple[str, ...]
    run_ids: tuple[str, ...]
    mean: Mapping[str, float]
    std: Mapping[str, float]
    method: str | None = None  # sgd, sam, dp-sgd, advreg, selena+sharpreg, ...; None: the optimizer

    @property
    def label(self) -> str:
        """The name of the configuration's method in tables, legends and the front."""
        return self.method or self.optimizer

    @property
    def n(self) -> int:
        return len(self.run_ids)

    def value(self, metric: str) -> float:
        return self.mean.get(metric, math.nan)

    def error(self, metric: str) -> float:
        return self.std.get(metric, math.nan)


def group_configs(trials: Sequence[TrialRecord]) -> list[ConfigResult]:
    """Trials grouped by configuration, in order of each configuration's first trial."""
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        groups.setdefault(trial.config_key, []).append(trial)
    results = []
    for key, members in groups.items():
        names = sorted({m for t in members for m in t.metrics})
        values = np.array([[t.metrics.get(m, math.nan) for m in names] for t in members], dtype=float)
        values = values.reshape(len(members), len(names))
        counts = np.isfinite(values).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            sums = np.where(np.isfinite(values), values, 0.0).sum(axis=0)
            means = np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)
            sq = np.where(np.isfinite(values), (values - means) ** 2, 0.0).sum(axis=0)
            stds = np.where(counts > 1, np.sqrt(sq / np.maximum(counts - 1, 1)), math.nan)
        first = members[0]
        results.append(ConfigResult(
            config_id=key, dataset=first.dataset, optimizer=first.optimizer,
            params={k: v for k, v in sorted(first.params.items()) if k not in SEED_PARAMS},
            seeds=tuple(t.seed or "?" for t in members), run_ids=tuple(t.run_id for t in members),
            mean=dict(zip(names, means.tolist())), std=dict(zip(names, stds.tolist())), method=first.method))
    return results


# What the method's name already says (catalog.method_name), never repeated beside it.
METHOD_PARAMS = ("optimizer", "method", "defense", "selection")
# Settings whose value here means "off": a row shows them only when on (label_smoothing=0.3, not =0 everywhere).
OFF_VALUES = {"label_smoothing": 0.0}


def varying_params(configs: Sequence[ConfigResult], exclude: Sequence[str] = ("dataset", *METHOD_PARAMS)) -> list[str]:
    """The params whose values differ between configurations: what tells two rows of a table apart."""
    values: dict[str, set] = {}
    counts: dict[str, int] = {}
    for config in configs:  # one pass (a sweep may have 10,000 configurations)
        for key, value in config.params.items():
            values.setdefault(key, set()).add(value)
            counts[key] = counts.get(key, 0) + 1
    for key, count in counts.items():
        if count < len(configs):  # some configuration lacks it: that is a value of its own
            values[key].add(None)
    return [k for k in sorted(set(values) - set(exclude)) if len(values[k]) > 1]


def describe(config: ConfigResult, keys: Sequence[str]) -> str:
    """`rho=0.05, lr=0.1`: the config's values of `keys` (those it has), numbers shortened."""
    parts = []
    for key in keys:
        if key in config.params:
            value = config.params[key]
            try:
                if float(value) == OFF_VALUES.get(key):
                    continue
                value = f"{float(value):.4g}"
            except ValueError:
                pass
            parts.append(f"{key}={value}")
    return ", ".join(parts)


@dataclass(frozen=True)
class SweepResults:
    """A sweep's trial records and configurations, its objectives (name -> max/min, in order) and the front."""

    name: str
    objectives: Mapping[str, str]
    trials: tuple[TrialRecord, ...]
    configs: tuple[ConfigResult, ...] = field(default=())
    experiment_id: str | None = None
    summary_run_id: str | None = None

    @classmethod
    def build(cls, name: str, objectives: Mapping[str, str], trials: Sequence[TrialRecord],
              experiment_id: str | None = None, summary_run_id: str | None = None) -> "SweepResults":
        return cls(name, dict(objectives), tuple(trials), tuple(group_configs(trials)), experiment_id,
                   summary_run_id)

    def points(self) -> np.ndarray:
        """(n_configs, n_objectives) means, in the objectives' order."""
        return np.array([[c.value(o) for o in self.objectives] for c in self.configs], dtype=float).reshape(
            len(self.configs), len(self.objectives))

    def errors(self) -> np.ndarray:
        return np.array([[c.error(o) for o in self.objectives] for c in self.configs], dtype=float).reshape(
            len(self.configs), len(self.objectives))

    def front_mask(self) -> np.ndarray:
        """Which configurations are non-dominated, judged on their means (computed once: the results are frozen)."""
        return self._front_mask.copy()

    @cached_property
    def _front_mask(self) -> np.ndarray:
        return non_dominated(self.points(), list(self.objectives.values())) if self.configs else np.zeros(0, bool)

    @cached_property
    def varying(self) -> tuple[str, ...]:
        """`varying_params` of the configurations (computed once)."""
        return tuple(varying_params(self.configs))

    def front(self) -> list[ConfigResult]:
        return [c for c, on in zip(self.configs, self._front_mask) if on]
