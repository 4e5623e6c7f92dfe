"""A sweep submitted to the local two-node cluster with `samprivacy submit --follow`, read back from outside:
its trials ran on both nodes, MLflow holds them behind basic authentication, the artifacts are in the object
store, the study is in PostgreSQL and Tune's state is on the shared folder."""

from __future__ import annotations

from dataclasses import dataclass

import boto3
import pytest
import requests

from tests.deploy.conftest import (Cluster, assert_budget_exactly_once, metric_steps, mlflow_get, optuna_trials,
                                   run_tags, submit, tune_trials)

pytestmark = pytest.mark.slow

NAME, BUDGET, EPOCHS = "cluster-sweep", 4, 4
TRIAL_ARTIFACTS = {"model.pt", "roc.npz", "splits.npz", "summary.json"}


@dataclass(frozen=True)
class Swept:
    cluster: Cluster
    output: str
    runs: dict  # MLflow runs by trial id


@pytest.fixture(scope="module")
def swept(local_cluster, tmp_path_factory) -> Swept:
    result = submit(local_cluster, local_cluster.spec(NAME, trials=BUDGET), tmp_path_factory.mktemp("submit"),
                    "--follow")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Swept(local_cluster, result.stdout, assert_budget_exactly_once(local_cluster, NAME, BUDGET))


def test_the_job_succeeds_and_reports_the_front(swept):
    assert f"sweep {NAME}: {BUDGET} complete, 0 failed" in swept.output
    assert swept.output.strip().splitlines()[0].startswith(f"samprivacy-{NAME}-")  # the job id comes first
    # the link goes to the cluster's server and the sweep's experiment, not to `samprivacy ui`
    assert f"open the sweep in MLflow: {swept.cluster.mlflow_uri}/#/experiments/" in " ".join(swept.output.split())


def test_trials_ran_on_both_nodes(swept):
    nodes = {trial.last_result["node_ip"] for trial in tune_trials(swept.cluster, NAME)}
    assert nodes == {swept.cluster.head_ip, swept.cluster.worker_ip}


def test_mlflow_answers_only_with_credentials(swept):
    cluster = swept.cluster
    assert mlflow_get(cluster, "experiments/get-by-name", auth=False, experiment_name=NAME).status_code == 401
    wrong = requests.get(f"{cluster.mlflow_uri}/api/2.0/mlflow/experiments/get-by-name", timeout=30,
                         params={"experiment_name": NAME}, auth=("sweeper", "not-the-password"))
    assert wrong.status_code == 401
    assert mlflow_get(cluster, "experiments/get-by-name", experiment_name=NAME).status_code == 200


def test_every_trial_run_has_its_metrics_and_curves(swept):
    assert len(swept.runs) == BUDGET  # the loop below must not pass on no runs
    for trial_id, run in swept.runs.items():
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert 0.0 <= metrics["test_acc"] <= 1.0 and 0.0 <= metrics["attack_acc"] <= 1.0, trial_id
        assert [step for step, _ in metric_steps(swept.cluster, run["info"]["run_id"], "val_acc")] == \
            list(range(1, EPOCHS + 1))


def test_artifacts_are_in_the_object_store(swept):
    cluster = swept.cluster
    s3 = boto3.client("s3", endpoint_url=f"http://{cluster.head_ip}:{cluster.settings['SPR_S3_PORT']}",
                      aws_access_key_id=cluster.secret("s3_access_key"), region_name="us-east-1",
                      aws_secret_access_key=cluster.secret("s3_secret_key"))
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow")
            for o in page.get("Contents", [])]
    assert len(swept.runs) == BUDGET
    for run in swept.runs.values():
        run_id = run["info"]["run_id"]
        assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:")  # proxied by the server
        stored = {key.rsplit("/", 1)[-1] for key in keys if f"/{run_id}/artifacts/" in key}
        assert TRIAL_ARTIFACTS <= stored, (run_id, stored)


def test_artifacts_download_through_the_server(swept):
    run_id = next(iter(swept.runs.values()))["info"]["run_id"]
    url = f"{swept.cluster.mlflow_uri}/get-artifact"
    params = {"path": "summary.json", "run_uuid": run_id}
    assert requests.get(url, params=params, timeout=30).status_code == 401
    summary = requests.get(url, params=params, auth=swept.cluster.mlflow_auth, timeout=30)
    assert summary.status_code == 200 and "test_acc" in summary.json()


def test_the_study_is_in_postgresql(swept):
    trials = optuna_trials(swept.cluster, NAME)
    assert len([t for t in trials if t.state.name == "COMPLETE"]) == BUDGET
    assert {t.user_attrs["tune_trial_id"] for t in trials} == set(swept.runs)


def test_the_parent_run_holds_the_front(swept):
    response = requests.post(f"{swept.cluster.mlflow_uri}/api/2.0/mlflow/runs/search", timeout=30,
                             auth=swept.cluster.mlflow_auth, json={
                                 "experiment_ids": [next(iter(swept.runs.values()))["info"]["experiment_id"]],
                                 "filter": "tags.`samprivacy.kind` = 'sweep'"})
    (parent,) = response.json()["runs"]
    assert parent["info"]["status"] == "FINISHED"
    assert run_tags(parent)["samprivacy.sweep"] == NAME
    assert {run_tags(r).get("pareto") for r in swept.runs.values()} <= {"true", "false"}
