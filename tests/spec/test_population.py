"""The spec's `population`: parsed into every trial, validated against the attacks and objectives that need it."""

import pytest

from samprivacy.spec import SpecError, parse_spec

BASE = {"name": "pop", "datasets": ["digits"], "optimizers": {"sgd": {}, "sam": {"rho": 0.05}},
        "train": {"epochs": 2}, "trials": 2}


def problems_of(data) -> dict:
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return dict(err.value.problems)


def test_a_population_reaches_every_trial_and_enables_the_strong_attacks():
    spec = parse_spec({**BASE, "population": {"models": 8, "rmia": {"reference_models": 2, "a": 0.4}},
                       "objectives": {"test_acc": "max", "lira_tpr_at_fpr_0.001": "min", "rmia_auc": "min"}})
    fixed = spec.fixed_trial_fields()
    assert fixed["population"].models == 8 and fixed["population"].rmia.a == 0.4
    assert {"lira", "lira_offline", "rmia"} <= set(spec.attack_names())


@pytest.mark.parametrize("data, path, fix", [
    ({**BASE, "attacks": ["loss", "lira"]}, "attacks", "needs a population of models"),
    ({**BASE, "objectives": {"test_acc": "max", "lira_auc": "min"}}, "objectives.lira_auc", "population"),
    ({**BASE, "objectives": {"test_acc": "max", "test_acc_std": "min"}}, "objectives.test_acc_std", "population"),
    ({**BASE, "population": {"models": 5}, "attacks": ["lira"]}, "population.models", "use models >= 6"),
    ({**BASE, "population": {"models": 4, "shared_references": 2}, "attacks": ["rmia"]},
     "population.rmia.reference_models", "lower it or add references"),
    ({**BASE, "population": {"models": 8, "rmia": {"a": 1.5}}}, "population.rmia.a", "[0, 1]"),
    ({**BASE, "population": {"models": 8, "fraction": 1.0}}, "population.fraction", "must be < 1"),
    ({**BASE, "population": {"modles": 8}}, "population.modles", "did you mean 'models'"),
    ({**BASE, "population": {"models": 1}}, "population", "runs none of"),
    ({**BASE, "population": {"models": 8}, "attacks": ["loss"],
      "objectives": {"test_acc": "max", "rmia_auc": "min"}}, "objectives.rmia_auc", "rmia"),
])
def test_what_a_population_cannot_serve_is_refused_with_its_field(data, path, fix):
    found = problems_of(data)
    assert path in found, found
    assert fix in found[path], found[path]


def test_without_a_population_trials_are_as_before():
    spec = parse_spec(BASE)
    assert spec.population is None and "population" not in {k for k, v in spec.fixed_trial_fields().items() if v}
    assert "lira" not in spec.attack_names()
