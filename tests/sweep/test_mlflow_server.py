"""A sweep logging to a real MLflow tracking server over HTTP, with artifacts proxied by the server.

Starts `mlflow server` (SQLite backend, `--serve-artifacts` into a temporary folder, 127.0.0.1 on a free port),
runs a 3-trial sweep whose `storage.mlflow_uri` is the server's URL, then reads everything back through
`MlflowClient(http://...)`: the parent run and its Pareto artifacts, one finished child run per trial with its
metrics, per-epoch curves and downloadable artifacts, the `pareto` tags and the experiment kind.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from samprivacy.spec import parse_spec
from samprivacy.sweep import runner
from samprivacy.sweep.results import measured_rows, trial_rows
from samprivacy.tags import EXPERIMENT_KIND, TAG_KIND, TAG_PARETO, TAG_TRIAL

from ..conftest import free_port

pytestmark = pytest.mark.slow

TRIALS, EPOCHS = 3, 2
SPEC = {
    "name": "served", "datasets": ["digits"], "seeds": [0],
    "optimizers": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.2, "log": True}}},
    "train": {"epochs": EPOCHS, "batch_size": 128, "lr": 0.05},
    "attacks": ["loss", "confidence"], "trials": TRIALS, "max_concurrent": 2,
    "resources": {"cpu": 1, "gpu": 0}, "sampler": {"name": "random", "seed": 0},
}
TRIAL_ARTIFACTS = {"model.pt", "roc.npz", "splits.npz", "summary.json"}
STARTUP_TIMEOUT_S = 90
STOP_GRACE_S = 10


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, http.client.HTTPException):  # nothing there yet, or not HTTP
        return False


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` from this venv, in a session of its own so that stopping it stops its workers too."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
               "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               # MLflow 3's security middleware checks the Host header: name the only hosts clients use
               "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}"]
    # No job runner (huey consumers for GenAI jobs): a sweep needs none, and they outlive a plain SIGTERM.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(root / "server.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return process, f"http://127.0.0.1:{port}"


def wait_healthy(process: subprocess.Popen, url: str, log: Path) -> bool:
    """Whether the server answers; False when it exited first (its port was taken meanwhile)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not _healthy(url):
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            pytest.fail(f"`mlflow server` did not answer {url}/health:\n{log.read_text()[-4000:]}")
        time.sleep(0.25)
    return True


def start_healthy_server(root: Path) -> tuple[subprocess.Popen, str]:
    """A port found free is free only until another process binds it; the server binds it seconds later (once a
    Ray starting beside it took it, and /health reached Ray's gRPC server). A server that exits before it
    answers is started again on another port."""
    for _ in range(3):
        process, url = start_server(root)
        if wait_healthy(process, url, root / "server.log"):
            return process, url
    pytest.fail(f"`mlflow server` exited three times before answering:\n{(root / 'server.log').read_text()[-4000:]}")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (the CLI, uvicorn and its worker), SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the CLI is gone; give its children the same grace before the next signal
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                os.killpg(process.pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            break


@dataclass(frozen=True)
class Served:
    url: str
    client: MlflowClient
    outcome: dict
    artifacts_root: Path
    tune_ids: set[str]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    import ray

    root = tmp_path_factory.mktemp("mlflow-server")
    started_ray, process = not ray.is_initialized(), None
    try:
        runner.start_ray(None)  # first: Ray binds many ports as it starts
        process, url = start_healthy_server(root)
        spec = parse_spec({**SPEC, "storage": {"mlflow_uri": url}})
        outcome = runner.run(spec, workdir=root / "work")
        sweep = runner.prepare(spec, root / "work")
        tune_ids = {r["trial_id"] for r in measured_rows(trial_rows(sweep))}  # duplicates trained nothing
        yield Served(url, MlflowClient(tracking_uri=url), outcome, root / "artifacts", tune_ids)
    finally:
        if started_ray:
            ray.shutdown()
        if process is not None:
            stop_server(process)


def _runs(served: Served, kind: str) -> list:
    experiment = served.client.get_experiment_by_name(SPEC["name"])
    return served.client.search_runs([experiment.experiment_id], f"tags.`{TAG_KIND}` = '{kind}'",
                                     max_results=1000)


def test_the_sweep_completes_through_the_server(served):
    assert served.outcome["mlflow_uri"] == served.url
    assert served.outcome["status"]["complete"] == TRIALS
    assert served.outcome["status"]["failed"] == 0


def test_experiment_opens_on_the_runs_table(served):
    experiment = served.client.get_experiment_by_name(SPEC["name"])
    assert experiment.tags.get(EXPERIMENT_KIND[0]) == EXPERIMENT_KIND[1]
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's proxied store


def test_one_parent_run_with_the_pareto_artifacts(served, tmp_path):
    (parent,) = _runs(served, "sweep")
    assert parent.info.run_id == served.outcome["parent_run_id"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_complete"] == TRIALS
    files = {a.path for a in served.client.list_artifacts(parent.info.run_id, "pareto")}
    assert files == {"pareto/pareto.json"}
    report_files = {a.path for a in served.client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/pareto.png", "report/pareto.html", "report/table1.md"} <= report_files  # through the server
    local = served.client.download_artifacts(parent.info.run_id, "pareto/pareto.json", str(tmp_path))
    report = json.loads(Path(local).read_text())
    assert report["complete"] == TRIALS and report["front"]


def test_exactly_one_finished_child_run_per_trial(served):
    children = _runs(served, "trial")
    trial_ids = [run.data.tags[TAG_TRIAL] for run in children]
    assert len(children) == TRIALS
    assert sorted(trial_ids) == sorted(set(trial_ids)) and set(trial_ids) == served.tune_ids
    for run in children:
        assert run.info.status == "FINISHED", run.data.tags
        assert run.data.tags["samprivacy.sweep_run_id"] == served.outcome["parent_run_id"]
        assert "mlflow.parentRunId" not in run.data.tags  # top level: MLflow's runs table lists it
        for metric in ("test_acc", "attack_acc"):
            assert 0.0 <= run.data.metrics[metric] <= 1.0 and math.isfinite(run.data.metrics[metric])


def test_val_acc_history_has_one_point_per_epoch(served):
    runs = _runs(served, "trial")
    assert len(runs) == TRIALS  # the loop below must not pass on no runs
    for run in runs:
        history = served.client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))


def test_every_per_epoch_curve_has_one_point_per_epoch(served):
    runs = _runs(served, "trial")
    assert len(runs) == TRIALS
    for run in runs:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds"):
            steps = sorted(m.step for m in served.client.get_metric_history(run.info.run_id, key))
            assert steps == list(range(1, EPOCHS + 1)), key


def test_trial_artifacts_download_through_the_server(served, tmp_path):
    runs = _runs(served, "trial")
    assert len(runs) == TRIALS
    for run in runs:
        run_id = run.info.run_id
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert TRIAL_ARTIFACTS <= {a.path for a in served.client.list_artifacts(run_id)}
        # stored by the server under --artifacts-destination, not written by the trial to a local path
        assert list(served.artifacts_root.rglob(f"{run_id}/artifacts/model.pt"))
        weights = torch.load(served.client.download_artifacts(run_id, "model.pt", str(tmp_path / run_id)),
                             weights_only=True)
        assert weights and all(isinstance(v, torch.Tensor) for v in weights.values())
        summary = json.loads(Path(served.client.download_artifacts(run_id, "summary.json",
                                                                   str(tmp_path / run_id))).read_text())
        assert summary["test_acc"] == pytest.approx(run.data.metrics["test_acc"])


def test_pareto_tags_mark_the_front(served):
    children = _runs(served, "trial")
    tags = {run.data.tags[TAG_TRIAL]: run.data.tags.get(TAG_PARETO) for run in children}
    assert set(tags.values()) <= {"true", "false"} and None not in tags.values()
    front = {row["trial_id"] for row in served.outcome["pareto"]["front"]}
    assert front and {trial for trial, tag in tags.items() if tag == "true"} == front
