"""Trials grouped into configurations: mean and sample std over seeds, identity without the seed."""

from __future__ import annotations

import math

import pytest

from samprivacy.report.records import (SweepResults, TrialRecord, config_id, describe, group_configs,
                                       varying_params)


def trial(run, optimizer="sam", seed=0, rho="0.05", config=None, **metrics) -> TrialRecord:
    params = {"dataset": "digits", "optimizer": optimizer, "seed": str(seed), "optuna_trial": run, "lr": "0.1"}
    if rho is not None:
        params["rho"] = rho
    return TrialRecord(run_id=run, name=run, params=params, metrics=metrics, config_id=config)


def test_the_seed_and_the_optuna_trial_are_not_part_of_a_configuration():
    a, b = trial("a", seed=0), trial("b", seed=1)
    assert a.config_key == b.config_key == config_id({"dataset": "digits", "optimizer": "sam", "lr": "0.1",
                                                      "rho": "0.05"})
    assert trial("c", rho="0.1").config_key != a.config_key
    assert trial("d", config="svc-hash").config_key == "svc-hash"  # the service's tag wins


def test_mean_and_sample_std_over_seeds():
    configs = group_configs([trial("a", seed=0, test_acc=0.8, attack_acc=0.6),
                             trial("b", seed=1, test_acc=0.9, attack_acc=0.7),
                             trial("c", seed=0, rho="0.1", test_acc=0.5),
                             trial("d", seed=2, test_acc=1.0, attack_acc=math.nan)])
    first, second = configs
    assert first.n == 3 and first.seeds == ("0", "1", "2") and first.run_ids == ("a", "b", "d")
    assert first.value("test_acc") == pytest.approx(0.9)
    assert first.error("test_acc") == pytest.approx(0.1)  # sample std of 0.8, 0.9, 1.0
    assert first.value("attack_acc") == pytest.approx(0.65)  # a NaN seed does not count
    assert first.error("attack_acc") == pytest.approx(math.sqrt(0.005))
    assert second.n == 1 and second.value("test_acc") == 0.5 and math.isnan(second.error("test_acc"))
    assert math.isnan(second.value("attack_acc"))  # a metric the config never reported
    assert "seed" not in first.params and "optuna_trial" not in first.params


def test_varying_params_tell_rows_apart():
    configs = group_configs([trial("a"), trial("b", rho="0.1"), trial("c", optimizer="sgd", rho=None)])
    assert varying_params(configs) == ["rho"]
    # a param one configuration lacks varies even where the others agree (sgd has no rho; both sams 0.05)
    assert varying_params(group_configs([trial("a"), trial("b", seed=1), trial("c", optimizer="sgd", rho=None)])) \
        == ["rho"]
    assert varying_params(group_configs([trial("a"), trial("b", seed=1)])) == []
    assert describe(configs[1], ["rho", "lam"]) == "rho=0.1" and describe(configs[2], ["rho"]) == ""


def test_the_front_is_judged_on_means():
    # seed 1 of config X is the single best point, but X's mean is dominated by Y
    trials = [trial("x0", rho="1", test_acc=0.95, attack_acc=0.50), trial("x1", rho="1", seed=1, test_acc=0.70,
                                                                           attack_acc=0.70),
              trial("y0", rho="2", test_acc=0.85, attack_acc=0.55), trial("y1", rho="2", seed=1, test_acc=0.85,
                                                                          attack_acc=0.55)]
    results = SweepResults.build("s", {"test_acc": "max", "attack_acc": "min"}, trials)
    assert [c.params["rho"] for c in results.front()] == ["2"]
    assert results.points().shape == (2, 2) and results.errors()[1].tolist() == [0.0, 0.0]
    assert SweepResults.build("s", {"test_acc": "max", "attack_acc": "min"}, []).front() == []
