"""SweepSearch without Ray: proposals into units, duplicates reused or waited for, replicates averaged, the
budget and its cap, and a driver restart rebuilt from the study (SQLite Optuna and MLflow in a temp folder)."""

from __future__ import annotations

import pickle

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from ray.tune.search import Searcher

from samprivacy.spec import parse_spec
from samprivacy.sweep.search import SweepSearch
from samprivacy.sweep.study import complete_late
from samprivacy.sweep.tracking import Tracker
from samprivacy.sweep.trial import SweepContext

BASE = {"optimizers": {"sgd": {}}, "train": {"epochs": 2, "lr": 0.05}, "attacks": ["loss"],
        "sampler": {"name": "random", "seed": 0}, "max_concurrent": 2}


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def searcher(tmp_path, name, mlflow_uri=None, enqueue=(), **changes) -> SweepSearch:
    spec = parse_spec({"name": name, **BASE, **changes})
    parent = None
    if mlflow_uri:
        parent = Tracker(mlflow_uri, name, artifact_location=(tmp_path / "art").as_uri()).parent_run()
    search = SweepSearch(SweepContext(spec, mlflow_uri, parent, None), f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(study_name=name, storage=search.optuna_url, directions=["maximize", "minimize"])
    for params in enqueue:  # Optuna's own way to fix the next proposals
        study.enqueue_trial(params)
    search.connect()
    return search


def report(search, trial_id, **values):
    """A trial ends, and Tune's snapshots that record it reach storage (see SweepSearch's docstring)."""
    search.on_trial_complete(trial_id, {"test_acc": 0.8, "attack_acc": 0.6, **values})
    search.flush()


def states(search):
    """(state, duplicate_of) of each proposal (enqueued ones not yet asked for are left out)."""
    return [(t.state.name, t.user_attrs.get("duplicate_of")) for t in search.proposer.study.get_trials(deepcopy=False)
            if t.state != TrialState.WAITING]


def test_a_measured_configuration_is_reused_and_the_study_says_so(tmp_path, mlflow_uri):
    search = searcher(tmp_path, "reuse", mlflow_uri, enqueue=[{"seed": 0}, {"seed": 0}, {"seed": 1}],
                      seeds=[0, 1], trials=2)
    first = search.suggest("t1")
    assert first["seed"] == 0 and first["optuna_trial"] == 0 and first["mlflow_run_id"]
    report(search, "t1", test_acc=0.9)
    second = search.suggest("t2")  # proposal 1 repeats proposal 0: answered at once; proposal 2 trains
    assert second["seed"] == 1 and second["optuna_trial"] == 2
    assert states(search) == [("COMPLETE", None), ("COMPLETE", 0), ("RUNNING", None)]
    assert search.proposer.study.trials[1].values == [0.9, 0.6]
    report(search, "t2")
    assert search.suggest("t3") == Searcher.FINISHED  # 2 measured = the budget
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("reuse").experiment_id
    runs = {r.data.tags["samprivacy.kind"]: r for r in client.search_runs([experiment])}
    duplicate, trial = runs["duplicate"], client.get_run(first["mlflow_run_id"])
    assert duplicate.data.tags["samprivacy.duplicate_of"] == first["mlflow_run_id"]
    assert duplicate.data.metrics == {"test_acc": 0.9, "attack_acc": 0.6}
    assert duplicate.info.status == "FINISHED" and client.list_artifacts(duplicate.info.run_id) == []
    assert duplicate.data.tags["samprivacy.config_id"] == trial.data.tags["samprivacy.config_id"] == first["config_id"]
    assert trial.data.tags["samprivacy.trial_id"] == "t1" and trial.data.tags["pareto"] == "false"
    assert trial.data.tags["samprivacy.seed"] == "0" and trial.data.params == {}  # its worker logs the params


def test_a_configuration_training_now_is_waited_for(tmp_path):
    search = searcher(tmp_path, "wait", enqueue=[{"seed": 0}, {"seed": 0}, {"seed": 1}], seeds=[0, 1], trials=2)
    assert search.suggest("t1")["seed"] == 0
    assert search.suggest("t2")["optuna_trial"] == 2  # proposal 1 waits for t1 instead of training again
    assert states(search) == [("RUNNING", None), ("RUNNING", 0), ("RUNNING", None)]
    report(search, "t1", test_acc=0.7)
    assert states(search)[:2] == [("COMPLETE", None), ("COMPLETE", 0)]
    assert search.proposer.study.trials[1].values == search.proposer.study.trials[0].values == [0.7, 0.6]
    assert search.progress()["duplicates"] == 1 and search.progress()["waiting"] == 0


def test_a_space_smaller_than_the_budget_ends_with_its_reason(tmp_path):
    search = searcher(tmp_path, "small", seeds=[0, 1], trials=6)
    assert {search.suggest("t1")["seed"], search.suggest("t2")["seed"]} == {0, 1}
    assert search.suggest("t3") == Searcher.FINISHED
    assert "holds 2 distinct configurations" in search.progress()["stop_reason"]


def test_a_sampler_stuck_on_one_point_stops_at_the_cap(tmp_path):
    search = searcher(tmp_path, "stuck", enqueue=[{"lr": 0.1}] * 25, trials=2,
                      train={"epochs": 2, "lr": {"low": 0.01, "high": 0.2}})
    search.suggest("t1")
    report(search, "t1")
    assert search.suggest("t2") == Searcher.FINISHED
    progress = search.progress()
    assert (progress["proposals"], progress["duplicates"], progress["complete"]) == (20, 19, 1)
    assert "made 20 proposals (10 x trials)" in progress["stop_reason"]


def test_replicates_train_one_unit_per_seed_and_optuna_gets_the_mean(tmp_path, mlflow_uri):
    search = searcher(tmp_path, "replicates", mlflow_uri, repeats=3, trials=2,
                      enqueue=[{"lr": 0.1}, {"lr": 0.1}, {"lr": 0.2}],
                      train={"epochs": 2, "lr": {"choices": [0.1, 0.2]}})
    units = [search.suggest(f"t{i}") for i in range(3)]
    assert [u["seed"] for u in units] == [0, 1, 2] and {u["optuna_trial"] for u in units} == {0}
    assert len({u["config_id"] for u in units}) == 1 and "seed" not in search.proposer.study.trials[0].params
    for i, acc in enumerate([0.7, 0.8, 0.9]):
        report(search, f"t{i}", test_acc=acc)
    trial = search.proposer.study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.values == pytest.approx([0.8, 0.6])
    assert {s: u["values"][0] for s, u in trial.user_attrs["units"].items()} == {"0": 0.7, "1": 0.8, "2": 0.9}
    nxt = search.suggest("t3")  # proposal 1 repeats proposal 0 on the same seeds: reused
    assert nxt["optuna_trial"] == 2 and states(search)[1] == ("COMPLETE", 0)
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("replicates").experiment_id
    config = client.search_runs([experiment], "tags.`samprivacy.kind` = 'config'")
    assert len(config) == 1 and config[0].data.metrics["test_acc"] == pytest.approx(0.8)
    assert config[0].data.metrics["test_acc_std"] == pytest.approx(0.1) and config[0].data.metrics["repeats"] == 3
    assert config[0].data.tags["samprivacy.config_id"] == units[0]["config_id"]
    duplicate = client.search_runs([experiment], "tags.`samprivacy.kind` = 'duplicate'")
    assert duplicate[0].data.tags["samprivacy.duplicate_of"] == config[0].info.run_id
    trials = client.search_runs([experiment], "tags.`samprivacy.kind` = 'trial'")
    assert len(trials) == 4  # three seeds of proposal 0, the first of proposal 2


def test_a_failed_configuration_is_trained_again_when_proposed_again(tmp_path):
    search = searcher(tmp_path, "failed", enqueue=[{"seed": 0}, {"seed": 0}], seeds=[0, 1], trials=2)
    search.suggest("t1")
    search.on_trial_complete("t1", {"failed": "training diverged at epoch 1"})
    search.flush()
    assert search.suggest("t2")["optuna_trial"] == 1  # not a duplicate of a failure
    assert search.proposer.study.trials[0].user_attrs["fail_reason"] == "training diverged at epoch 1"


def test_a_restarted_driver_keeps_every_decision(tmp_path):
    """Driver 1 dies with: proposal 0 done, proposal 1 (seed 1) training in a trial Tune restores, proposal 2
    waiting for it, proposal 3 (seed 2) queued but never in Tune's snapshot. Driver 2 rebuilds from the study."""
    first = searcher(tmp_path, "restart", enqueue=[{"seed": 0}, {"seed": 1}, {"seed": 1}, {"seed": 2}],
                     seeds=[0, 1, 2], trials=3)
    first.suggest("t1")
    report(first, "t1")
    assert first.suggest("t2")["seed"] == 1
    first.save(tmp_path / "searcher.pkl")  # Tune's snapshot: t2 is live
    assert first.suggest("t3")["optuna_trial"] == 3  # proposal 2 waits on t2; proposal 3 -> t3, then the crash
    second = pickle.loads(pickle.dumps(SweepSearch(first.ctx, first.optuna_url)))
    second.restore(tmp_path / "searcher.pkl")
    taken_up = second.suggest("t4")
    assert (taken_up["seed"], taken_up["optuna_trial"]) == (2, 3)  # trained again, under a new Tune trial
    assert second.suggest("t5") == Searcher.FINISHED  # 3 measured: proposal 2 trained nothing
    report(second, "t2", test_acc=0.75)  # the restored trial ends: proposals 1 and 2 are told
    report(second, "t4")
    assert states(second) == [("COMPLETE", None), ("COMPLETE", None), ("COMPLETE", 1), ("COMPLETE", None)]
    assert second.proposer.study.trials[2].values == [0.75, 0.6]
    assert (second.proposer.book.measured, second.proposer.book.duplicates) == (3, 1)


def test_a_failure_that_a_resume_finishes_gets_a_completed_copy(tmp_path):
    search = searcher(tmp_path, "late", seeds=[0], trials=1)
    search.suggest("t1")
    search.on_trial_complete("t1", None, error=True)
    search.flush()
    study = search.proposer.study
    assert study.trials[0].state == TrialState.FAIL
    assert complete_late(study, search.ctx.spec, 0, {0: ("t1", [0.8, 0.6])})
    assert not complete_late(study, search.ctx.spec, 0, {0: ("t1", [0.8, 0.6])})  # once
    copy = study.trials[1]
    assert copy.state == TrialState.COMPLETE and copy.user_attrs == {"copy_of": 0, "tune_trial_id": "t1"}
    rebuilt = SweepSearch(search.ctx, search.optuna_url)
    rebuilt.connect()
    assert (rebuilt.proposer.book.complete, rebuilt.proposer.book.failed, rebuilt.proposer.book.measured) == (1, 0, 1)


def test_replicates_that_all_errored_and_then_finished_complete_their_proposal_together(tmp_path):
    search = searcher(tmp_path, "late2", repeats=2, trials=1)
    assert [search.suggest(t)["seed"] for t in ("t1", "t2")] == [0, 1]
    search.on_trial_complete("t1", None, error=True)
    search.on_trial_complete("t2", None, error=True)
    search.flush()
    study, spec = search.proposer.study, search.ctx.spec
    assert study.trials[0].state == TrialState.FAIL
    assert not complete_late(study, spec, 0, {0: ("t1", [0.8, 0.6])})  # seed 1 still has no values
    assert complete_late(study, spec, 0, {0: ("t1", [0.8, 0.6]), 1: ("t2", [0.6, 0.4])})
    copy = study.trials[-1]
    assert copy.state == TrialState.COMPLETE and copy.user_attrs["copy_of"] == 0
    assert copy.values == pytest.approx([0.7, 0.5])


def test_optuna_hears_of_a_trial_once_tune_has_stored_a_snapshot_recording_it(tmp_path):
    """So that what Optuna holds, Tune's experiment state holds too, even after a SIGKILL."""
    search = searcher(tmp_path, "deferred", enqueue=[{"seed": 0}, {"seed": 1}, {"seed": 2}], seeds=[0, 1, 2], trials=3)
    search.suggest("t1")
    search.on_trial_complete("t1", {"test_acc": 0.8, "attack_acc": 0.6})
    assert search.progress()["complete"] == 1 and states(search) == [("RUNNING", None)]  # the book knows
    search.save(tmp_path / "s1.pkl")  # the snapshot recording t1's end: written, maybe not yet uploaded
    search.suggest("t2")
    assert states(search)[0] == ("RUNNING", None)
    search.save(tmp_path / "s2.pkl")  # the next one: the first is on storage by now
    search.suggest("t3")
    assert states(search) == [("COMPLETE", None), ("RUNNING", None), ("RUNNING", None)]
    search.on_trial_complete("t2", {"test_acc": 0.7, "attack_acc": 0.6})
    search.save(tmp_path / "s3.pkl")  # records t2's end; t3 is live
    # the driver dies here; one restored from that snapshot tells t2's proposal at once and keeps t3 training
    restored = pickle.loads(pickle.dumps(SweepSearch(search.ctx, search.optuna_url)))
    restored.restore(tmp_path / "s3.pkl")
    restored.connect()
    assert states(restored) == [("COMPLETE", None), ("COMPLETE", None), ("RUNNING", None)]
    assert restored.proposer.study.trials[1].values == [0.7, 0.6]
    assert list(restored.proposer.live) == ["t3"] and list(restored.proposer.queue) == [] and restored.proposer.book.complete == 2


@pytest.mark.parametrize("chosen", [{}, {"seed": 1, "optimizer": "sam"}], ids=["after-ask", "mid-suggestions"])
def test_a_proposal_interrupted_before_its_parameters_were_chosen_is_failed_and_not_counted(tmp_path, chosen):
    first = searcher(tmp_path, "half", seeds=[0, 1], trials=2,
                     optimizers={"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.2}}})
    first.proposer.study.enqueue_trial({"seed": 1, "optimizer": "sam", "sam.rho": 0.1})
    asked = first.proposer.study.ask()  # the driver dies inside the proposal, before define-by-run set all its parameters
    for name, value in chosen.items():  # (sam.rho never chosen: its config would silently take a default)
        assert asked.suggest_categorical(name, {"seed": [0, 1], "optimizer": ["sgd", "sam"]}[name]) == value
    second = SweepSearch(first.ctx, first.optuna_url)
    second.connect()
    trial = second.proposer.study.trials[0]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"].startswith("interrupted before its parameters were chosen")
    assert (second.proposer.book.proposals, second.proposer.book.measured, second.proposer.book.failed) == (0, 0, 0)
    assert second.suggest("t1")["optuna_trial"] == 1
    third = SweepSearch(first.ctx, first.optuna_url)  # a resume rebuilds once per restored segment, then again
    third.connect()
    assert third.proposer.book.proposals == 1 and third.proposer.study.trials[0].state == TrialState.FAIL


def test_a_unit_taken_up_again_continues_its_earlier_run(tmp_path, mlflow_uri):
    """A trial Tune never recorded (the driver died first) trains again under a new Tune trial, in the same
    MLflow run, which now names the new trial: no orphan run, nothing counted twice."""
    first = searcher(tmp_path, "again", mlflow_uri, seeds=[0], trials=1)
    run_id = first.suggest("t1")["mlflow_run_id"]
    second = SweepSearch(first.ctx, first.optuna_url)  # no snapshot: Tune restores nothing
    again = second.suggest("t2")
    assert again["mlflow_run_id"] == run_id and again["optuna_trial"] == 0
    assert MlflowClient(mlflow_uri).get_run(run_id).data.tags["samprivacy.trial_id"] == "t2"
    assert second.suggest("t3") == Searcher.FINISHED and second.proposer.book.proposals == 1
