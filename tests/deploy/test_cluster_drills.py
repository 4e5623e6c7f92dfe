"""Failure drills on the local two-node cluster. Each breaks one part mid-sweep and then checks the record:
MLflow trial runs = Optuna COMPLETE trials = Tune finished trials = the budget, one per trial id, every run
FINISHED with every epoch of its curve.

- the worker node is lost (all its Ray processes SIGKILLed) and stays down until the sweep ends: its trial is
  retried on the head node from its last checkpoint on the shared folder (the epochs before the checkpoint were
  logged exactly once; the resumed attempt's first epoch comes after them);
- the MLflow server is SIGKILLed and stays down longer than a trial's retry window: the trials fail, Tune retries
  them from their checkpoints until the server is back, no metric is lost;
- PostgreSQL is down for 35 s (MLflow's store and the Optuna study): the driver's Optuna storage waits it out;
- the object store is SIGKILLed and restarted: artifacts uploaded after it are all there;
- the driver is SIGKILLed: `samprivacy resume`, run as a job, finishes the budget;
- the head node is SIGKILLed (GCS, dashboard, the driver with it): the cluster is brought back and
  `samprivacy resume` finishes the budget exactly once.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import boto3

import pytest

from tests.deploy.conftest import (Cluster, assert_budget_exactly_once, job_client, metric_steps,
                                   mlflow_trial_runs, optuna_trials, submit, tune_progress, tune_trials, wait_job,
                                   wait_until)

pytestmark = pytest.mark.slow

BUDGET, EPOCHS = 4, 6


def start(cluster: Cluster, name: str, folder, *extra: str, **fields) -> str:
    result = submit(cluster, cluster.spec(name, trials=BUDGET, train={"epochs": EPOCHS, "batch_size": 128,
                                                                      "lr": 0.05}, **fields), folder, *extra)
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


def running_on(cluster: Cluster, name: str, node_ip: str) -> dict[str, int]:
    """trial id -> checkpointed epoch of each unfinished trial whose last report came from `node_ip`."""
    try:
        trials = tune_trials(cluster, name)
    except Exception:  # noqa: BLE001 - no snapshot yet, or one being replaced
        return {}
    return {t.trial_id: t.last_result["epoch"] for t in trials
            if t.status != "TERMINATED" and t.last_result.get("node_ip") == node_ip and t.last_result.get("epoch")}


def metric_history(cluster: Cluster, run_id: str, key: str) -> list[tuple[int, int]]:
    """(step, timestamp in ms) of every value logged, repeats included, in the order logged."""
    from tests.deploy.conftest import mlflow_get

    response = mlflow_get(cluster, "metrics/get-history", run_id=run_id, metric_key=key, max_results=1000)
    response.raise_for_status()
    return sorted(((m["step"], m["timestamp"]) for m in response.json().get("metrics", [])), key=lambda x: x[1])


def test_a_lost_worker_node_s_trial_resumes_from_its_checkpoint_on_the_other_node(local_cluster, tmp_path):
    name = "drill-node"
    job_id = start(local_cluster, name, tmp_path)
    on_worker = wait_until(lambda: {t: e for t, e in running_on(local_cluster, name, local_cluster.worker_ip).items()
                                    if e >= 2}, "a trial on the worker node to checkpoint twice")
    local_cluster.service("kill", "ray-worker")
    killed_at_ms = time.time() * 1000  # every process of the node is gone: what is logged from now is a retry
    try:  # the worker stays down: the trial can only finish on the head node
        runs = finish(local_cluster, name, job_id)
    finally:
        local_cluster.service("start", "ray-worker")
    trials = {t.trial_id: t for t in tune_trials(local_cluster, name)}
    for trial_id, checkpointed in on_worker.items():
        trial = trials[trial_id]
        assert trial.num_failures >= 1, (trial_id, "was not retried: the kill hit no running trial")
        assert trial.last_result["node_ip"] == local_cluster.head_ip, trial.last_result  # finished on the other node
        history = metric_history(local_cluster, runs[trial_id]["info"]["run_id"], "val_acc")
        before = [step for step, at in history if at < killed_at_ms]
        after = [step for step, at in history if at >= killed_at_ms]
        resumed_from = min(after)
        # the resumed attempt started after its checkpoint, not from epoch 1
        assert resumed_from > checkpointed >= 2, (checkpointed, history)
        # every epoch up to the checkpoint was logged exactly once, all before the kill
        for step in range(1, checkpointed + 1):
            assert [s for s, _ in history].count(step) == 1 and step in before, (step, history)
        assert sorted(set(before) | set(after)) == list(range(1, EPOCHS + 1)), history
        assert after == list(range(resumed_from, EPOCHS + 1)), history  # the resumed attempt, epoch by epoch


MLFLOW_RETRIES = 4  # the trials' MLflow client gives up after about 1 + 2 + 4 + 8 s (jittered): 15 s, not 4 min
MLFLOW_DOWN_S = 45  # longer than that window: every trial that logs meanwhile fails and is retried by Tune


def test_an_mlflow_server_killed_and_down_past_the_retry_window_loses_no_metric(local_cluster, tmp_path):
    name = "drill-mlflow-down"
    job_id = start(local_cluster, name, tmp_path, "--env", f"MLFLOW_HTTP_REQUEST_MAX_RETRIES={MLFLOW_RETRIES}",
                   max_failures=20)
    wait_until(lambda: epochs_reported(local_cluster, name) >= 2, "a trial to log two epochs")
    local_cluster.service("kill", "mlflow")  # SIGKILL: no graceful shutdown
    time.sleep(MLFLOW_DOWN_S)
    local_cluster.service("start", "mlflow")
    finish(local_cluster, name, job_id)  # every epoch of every curve, once per value
    assert sum(t.num_failures for t in tune_trials(local_cluster, name)) >= 1  # the outage outlasted the retries


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
    time.sleep(35)  # a real outage: the trials' MLflow calls and the driver's Optuna calls find no database
    local_cluster.service("start", "postgres")
    finish(local_cluster, name, job_id)
    assert [t.num_failures for t in tune_trials(local_cluster, name)] == [0] * BUDGET


def test_an_object_store_restart_loses_no_artifact(local_cluster, tmp_path):
    name = "drill-s3"
    job_id = start(local_cluster, name, tmp_path)
    wait_until(lambda: epochs_reported(local_cluster, name) >= 2, "a trial to log two epochs")
    local_cluster.service("kill", "s3")
    time.sleep(5)  # trials that end now find no object store behind MLflow's artifact proxy
    local_cluster.service("start", "s3")
    runs = finish(local_cluster, name, job_id)
    s3 = boto3.client("s3", endpoint_url=f"http://{local_cluster.head_ip}:{local_cluster.settings['SPR_S3_PORT']}",
                      aws_access_key_id=local_cluster.secret("s3_access_key"), region_name="us-east-1",
                      aws_secret_access_key=local_cluster.secret("s3_secret_key"))
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow")
            for o in page.get("Contents", [])]
    for run in runs.values():
        stored = {key.rsplit("/", 1)[-1] for key in keys if f"/{run['info']['run_id']}/artifacts/" in key}
        assert {"model.pt", "summary.json"} <= stored, (run["info"]["run_id"], stored)


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


def test_a_lost_head_node_is_brought_back_and_resume_finishes_the_budget_once(local_cluster, tmp_path):
    name = "drill-head"
    start(local_cluster, name, tmp_path)
    wait_until(lambda: epochs_reported(local_cluster, name) >= 2, "a trial to log two epochs")
    local_cluster.service("kill", "ray-head")  # GCS, dashboard, raylet and the driver: the whole head machine
    # A worker whose head is gone is restarted to join the new head (as KubeRay and the launcher do).
    local_cluster.service("stop", "ray-worker")
    assert len([t for t in optuna_trials(local_cluster, name) if t.state.name == "COMPLETE"]) < BUDGET
    local_cluster.service("start", "ray-head")
    local_cluster.service("start", "ray-worker")

    workdir = local_cluster.shared / "runs" / name
    resumed = job_client(local_cluster).submit_job(
        entrypoint=f"python -m samprivacy.cli resume {name} --workdir {workdir}")
    try:
        finish(local_cluster, name, resumed)
    except AssertionError as failed:  # what the resumed driver saw, and what Tune kept
        experiments = sorted(str(p.relative_to(local_cluster.shared)) for p in (local_cluster.shared / "tune").glob(
            f"{name}*/experiment_state-*.json"))
        states = [(t.number, t.state.name, t.user_attrs.get("tune_trial_id")) for t in optuna_trials(local_cluster, name)]
        raise AssertionError(f"{failed}\nsnapshots: {experiments}\noptuna: {states}\nresumed driver:\n"
                             + job_client(local_cluster).get_job_logs(resumed)[-6000:]) from None
    assert len(mlflow_trial_runs(local_cluster, name)) == BUDGET
