"""sweep/trial.py without Ray: a trial's TrialConfig from its Optuna params, its work function, a settled run."""

from __future__ import annotations

from types import SimpleNamespace

from samprivacy.spec import parse_spec
from samprivacy.sweep.trial import RUN_TRIAL, SweepContext, _settled, _work, trial_config

SPEC = parse_spec({"name": "t", "optimizers": {"sgd": {}, "sam": {"rho": {"choices": [0.05, 0.1]}}},
                   "train": {"epochs": 2}, "attacks": ["loss"], "trials": 2, "resources": {"gpu": 0}})


def test_a_trial_config_is_the_spec_s_fixed_fields_plus_the_params_on_the_driver_s_data_root():
    ctx = SweepContext(SPEC, None, None, "/data")
    config = trial_config(ctx, {"optimizer": "sam", "sam.rho": 0.1, "seed": 0})
    assert (config.optimizer, config.rho, config.epochs, config.attacks) == ("sam", 0.1, 2, ("loss",))
    assert (config.data_root, config.device) == ("/data", "cpu")
    assert trial_config(ctx, {"optimizer": "sgd", "seed": 0}).rho is None


def test_the_work_function_is_imported_from_its_name():
    from samprivacy.pipeline import run_trial

    assert _work(SweepContext(SPEC, None, None, None)) is run_trial
    assert RUN_TRIAL == "samprivacy.pipeline:run_trial"


def test_only_a_finished_run_with_every_objective_is_settled():
    def run(status, metrics):
        return SimpleNamespace(info=SimpleNamespace(status=status), data=SimpleNamespace(metrics=metrics))

    objectives = ("test_acc", "attack_acc")
    assert _settled(run("FINISHED", {"test_acc": 0.9, "attack_acc": 0.6, "x": 1}), objectives) == {
        "test_acc": 0.9, "attack_acc": 0.6}
    assert _settled(run("FINISHED", {"test_acc": 0.9}), objectives) is None
    assert _settled(run("FAILED", {"test_acc": 0.9, "attack_acc": 0.6}), objectives) is None  # errors may not repeat
