"""Defenses in a sweep spec and in a trial: conditional parameters, the method dimension, and bad input refused
with its field and the fix."""

import pytest
import yaml

from samprivacy.errors import ConfigError
from samprivacy.spec import SpecError, load_spec, parse_spec, parse_trial_config
from samprivacy.sweep import space

BASE = {"name": "d", "datasets": ["digits"], "optimizers": {"sgd": {}, "sam": {"rho": 0.05}},
        "objectives": {"test_acc": "max", "attack_acc": "min"}, "sampler": {"name": "grid"}}


def spec_with(defenses: dict, **top):
    return parse_spec({**BASE, "defenses": defenses, **top}, "bad.yaml")


def problem(defenses: dict, path: str, **top) -> str:
    with pytest.raises(SpecError) as info:
        spec_with(defenses, **top)
    found = dict(info.value.problems)
    assert path in found, info.value.problems
    return found[path]


def test_a_defense_is_a_method_with_its_own_conditional_parameters():
    spec = spec_with({"dp": {"noise_multiplier": {"choices": [0.5, 1.0]}, "max_grad_norm": 1.0},
                      "selena": {"optimizer": "sharpreg", "lam": 1.5, "xi": 0.3, "selena_k": 5, "selena_l": 2},
                      "last_epoch": {}})
    assert spec.methods == ("sgd", "sam", "dp", "selena", "last_epoch")
    combos = space.grid_combos(spec)
    assert {"method": "dp", "dp.noise_multiplier": 0.5} in combos and {"method": "sgd"} in combos
    assert not any("dp.noise_multiplier" in c for c in combos if c["method"] != "dp")  # conditional
    assert spec.n_trials == len(combos) == 6
    configs = {c["method"] + str(c.get("dp.noise_multiplier", "")): space.config_from_params(spec, c)
               for c in combos}
    assert configs["dp0.5"].defense == "dp" and configs["dp0.5"].noise_multiplier == 0.5
    assert configs["dp0.5"].method == "dp-sgd"
    selena = configs["selena"]
    assert (selena.optimizer, selena.lam, selena.selena_k, selena.method) == ("sharpreg", 1.5, 5, "selena+sharpreg")
    assert configs["last_epoch"].selection == "last" and configs["last_epoch"].method == "last_epoch"
    assert configs["sgd"].defense is None and configs["sam"].method == "sam"


def test_a_sweep_of_optimizers_only_keeps_its_parameter_names():
    spec = parse_spec(BASE)
    assert space.param_names(spec)[0] == "optimizer" and space.method_key(spec) == "optimizer"


def test_the_shipped_defense_sweeps_are_valid():
    for name in ("defenses-longtail", "defenses-cifar100"):
        spec = load_spec(f"sweeps/{name}.yaml")
        methods = {space.config_from_params(spec, c).method for c in space.grid_combos(spec)} \
            if spec.sampler.name == "grid" else set(spec.methods)
        assert {"sgd", "sharpreg"} <= {m.split("+")[0] for m in methods} | set(spec.methods)


@pytest.mark.parametrize("defenses,path,fix", [
    ({"selena": {"selena_k": 3, "selena_l": 3}}, "defenses.selena.selena_l", "must be < selena_k"),
    ({"selena": {"selena_k": 4, "selena_l": {"choices": [1, 5]}}}, "defenses.selena.selena_l", "must be < selena_k"),
    ({"advreg": {"adv_alpha": -1.0}}, "defenses.advreg.adv_alpha", "must be >= 0.0"),
    ({"memguard": {"memguard_budget": -0.1}}, "defenses.memguard.memguard_budget", "must be >= 0.0"),
    ({"dp": {"optimizer": "sam", "rho": 0.05}}, "defenses.dp.optimizer", "runs with sgd only"),
    ({"dp": {"noise_multiplier": 1.0, "target_epsilon": 3.0}}, "defenses.dp.target_epsilon", "not both"),
    ({"advreg": {"selena_k": 5}}, "defenses.advreg.selena_k", "move it under defense selena"),
    ({"memgard": {}}, "defenses.memgard", "did you mean 'memguard'"),
    ({"label_smoothing": {}}, "defenses.label_smoothing.label_smoothing", "required"),
    ({"selena": {"optimizer": "sharpreg", "xi": 0.3}}, "defenses.selena.lam", "required for sharpreg"),
])
def test_bad_defenses_are_refused_with_the_field_and_the_fix(defenses, path, fix):
    assert fix in problem(defenses, path)


def test_epsilon_as_an_objective_needs_every_method_to_be_dp():
    message = problem({"dp": {}}, "objectives.epsilon", objectives={"test_acc": "max", "epsilon": "min"})
    assert "reported only by DP trials" in message and "sgd, sam" in message
    spec = parse_spec({**BASE, "optimizers": {}, "defenses": {"dp": {"noise_multiplier": {"choices": [0.5, 1]}}},
                       "objectives": {"test_acc": "max", "epsilon": "min"}})
    assert spec.methods == ("dp",)


@pytest.mark.parametrize("fields,fix", [
    ({"defense": "dp", "optimizer": "sharpreg", "lam": 1.5, "xi": 0.3}, "runs with sgd only"),
    ({"defense": "selena", "selena_k": 4, "selena_l": 4}, "selena_l: must be < selena_k"),
    ({"defense": "advreg", "adv_alpha": -0.5}, "adv_alpha: must be >= 0.0, got -0.5"),
    ({"defense": "memguard", "memguard_budget": -1}, "memguard_budget: must be >= 0.0, got -1"),
    ({"memguard_budget": 0.5}, "applies only to defense 'memguard'"),
    ({"defense": "memgard"}, "did you mean 'memguard'"),
    ({"label_smoothing": 1.0}, "label_smoothing: must be < 1.0, got 1.0"),
])
def test_a_bad_trial_configuration_names_the_field(fields, fix):
    with pytest.raises(ConfigError) as info:
        parse_trial_config({"dataset": "digits", **fields})
    assert fix in str(info.value)


def test_spec_yaml_round_trips_with_defenses(tmp_path):
    spec = spec_with({"advreg": {"adv_alpha": {"low": 0.5, "high": 3.0}}}, sampler={"name": "tpe"}, trials=4)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    assert load_spec(path) == spec
