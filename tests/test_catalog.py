"""catalog.py: the one table of optimizers, their parameters and presets, attacks and metrics."""

import pytest

from samprivacy import catalog
from samprivacy.spec import TrialConfig


def test_optimizer_params_are_every_parameter_some_optimizer_takes_each_a_trial_field():
    assert set(catalog.OPTIMIZER_PARAMS) == {p for e in catalog.OPTIMIZERS.values() for p in e.params}
    assert len(catalog.OPTIMIZER_PARAMS) == len(set(catalog.OPTIMIZER_PARAMS)) >= 5
    assert set(catalog.OPTIMIZER_PARAMS) <= set(TrialConfig.model_fields)


@pytest.mark.parametrize("optimizer, param, message", [
    ("sgd", "rho", "`rho` applies only to sam, asam and sharpreg, not 'sgd'; remove it, or use it with sam or asam "
                   "or sharpreg"),
    ("sam", "lam", "`lam` applies only to sharpreg, not 'sam'"),
    ("sharpreg", "swa_lr", "`swa_lr` applies only to swa, not 'sharpreg'"),
])
def test_a_parameter_an_optimizer_does_not_take_is_named_with_its_takers(optimizer, param, message):
    assert message in catalog.misplaced_param(optimizer, param)


def test_an_optimizer_s_own_parameters_pass_the_check():
    checked = [(name, p) for name, entry in catalog.OPTIMIZERS.items() for p in entry.params]
    assert len(checked) >= 6
    assert all(catalog.misplaced_param(name, p) is None for name, p in checked)


def test_every_default_a_trial_leaves_to_the_preset_is_in_the_preset():
    # TrialConfig's None for rho / lam / xi / swa_start / swa_lr means the preset's value (learn.optim, learn.train)
    for param in ("rho", "lam", "xi"):
        assert all(param in catalog.OPTIMIZERS[o].preset for o in catalog.takers(param)), param
    swa = catalog.OPTIMIZERS["swa"].preset
    assert swa["averaged"] and 0 < swa["swa_start"] < 1 and 0 < swa["swa_lr_scale"] <= 1
    assert (catalog.OPTIMIZERS["sharpreg"].preset["lam"], catalog.OPTIMIZERS["sharpreg"].preset["xi"]) == (1.5, 0.3)


def test_objective_metrics_cover_trial_population_and_strong_attack_metrics():
    metrics = catalog.objective_metrics()
    assert len(metrics) == len(set(metrics))
    assert {"test_acc", "attack_acc", "test_acc_std", "lira_auc", "rmia_tpr_at_fpr_0.001"} <= set(metrics)
    assert catalog.metric_needs("lira_auc") == ("attack", "lira")
    assert catalog.metric_needs("test_acc_std") == ("population",)
    assert catalog.metric_needs("label_only_acc") == ("kind", "label_only")
    assert catalog.metric_needs("test_acc") == ()


def test_default_and_population_attacks_split_the_attacks():
    assert set(catalog.DEFAULT_ATTACKS) | set(catalog.POPULATION_ATTACKS) == set(catalog.ATTACKS)
    assert not set(catalog.DEFAULT_ATTACKS) & set(catalog.POPULATION_ATTACKS)
    assert all(catalog.ATTACKS[a].needs_population for a in catalog.POPULATION_ATTACKS)
