"""sweep/tracking.py: runs found again by tags (never duplicated), proposals' bookkeeping runs, trial metrics."""

from __future__ import annotations

import pytest

from samprivacy.sweep.tracking import Tracker, trial_metrics
from samprivacy.sweep.units import Outcome, Proposal, Unit
from samprivacy.tags import TAG_CONFIG, TAG_DUPLICATE_OF, TAG_KIND, TAG_PARETO, TAG_PROPOSAL, TAG_SEED, TAG_TRIAL


@pytest.fixture()
def tracker(tmp_path):
    return Tracker(f"sqlite:///{tmp_path}/mlflow.db", "tracked", artifact_location=(tmp_path / "art").as_uri())


def test_the_summary_and_trial_runs_are_found_again_not_duplicated(tracker):
    parent = tracker.parent_run('{"name": "tracked"}')
    assert tracker.parent_run() == parent
    run = tracker.child_run("t1", parent, {"lr": 0.1})
    assert tracker.child_run("t1", parent, {"lr": 0.1}) == run
    assert [r.info.run_id for r in tracker.child_runs()] == [run]
    assert tracker.client.get_run(run).data.params == {"lr": "0.1"}


def test_a_unit_trains_in_a_new_run_or_takes_an_earlier_attempt_s(tracker):
    parent = tracker.parent_run()
    unit = Unit(0, "cfg", 1)
    fresh = tracker.unit_trial_run("t1", parent, unit, "sgd-t1")
    tags = tracker.client.get_run(fresh).data.tags
    assert (tags[TAG_TRIAL], tags[TAG_CONFIG], tags[TAG_SEED], tags[TAG_PARETO]) == ("t1", "cfg", "1", "false")
    assert tracker.unit_trial_run("t2", parent, unit, "sgd-t2", earlier=fresh) == fresh
    assert tracker.client.get_run(fresh).data.tags[TAG_TRIAL] == "t2"
    assert tracker.unit_run("cfg", 1) == fresh  # a RUNNING attempt is taken up again


def test_a_duplicate_proposal_gets_one_run_pointing_at_the_measurement_it_reuses(tracker):
    parent = tracker.parent_run()
    measured = tracker.unit_trial_run("t1", parent, Unit(0, "cfg", 0), "sgd-t1")
    duplicate = Proposal(1, "cfg", (0,), duplicate_of=0, outcomes={0: Outcome((0.9, 0.6), None, "t1", measured)})
    for _ in range(2):  # a resume records it again: still one run
        tracker.record_proposal(parent, duplicate, {"optimizer": "sgd"}, ("test_acc", "attack_acc"), 1, {})
    runs = tracker.child_runs("duplicate")
    assert len(runs) == 1
    assert runs[0].data.tags[TAG_DUPLICATE_OF] == measured and runs[0].data.tags[TAG_PROPOSAL] == "1"
    assert runs[0].data.metrics == {"test_acc": 0.9, "attack_acc": 0.6}
    assert runs[0].info.status == "FINISHED"


def test_a_configuration_s_mean_over_seeds_is_a_config_run_and_a_single_seed_none(tracker):
    parent = tracker.parent_run()
    outcomes = {0: Outcome((0.8, 0.5), None, "t1"), 1: Outcome((0.6, 0.7), None, "t2")}
    tracker.record_proposal(parent, Proposal(0, "cfg", (0, 1), outcomes=outcomes), {"optimizer": "sgd"},
                            ("test_acc", "attack_acc"), 2, {})
    tracker.record_proposal(parent, Proposal(1, "one", (0,), outcomes={0: outcomes[0]}), {"optimizer": "sgd"},
                            ("test_acc", "attack_acc"), 1, {})
    (config,) = tracker.child_runs("config")
    assert config.data.metrics["test_acc"] == pytest.approx(0.7) and config.data.metrics["repeats"] == 2
    assert config.data.params["seeds"] == "0,1" and config.data.tags[TAG_KIND] == "config"


def test_trial_metrics_name_the_selected_model_and_every_attack():
    summary = {"test_acc": 0.9, "attack_acc": 0.6, "train_acc": 1.0, "val_acc": 0.85, "best_epoch": 4,
               "seconds": 12.5, "attacks": {"loss": {"auc": 0.7}}, "test_acc_std": 0.01}
    metrics = trial_metrics(summary)
    assert metrics["selected_train_acc"] == 1.0 and metrics["selected_val_acc"] == 0.85
    assert "train_acc" not in metrics and metrics["trial_seconds"] == 12.5
    assert metrics["attack_loss_auc"] == 0.7 and metrics["test_acc_std"] == 0.01


def test_a_new_sqlite_store_is_a_copy_of_mlflow_s_own_empty_database(tmp_path, monkeypatch):
    import sqlite3

    from mlflow.tracking import MlflowClient

    from samprivacy.sweep.tracking import prepare_store

    monkeypatch.setenv("SAMPRIVACY_CACHE", str(tmp_path / "cache"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    prepare_store(f"sqlite:///{tmp_path}/first.db")  # the empty database is made here, once
    monkeypatch.chdir(tmp_path)
    MlflowClient(f"sqlite:///{tmp_path}/by-mlflow.db").search_experiments()  # what MLflow itself makes here
    prepare_store(f"sqlite:///{tmp_path}/copied.db")
    assert list((tmp_path / "cache").glob("mlflow-*.db")) and (tmp_path / "copied.db").exists()

    def contents(path):
        with sqlite3.connect(path) as db:
            tables = sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
            rows = {t: db.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}
        rows["experiments"] = [row[:4] for row in rows["experiments"]]  # id, name, artifact location, stage
        return rows

    assert contents(tmp_path / "copied.db") == contents(tmp_path / "by-mlflow.db")
    tracker = Tracker(f"sqlite:///{tmp_path}/copied.db", "sweep")  # MLflow takes the copy as its own
    assert tracker.client.get_experiment(tracker.experiment_id).name == "sweep"
    tracker.parent_run()
    prepare_store(f"sqlite:///{tmp_path}/copied.db")  # a store that exists is never replaced
    assert len(tracker._find()) == 1


def test_without_a_writable_cache_mlflow_makes_the_store_itself(tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("SAMPRIVACY_CACHE", str(tmp_path / "not-a-folder"))
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "sweep")
    assert tracker.client.get_experiment(tracker.experiment_id).name == "sweep"


def test_where_the_copy_cannot_be_linked_into_place_mlflow_makes_the_store(tmp_path, monkeypatch):
    import os

    def no_hard_links(*args, **kwargs):
        raise PermissionError("this filesystem has no hard links")

    monkeypatch.setenv("SAMPRIVACY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(os, "link", no_hard_links)
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "sweep")
    assert tracker.client.get_experiment(tracker.experiment_id).name == "sweep"
    assert not list(tmp_path.glob(".mlflow.db.*.partial"))  # nothing half-written is left
