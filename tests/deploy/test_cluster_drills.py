"""Failure drills on the local two-node cluster. Each breaks one part mid-sweep and then checks the record:
MLflow trial runs = Optuna COMPLETE trials = Tune finished trials = the budget, one per trial id, every run
FINISHED with every epoch of its curve.

- the worker node is lost (all its Ray processes SIGKILLed) and comes back: its trials are retried from their
  last checkpoint on the shared folder;
- the MLflow server restarts: the trials' MLflow client waits it out (retries with backoff), no metric is lost;
- PostgreSQL restarts (MLflow's store and the Optuna study): the driver's Optuna storage waits it out;
- the driver is SIGKILLed: `samprivacy resume`, run as a job, finishes the budget.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.deploy.conftest import (Cluster, assert_budget_exactly_once, job_client, metric_steps,
                                   mlflow_trial_runs, optuna_trials, submit, tune_progress, tune_trials, wait_job,
                                   wait_until)

pytestmark = pytest.mark.slow

BUDGET, EPOCHS = 4, 6


def start(cluster: Cluster, name: str, folder) -> str:
    result = submit(cluster, cluster.spec(name, trials=BUDGET, train={"epochs": EPOCHS, "batch_size": 128,
                                                                      "lr": 0.05}), folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[0]


def finish(cluster: Cluster, name: str, job_id: str) -> dict:
    status = wait_job(cluster, job_id)
    assert status == "SUCCEEDED", job_client(cluster).get_job_logs(job_id)[-4000:]
    runs = assert_budget_exactly_once(cluster, name, BUDGET)
    for trial_id, run in runs.items():  # no epoch lost; an epoch repeated after a retry has the same value
        steps = metric_steps(cluster, run["info"]["run_id"], "val_acc")
        assert sorted({step for step, _ in steps}) == list(range(1, EPOCHS + 1)), (trial_id, steps)
        assert len(set(steps)) == EPOCHS, (trial_id, steps)
    return runs


def epochs_reported(cluster: Cluster, name: str, node_ip: str | None = None) -> int:
    """The most epochs any running trial (on `node_ip`, if given) has checkpointed so far (a finished trial's
    last report holds only its objectives)."""
    return max((row.get("epoch", 0) for row in tune_progress(cluster, name)
                if node_ip is None or row.get("node_ip") == node_ip), default=0)


def test_a_lost_worker_node_s_trials_resume_from_their_checkpoints(local_cluster, tmp_path):
    name = "drill-node"
    job_id = start(local_cluster, name, tmp_path)
    wait_until(lambda: epochs_reported(local_cluster, name, local_cluster.worker_ip) >= 2,
               "a trial on the worker node to checkpoint twice")
    local_cluster.service("kill", "ray-worker")
    local_cluster.service("start", "ray-worker")
    runs = finish(local_cluster, name, job_id)
    retried = [t for t in tune_trials(local_cluster, name) if t.num_failures]
    assert retried, "no trial was retried: the kill hit no running trial"
    for trial in retried:  # from its checkpoint: a restart from epoch 1 would log every epoch twice
        steps = metric_steps(local_cluster, runs[trial.trial_id]["info"]["run_id"], "val_acc")
        assert len(steps) < 2 * EPOCHS, steps


def test_an_mlflow_server_restart_loses_no_metric(local_cluster, tmp_path):
    name = "drill-mlflow"
    job_id = start(local_cluster, name, tmp_path)
    wait_until(lambda: epochs_reported(local_cluster, name) >= 2, "a trial to log two epochs")
    local_cluster.service("restart", "mlflow")
    finish(local_cluster, name, job_id)
    # waited out, not failed and retried by Tune (a retry would also re-log the epochs)
    assert [t.num_failures for t in tune_trials(local_cluster, name)] == [0] * BUDGET


def test_a_postgresql_restart_is_ridden_out(local_cluster, tmp_path):
    name = "drill-postgres"
    job_id = start(local_cluster, name, tmp_path)
    wait_until(lambda: epochs_reported(local_cluster, name) >= 2, "a trial to log two epochs")
    local_cluster.service("stop", "postgres")
    time.sleep(3)  # a real outage: the trials' MLflow calls and the driver's Optuna calls find no database
    local_cluster.service("start", "postgres")
    finish(local_cluster, name, job_id)
    assert [t.num_failures for t in tune_trials(local_cluster, name)] == [0] * BUDGET


def test_an_optuna_call_during_a_postgresql_outage_returns_once_it_is_back(local_cluster):
    from samprivacy.sweep.study import optuna_storage

    storage = optuna_storage(local_cluster.optuna_url_with_password)
    storage.get_all_studies()  # connected once: from now on a lost database is an outage, not a bad URL
    local_cluster.service("stop", "postgres")
    restarted = threading.Timer(3.0, local_cluster.service, ("start", "postgres"))
    began = time.monotonic()
    restarted.start()
    try:
        studies = storage.get_all_studies()
    finally:
        restarted.join()
    assert time.monotonic() - began >= 3.0 and {s.study_name for s in studies} >= {"drill-postgres"}


def test_a_killed_driver_is_resumed_and_the_budget_finishes_once(local_cluster, tmp_path):
    name = "drill-driver"
    job_id = start(local_cluster, name, tmp_path)
    client = job_client(local_cluster)
    wait_until(lambda: epochs_reported(local_cluster, name) >= 2, "a trial to log two epochs")
    os.kill(int(client.get_job_info(job_id).driver_info.pid), signal.SIGKILL)  # the driver runs on the head
    assert wait_job(local_cluster, job_id) == "FAILED"
    assert len([t for t in optuna_trials(local_cluster, name) if t.state.name == "COMPLETE"]) < BUDGET

    workdir = local_cluster.shared / "runs" / name
    resumed = client.submit_job(entrypoint=f"python -m samprivacy.cli resume {name} --workdir {workdir}")
    finish(local_cluster, name, resumed)
    assert len(mlflow_trial_runs(local_cluster, name)) == BUDGET
