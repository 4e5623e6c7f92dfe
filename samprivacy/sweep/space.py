"""The Optuna search space of a SweepSpec: define-by-run suggestions, objective directions, samplers.

Parameter names (the keys of Optuna's `trial.params`; stable across resume because they depend on the spec only):
  dataset, seed, optimizer     categorical, suggested only when the spec lists more than one
  method                       instead of optimizer when the spec has `defenses`: an optimizer or a defense
  <optimizer>.<name>           the chosen optimizer's own searched parameters: sam.rho, asam.rho,
                               sharpreg.rho, sharpreg.lam, sharpreg.xi (conditional: an sgd trial has none)
  <defense>.<name>             the chosen defense's: dp.noise_multiplier, advreg.adv_alpha, selena.selena_k, ...
  <train field>                epochs, batch_size, lr, momentum, weight_decay, schedule, base_optimizer
A fixed value (a number, a one-element choice, low == high) is never suggested: it goes straight into the
TrialConfig, so it is no search dimension. Suggestion order: dataset, seed, optimizer, its parameters, training.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.samplers import BaseSampler, GPSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from samprivacy.errors import ConfigError
from samprivacy.spec import Param, SweepSpec, TrialConfig, field_kind, parse_trial_config

__all__ = ["SAMPLER_FACTORIES", "ConditionalGridSampler", "config_from_params", "config_id", "configuration",
           "directions", "grid_combos", "make_sampler", "method_key", "method_of", "missing_params", "param_names",
           "proposal_config_id", "suggest_params", "suggest_trial_config", "unit_seeds"]


def directions(spec: SweepSpec) -> list[StudyDirection]:
    """Optuna's study directions, one per objective in the spec's order."""
    return [StudyDirection.MAXIMIZE if mode == "max" else StudyDirection.MINIMIZE for mode in spec.objective_modes]


def method_key(spec: SweepSpec) -> str:
    """The categorical parameter that picks what a trial compares: `optimizer`, or `method` once the spec has
    defenses (a sweep of optimizers alone keeps its parameter names, so its studies resume unchanged)."""
    return "method" if spec.defenses else "optimizer"


def method_of(spec: SweepSpec, params: dict[str, Any]) -> str:
    """The optimizer or defense a trial's params chose (the only one when the spec has one)."""
    return params.get(method_key(spec), spec.methods[0])


def _categorical(spec: SweepSpec) -> dict[str, tuple]:
    """The top-level categorical dimensions: only those with more than one option."""
    options = {"dataset": spec.datasets, "seed": spec.searched_seeds, method_key(spec): spec.methods}
    return {name: values for name, values in options.items() if len(values) > 1}


def _searched(spec: SweepSpec, method: str) -> dict[str, tuple[str, Param]]:
    """{parameter name: (TrialConfig field, Param)} of what a trial with `method` searches, in suggestion order;
    a defense's training options (label_smoothing, selection) override the spec's `train` ones."""
    own = {f"{method}.{field}": (field, p) for field, p in spec.method_space(method).params().items()}
    train = {field: (field, p) for field, p in spec.train.params().items()
             if field not in spec.method_space(method).params()}
    return {name: fp for name, fp in (own | train).items() if not fp[1].is_fixed}


def param_names(spec: SweepSpec) -> list[str]:
    """Every parameter name the space can suggest (each trial has a subset: its method's)."""
    names = list(_categorical(spec))
    for method in spec.methods:
        names += [n for n in _searched(spec, method) if n not in names]
    return names


def _suggest(trial: optuna.Trial, name: str, field: str, p: Param) -> Any:
    if p.kind == "choices":
        return trial.suggest_categorical(name, list(p.choices or ()))
    if field_kind(field) == "int":
        return trial.suggest_int(name, p.low, p.high, step=p.step or 1, log=p.log)
    return trial.suggest_float(name, float(p.low), float(p.high), step=p.step, log=p.log)


def suggest_params(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
    """Define-by-run: suggest the categorical choices, then only the chosen optimizer's parameters, then training."""
    params = {name: trial.suggest_categorical(name, list(values)) for name, values in _categorical(spec).items()}
    for name, (field, p) in _searched(spec, method_of(spec, params)).items():
        params[name] = _suggest(trial, name, field, p)
    return params


def missing_params(spec: SweepSpec, params: dict[str, Any]) -> list[str]:
    """The parameters a trial's define-by-run would have suggested but `params` lacks: not empty for an Optuna
    trial asked but interrupted before (or while) its parameters were chosen. Such params are no configuration:
    `config_from_params` would fill the gaps with defaults."""
    method = method_of(spec, params)
    if method not in spec.methods:
        return [method_key(spec)]
    return [name for name in [*_categorical(spec), *_searched(spec, method)] if name not in params]


def config_from_params(spec: SweepSpec, params: dict[str, Any]) -> TrialConfig:
    """The TrialConfig of a trial: the spec's fixed fields plus Optuna's params (e.g. a FrozenTrial's on resume)."""
    fields = spec.fixed_trial_fields()
    fields |= {key: params[key] for key in ("dataset", "seed") if key in params}
    fields["dataset_options"] = spec.dataset_options.get(fields["dataset"])
    method = method_of(spec, params)
    fields |= spec.method_fields(method)
    fields |= {field: params[field] for field, p in spec.train.params().items() if not p.is_fixed}
    for field, p in spec.method_space(method).params().items():
        fields[field] = p.fixed if p.is_fixed else params[f"{method}.{field}"]
    return parse_trial_config(fields)


def configuration(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """What the printed front names a proposal by: its method (catalog.method_name: 'dp-sgd', 'selena+sharpreg')
    and every setting of that method plus the searched training ones, fixed values included (a front row whose
    parameters the spec fixes still says what they are)."""
    method = method_of(spec, params)
    config = config_from_params(spec, params)
    fields = [*spec.method_space(method).params(), *(f for f, p in spec.train.params().items() if not p.is_fixed)]
    fields += [key for key in ("dataset", "seed") if key in params]
    return {"method": config.method, "settings": {f: getattr(config, f) for f in dict.fromkeys(fields)}}


def unit_seeds(spec: SweepSpec, params: dict[str, Any]) -> tuple[int, ...]:
    """The seeds a proposal trains on: every seed with repeats > 1, else its own (searched or fixed) seed."""
    return spec.seeds if spec.repeats > 1 else (params.get("seed", spec.seeds[0]),)


def config_id(config: TrialConfig) -> str:
    """A stable id of a configuration without its seed: the same settings give the same id (duplicates and
    replicates are found by it, and MLflow runs carry it as `samprivacy.config_id`)."""
    document = config.model_dump(mode="json")
    document.pop("seed")
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def proposal_config_id(spec: SweepSpec, params: dict[str, Any], seeds: tuple[int, ...]) -> str:
    """The configuration id of a proposal with these Optuna params (its first seed stands for the seed)."""
    return config_id(config_from_params(spec, {**params, "seed": seeds[0]}))


def suggest_trial_config(trial: optuna.Trial, spec: SweepSpec) -> TrialConfig:
    """Suggest one trial's configuration; an sgd trial never gets rho, lam or xi."""
    return config_from_params(spec, suggest_params(trial, spec))


def grid_combos(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every distinct parameter combination (conditional: sgd combos carry no sam.rho), as Optuna params."""
    top, combos, key = _categorical(spec), [], method_key(spec)
    for method in spec.methods:
        dims = {name: values for name, values in top.items() if name != key}
        dims |= {key: (method,)} if key in top else {}
        for name, (field, p) in _searched(spec, method).items():
            values = p.values(field_kind(field) == "int")
            if values is None:  # SweepSpec rejects this for sampler grid; reached only when called on another spec
                raise ConfigError(f"{name}: a grid needs finite values; give {{choices: [...]}} or a step")
            dims[name] = values
        combos += [dict(zip(dims, values)) for values in itertools.product(*dims.values())]
    return combos


class ConditionalGridSampler(BaseSampler):
    """Each combination of an explicit list once, through Optuna's public sampler interface.

    A product of every parameter's values would repeat every sgd trial once per sam.rho value; here each
    combination appears once. A trial takes the first combination, in an order shuffled by `seed`, that no
    other trial of the study holds (finished or RUNNING, by its params: a failed combination, a diverging one
    say, is not proposed again, so a grid of N combinations measures each once within `trials` = N); once
    every combination is taken, one at random, as Optuna's GridSampler does. Nothing is stored beside the
    trials' own params, so a resumed study goes on where it stopped, whatever the seed.
    """

    def __init__(self, combos: Sequence[dict[str, Any]], seed: int | None = None) -> None:
        self.names = sorted({name for combo in combos for name in combo})
        self.rng = np.random.RandomState(seed)
        self.combos = [combos[i] for i in self.rng.permutation(len(combos))]
        self.chosen: dict[int, dict[str, Any]] = {}  # trial number -> its combination, while it is suggested

    def _key(self, params: dict[str, Any]) -> tuple:
        return tuple(params.get(name) for name in self.names)

    def _taken(self, study: optuna.Study, but: int | None = None) -> set[tuple]:
        return {self._key(t.params) for t in study.get_trials(deepcopy=False, states=_HELD) if t.number != but}

    def is_exhausted(self, study: optuna.Study) -> bool:
        """Whether every combination is held by a trial of `study`."""
        return not {self._key(combo) for combo in self.combos} - self._taken(study)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if trial.number not in self.chosen:
            taken = self._taken(study, but=trial.number)
            free = [combo for combo in self.combos if self._key(combo) not in taken]
            self.chosen[trial.number] = free[0] if free else self.combos[self.rng.randint(len(self.combos))]
        combo = self.chosen[trial.number]
        if param_name not in combo:
            raise ValueError(f"the grid has no value of {param_name!r} in combination {combo}")
        return combo[param_name]

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.chosen.pop(trial.number, None)


_HELD = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


def _tpe(spec: SweepSpec) -> BaseSampler:
    # group=True: multivariate TPE per conditional sub-space (sgd / sam / sharpreg trials have different params);
    # constant_liar: concurrent trials do not all crowd the same point
    return TPESampler(multivariate=True, group=True, constant_liar=True, seed=spec.sampler.seed,
                      n_startup_trials=_or(spec.sampler.n_startup_trials, 10))


def _nsga2(spec: SweepSpec) -> BaseSampler:
    return NSGAIISampler(population_size=_or(spec.sampler.population_size, 50), seed=spec.sampler.seed)


def _gp(spec: SweepSpec) -> BaseSampler:
    missing = [m for m in ("torch", "scipy") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"sampler.name: 'gp' needs {' and '.join(missing)}; install it or use tpe")
    # conditional parameters fall outside the GP's fixed search space and are sampled at random: no warning each time
    return GPSampler(seed=spec.sampler.seed, n_startup_trials=_or(spec.sampler.n_startup_trials, 10),
                     warn_independent_sampling=False)


def _random(spec: SweepSpec) -> BaseSampler:
    return RandomSampler(seed=spec.sampler.seed)


def _grid(spec: SweepSpec) -> BaseSampler:
    return ConditionalGridSampler(grid_combos(spec), seed=spec.sampler.seed)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


SAMPLER_FACTORIES: dict[str, Callable[[SweepSpec], BaseSampler]] = {
    "tpe": _tpe, "nsga2": _nsga2, "gp": _gp, "random": _random, "grid": _grid}


def make_sampler(spec: SweepSpec) -> BaseSampler:
    """The Optuna sampler the spec names, seeded from `sampler.seed`."""
    with warnings.catch_warnings():  # group=True and GPSampler options are flagged experimental: expected here
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLER_FACTORIES[spec.sampler.name](spec)
