"""The Optuna space: conditional parameters, stable names, samplers, the conditional grid."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState
import pytest

from samprivacy.spec import SAMPLER_NAMES, load_spec, parse_spec
from samprivacy.sweep import space

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[2]
SPEC = {
    "name": "space",
    "seeds": [0, 1],
    "optimizers": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.2, "log": True}},
                   "sharpreg": {"rho": 0.01, "lam": {"low": 0.5, "high": 2.0}, "xi": {"low": 0.0, "high": 0.5}}},
    "train": {"epochs": 2, "batch_size": {"choices": [32, 64]}, "lr": {"low": 0.01, "high": 0.1, "log": True}},
    "trials": 30,
}
OWN = {"sgd": set(), "sam": {"sam.rho"}, "sharpreg": {"sharpreg.lam", "sharpreg.xi"}}  # sharpreg.rho is fixed


def spec_with(**changes):
    return parse_spec({**SPEC, **changes})


def run(spec, n, sampler=None, study=None):
    """Ask/tell `n` trials (as Ray Tune's OptunaSearch does); returns the study and the configs."""
    study = study or optuna.create_study(directions=space.directions(spec), sampler=sampler or space.make_sampler(spec))
    configs = []
    for _ in range(n):
        trial = study.ask()
        config = space.suggest_trial_config(trial, spec)
        configs.append(config)
        study.tell(trial, [config.lr * 10, 0.5 + 0.1 * (config.rho or 0)])
    return study, configs


def test_each_trial_gets_only_its_optimizers_parameters():
    spec = spec_with()
    study, configs = run(spec, 40, optuna.samplers.RandomSampler(seed=1))
    assert {c.optimizer for c in configs} == {"sgd", "sam", "sharpreg"}
    for trial, config in zip(study.trials, configs):
        assert set(trial.params) == {"seed", "optimizer", "batch_size", "lr"} | OWN[config.optimizer]
        if config.optimizer == "sgd":
            assert config.rho is None and config.lam is None and config.xi is None
        elif config.optimizer == "sam":
            assert 0.01 <= config.rho <= 0.2 and config.lam is None and config.xi is None
        else:
            assert config.rho == 0.01 and 0.5 <= config.lam <= 2.0 and 0.0 <= config.xi <= 0.5
        assert config.epochs == 2 and config.batch_size in (32, 64) and config.dataset == "digits"


def test_fixed_values_are_no_dimensions():
    spec = spec_with(seeds=[3], optimizers={"sam": {"rho": 0.1}}, train={"epochs": 2, "lr": {"choices": [0.05]}})
    study, configs = run(spec, 2, optuna.samplers.RandomSampler(seed=0))
    assert space.param_names(spec) == [] and all(t.params == {} for t in study.trials)
    assert configs[0].seed == 3 and configs[0].rho == 0.1 and configs[0].lr == 0.05 and configs[0].optimizer == "sam"


def test_param_names_are_stable_and_rebuild_the_config():
    spec = spec_with()
    assert space.param_names(spec) == ["seed", "optimizer", "batch_size", "lr", "sam.rho", "sharpreg.lam",
                                       "sharpreg.xi"]
    study, configs = run(spec, 12)
    for trial, config in zip(study.trials, configs):  # resume: a stored trial's params give back its config
        assert space.config_from_params(spec, trial.params) == config


def test_directions_follow_the_objectives():
    spec = spec_with(objectives={"test_acc": "max", "attack_acc": "min", "attack_auc": "minimize"})
    assert space.directions(spec) == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE, StudyDirection.MINIMIZE]


def test_integer_ranges_are_suggested_as_ints():
    spec = spec_with(train={"epochs": {"low": 2, "high": 6, "step": 2}, "batch_size": {"low": 16, "high": 128,
                                                                                       "log": True}})
    _, configs = run(spec, 10, optuna.samplers.RandomSampler(seed=0))
    assert all(c.epochs in (2, 4, 6) and isinstance(c.batch_size, int) and 16 <= c.batch_size <= 128
               for c in configs)


def test_sampler_registry_covers_every_name():
    assert set(space.SAMPLER_FACTORIES) == set(SAMPLER_NAMES)
    expected = {"tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler,
                "random": optuna.samplers.RandomSampler, "grid": space.ConditionalGridSampler}
    grid_spec = {"optimizers": {"sgd": {}, "sam": {"rho": 0.05}}, "train": {"epochs": 2}, "trials": None}
    for name, cls in expected.items():
        spec = spec_with(sampler={"name": name}, **(grid_spec if name == "grid" else {}))
        with warnings.catch_warnings():
            warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)  # make_sampler silences them
            assert isinstance(space.make_sampler(spec), cls)


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random"])
def test_samplers_run_the_conditional_space_and_are_seeded(name):
    spec = spec_with(sampler={"name": name, "seed": 7})
    params = [[t.params for t in run(spec, 12)[0].trials] for _ in range(2)]
    assert params[0] == params[1]


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("torch", "scipy")), reason="gp needs torch, scipy")
def test_gp_sampler_runs_the_conditional_space():
    spec = spec_with(sampler={"name": "gp", "seed": 0, "n_startup_trials": 4})
    study, configs = run(spec, 6)
    assert len(study.trials) == 6 and all(c.lam is None for c in configs if c.optimizer != "sharpreg")


def table1_with_seeds_searched():
    """The Table 1 example with its 5 seeds as a grid dimension (15 combinations) instead of repeats."""
    data = load_spec(ROOT / "sweeps" / "paper_table1_purchase.yaml").model_dump()
    return parse_spec({**data, "repeats": 1, "seeds": [0, 1, 2, 3, 4]})


def test_grid_enumerates_each_combination_once():
    spec = table1_with_seeds_searched()
    combos = space.grid_combos(spec)
    assert len(combos) == spec.grid_size() == spec.n_trials == 15
    study, configs = run(spec, spec.n_trials)  # the last tell must not raise (GridSampler's study.stop)
    seen = {(c.optimizer, c.seed, c.rho, c.lam, c.xi) for c in configs}
    assert len(seen) == 15
    assert {(c.optimizer, c.rho, c.lam, c.xi) for c in configs} == {
        ("sgd", None, None, None), ("sam", 0.1, None, None), ("sharpreg", 0.01, 1.5, 0.3)}
    assert space.make_sampler(spec).is_exhausted(study)


def test_conditional_grid_has_no_duplicates_from_other_optimizers():
    spec = spec_with(sampler={"name": "grid"}, trials=None, train={"epochs": {"low": 1, "high": 2}},
                     optimizers={"sgd": {}, "sam": {"rho": {"choices": [0.05, 0.1, 0.2]}},
                                 "sharpreg": {"rho": 0.01, "lam": {"low": 1.0, "high": 2.0, "step": 0.5}, "xi": 0.3}})
    # 2 seeds x 2 epochs x (sgd 1 + sam 3 + sharpreg 3); a full product would be 2 x 2 x 3 x 3 x 3 = 108
    assert spec.grid_size() == len(space.grid_combos(spec)) == 28
    study, configs = run(spec, 28)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 28
    assert {c.lam for c in configs if c.optimizer == "sharpreg"} == {1.0, 1.5, 2.0}


def test_a_failed_grid_combination_is_not_proposed_again():
    """A diverging combination fails once: the grid's N trials still measure each of its N combinations once."""
    spec = spec_with(sampler={"name": "grid"}, trials=None, optimizers={"sgd": {}, "sam": {"rho": 0.05}},
                     train={"epochs": 2, "lr": {"choices": [0.05, 1.0e30]}})
    study = optuna.create_study(directions=space.directions(spec), sampler=space.make_sampler(spec))
    for _ in range(spec.grid_size()):
        trial = study.ask()
        config = space.suggest_trial_config(trial, spec)
        if config.lr > 1:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, [0.9, 0.5])
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == spec.grid_size() == 8
    assert sum(t.state == TrialState.FAIL for t in study.trials) == 4


def test_grid_resumes_where_it_stopped(tmp_path):
    spec = table1_with_seeds_searched()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name=spec.name, storage=url, directions=space.directions(spec),
                                sampler=space.make_sampler(spec))
    run(spec, 6, study=study)
    resumed = optuna.load_study(study_name=spec.name, storage=url, sampler=space.make_sampler(spec))
    run(spec, 9, study=resumed)
    assert len({tuple(sorted(t.params.items())) for t in resumed.trials}) == 15


def test_config_id_ignores_the_seed_and_nothing_else():
    spec = spec_with()
    params = {"seed": 0, "optimizer": "sam", "sam.rho": 0.05, "batch_size": 32, "lr": 0.05}
    same = space.config_id(space.config_from_params(spec, params))
    assert space.config_id(space.config_from_params(spec, {**params, "seed": 1})) == same
    assert space.config_id(space.config_from_params(spec, {**params, "sam.rho": 0.06})) != same
    assert space.config_id(space.config_from_params(spec_with(train={"epochs": 3, "lr": 0.05}), params)) != same
    assert space.unit_seeds(spec, params) == (0,)
    replicated = spec_with(seeds=[4, 5, 6], repeats=3)
    assert space.unit_seeds(replicated, {"optimizer": "sgd"}) == (4, 5, 6)
    study, _ = run(replicated, 5, optuna.samplers.RandomSampler(seed=0))
    assert all("seed" not in t.params for t in study.trials)  # the seeds are replicates, no search dimension
