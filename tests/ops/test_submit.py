"""`samprivacy submit`: the job built locally, clear errors before anything is sent, and real Ray jobs."""

from __future__ import annotations

import http.server
import importlib.util
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from samprivacy.cli import main
from samprivacy.errors import ConfigError
from samprivacy.spec import SpecError
from samprivacy.ops import submit
from samprivacy.ops.submit import build_submission, dashboard_address, submit_sweep

from ..conftest import free_port

TINY = {
    "name": "tiny-submit", "datasets": ["digits"], "seeds": [0],
    "optimizers": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.2, "log": True}}},
    "train": {"epochs": 2, "batch_size": 128, "lr": 0.05},
    "attacks": ["loss", "confidence"], "trials": 2, "max_concurrent": 2,
    "resources": {"cpu": 1, "gpu": 0}, "sampler": {"name": "random", "seed": 0},
}


def write_spec(folder: Path, name: str = "tiny.yaml", **changes) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({**TINY, **changes}, sort_keys=False))
    return path


def one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long messages at the console width


def run_cli(*args: str, env: dict, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "samprivacy.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


# ---------------------------------------------------------------------------------------------------------
# The job, built locally (no Ray)

def test_the_job_runs_samprivacy_on_the_uploaded_spec_with_an_absolute_workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    job = build_submission(write_spec(tmp_path))
    workdir = tmp_path / "runs" / "tiny-submit"
    assert job.workdir == workdir
    assert shlex.split(job.entrypoint) == ["python", "-m", "samprivacy.cli", "run", "tiny.yaml",
                                           "--workdir", str(workdir)]
    assert job.env_vars["MLFLOW_TRACKING_URI"] == f"sqlite:///{workdir}/mlflow.db"
    assert job.env_vars["PYTHONUNBUFFERED"] == "1"
    # the job inherits the cluster's auth mode; forcing ours onto it can wedge the job (see submit.py)
    assert "RAY_AUTH_MODE" not in job.env_vars and "RAY_AUTH_TOKEN" not in job.env_vars
    assert re.fullmatch(r"samprivacy-tiny-submit-\d{8}-\d{6}-[0-9a-f]{4}", job.submission_id)
    assert job.metadata == {"samprivacy.sweep": "tiny-submit", "samprivacy.spec_hash": job.spec.spec_hash(),
                            "samprivacy.workdir": str(workdir)}


def test_workdir_python_env_and_storage_from_the_user_and_the_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, storage={"mlflow_uri": "http://mlflow.internal:5000"})
    job = build_submission(spec, workdir="shared/x", python="/opt/venv/bin/python",
                           extra_env={"MLFLOW_TRACKING_TOKEN": "t", "PYTHONUNBUFFERED": "0"},
                           submission_id="mine")
    assert job.workdir == tmp_path / "shared" / "x"
    assert shlex.split(job.entrypoint)[:3] == ["/opt/venv/bin/python", "-m", "samprivacy.cli"]
    assert shlex.split(job.entrypoint)[-1] == str(tmp_path / "shared" / "x")
    assert job.env_vars == {"MLFLOW_TRACKING_URI": "http://mlflow.internal:5000", "MLFLOW_TRACKING_TOKEN": "t",
                            "PYTHONUNBUFFERED": "0"}
    assert job.submission_id == "mine"
    assert build_submission(spec, entrypoint="echo hi").entrypoint == "echo hi"


@pytest.mark.parametrize("changes, key", [
    ({"data_root": "data/purchase"}, "data_root"),
    ({"storage": {"optuna_url": "sqlite:///optuna.db"}}, "storage.optuna_url"),
    ({"storage": {"mlflow_uri": "sqlite:///here/mlflow.db"}}, "storage.mlflow_uri"),
])
def test_paths_the_cluster_cannot_resolve_are_refused(tmp_path, changes, key):
    with pytest.raises(ConfigError, match=f"must be absolute.*{re.escape(key)}"):
        build_submission(write_spec(tmp_path, **changes))


def test_absolute_paths_in_the_spec_are_fine(tmp_path):
    job = build_submission(write_spec(tmp_path, data_root="/data", storage={
        "workdir": "/shared/runs/t", "optuna_url": "sqlite:////shared/optuna.db"}))
    assert job.workdir == Path("/shared/runs/t")


@pytest.mark.parametrize("extra_env, message", [
    ({"RAY_AUTH_TOKEN": "secret"}, "do not send RAY_AUTH_TOKEN"),
    ({"N": 3}, "must map names to strings"),
])
def test_bad_extra_env_is_refused(tmp_path, extra_env, message):
    with pytest.raises(ConfigError, match=message):
        build_submission(write_spec(tmp_path), extra_env=extra_env)


@pytest.mark.parametrize("given, expected", [
    ("http://head:8265", "http://head:8265"), ("head:8265/", "http://head:8265"),
    ("https://ray.example.org", "https://ray.example.org"), (None, "http://127.0.0.1:8265"),
])
def test_dashboard_address(given, expected, monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    assert dashboard_address(given) == expected


def test_dashboard_address_from_the_environment_and_bad_schemes(monkeypatch):
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://head:9000")
    assert dashboard_address(None) == "http://head:9000"
    assert dashboard_address("http://other:8265") == "http://other:8265"  # an explicit address wins
    with pytest.raises(ConfigError, match="Ray dashboard's HTTP address"):
        dashboard_address("ray://head:10001")


# ---------------------------------------------------------------------------------------------------------
# Errors before anything reaches a cluster

def test_a_bad_spec_fails_before_anything_is_sent(tmp_path, monkeypatch, capsys):
    def no_cluster(*args, **kwargs):
        raise AssertionError("a bad spec must not reach the cluster")

    monkeypatch.setattr(submit, "connect", no_cluster)
    bad = write_spec(tmp_path, optimizers={"sgd": {"rho": 0.1}}, trials=0)
    with pytest.raises(SpecError) as info:
        submit_sweep(bad, "http://127.0.0.1:8265")
    assert {path for path, _ in info.value.problems} >= {"optimizers.sgd.rho", "trials"}
    assert main(["submit", str(bad), "--address", "http://127.0.0.1:8265"]) == 2
    assert "invalid sweep spec" in capsys.readouterr().err
    assert main(["submit", str(tmp_path / "missing.yaml")]) == 2


def test_an_unreachable_dashboard_gives_the_fix_and_exit_code_2(tmp_path, capsys):
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["submit", str(write_spec(tmp_path)), "--address", address]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no job id
    assert one_line(captured.err) == one_line(
        f"error: cannot reach the Ray dashboard at {address}; start one with "
        "`ray start --head --dashboard-host 127.0.0.1` or pass --address")


def test_something_that_is_not_a_ray_dashboard(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(ConfigError, match="does not answer as a Ray dashboard"):
            submit_sweep(write_spec(tmp_path), f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------------------
# A real cluster (conftest.ray_head: `ray start --head` with token authentication)

@pytest.mark.slow
def test_a_submitted_job_gets_the_spec_the_environment_and_the_cluster(ray_head, tmp_path):
    probe = ("import os, ray; ray.init(); "
             "print('CPU', ray.cluster_resources()['CPU']); print('FILES', sorted(os.listdir('.'))); "
             "print('MLFLOW', os.environ['MLFLOW_TRACKING_URI']); print('EXTRA', os.environ['SPR_EXTRA'])")
    job_id = submit_sweep(write_spec(tmp_path), ray_head.address, workdir=tmp_path / "w", token=ray_head.token,
                          extra_env={"SPR_EXTRA": "yes"}, entrypoint=f"python -c {shlex.quote(probe)}")
    assert job_id.startswith("samprivacy-tiny-submit-")
    logs = "".join(submit.follow_logs(ray_head.address, job_id, token=ray_head.token))
    report = submit.wait_for_job(ray_head.address, job_id, token=ray_head.token)
    assert report.succeeded and report.terminal, (report, logs)
    assert "CPU 2.0" in logs
    assert "FILES ['tiny.yaml']" in logs  # the working_dir holds the spec and nothing else
    assert f"MLFLOW sqlite:///{tmp_path / 'w'}/mlflow.db" in logs
    assert "EXTRA yes" in logs
    assert report.metadata["samprivacy.sweep"] == "tiny-submit"


@pytest.mark.slow
def test_token_authentication_errors(ray_head, tmp_path):
    spec = write_spec(tmp_path)
    with pytest.raises(ConfigError, match="rejected the authentication token"):
        submit_sweep(spec, ray_head.address, token="not-the-token")
    env = {**ray_head.env, "RAY_AUTH_MODE": "disabled"}  # a client that sends no token
    result = run_cli("submit", str(spec), "--address", ray_head.address, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "requires token authentication and no token was sent; set RAY_AUTH_MODE=token" in one_line(result.stderr)
    with pytest.raises(ConfigError, match="no job 'samprivacy-nope'"):
        submit.job_status(ray_head.address, "samprivacy-nope", token=ray_head.token)


@pytest.mark.slow
def test_follow_exits_1_when_the_job_fails(ray_head, tmp_path):
    spec = write_spec(tmp_path, datasets=["purchase100"], data_root=str(tmp_path / "no-such-folder"))
    result = run_cli("submit", str(spec), "--address", ray_head.address, "--follow", env=ray_head.env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    job_id = result.stdout.splitlines()[0]
    assert job_id.startswith("samprivacy-tiny-submit-")
    assert f"job {job_id}: FAILED" in one_line(result.stderr)
    assert "no-such-folder" in result.stdout  # the job's own error, streamed back


def fake_python(folder: Path, version: str | None) -> Path:
    """An interpreter for the job: this venv's Python without site-packages (so no samprivacy), or with a
    samprivacy that reports another version."""
    script = folder / "fake-python"
    if version is None:
        script.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    else:
        (folder / "other" / "samprivacy").mkdir(parents=True)
        (folder / "other" / "samprivacy" / "__init__.py").write_text(f"__version__ = {version!r}\n")
        script.write_text(f"#!/bin/sh\nPYTHONPATH={folder / 'other'} exec {sys.executable} -S \"$@\"\n")
    script.chmod(0o755)
    return script


@pytest.mark.slow
@pytest.mark.parametrize("version, message", [
    (None, "cannot import samprivacy (ModuleNotFoundError: No module named 'samprivacy')"),
    ("0.0.1", "has samprivacy 0.0.1, this machine"),
])
def test_submit_refuses_a_cluster_python_without_this_samprivacy(ray_head, tmp_path, version, message):
    python = fake_python(tmp_path, version)
    client = submit.connect(ray_head.address, token=ray_head.token)
    before = {j.submission_id for j in client.list_jobs()}
    result = run_cli("submit", str(write_spec(tmp_path)), "--address", ray_head.address, "--python", str(python),
                     env=ray_head.env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""  # no job id: nothing was submitted
    err = one_line(result.stderr)
    assert message in err and "pass --python with the interpreter that has it" in err
    new_jobs = [j for j in client.list_jobs() if j.submission_id not in before]
    assert [j.metadata for j in new_jobs] == [{"samprivacy.check": "interpreter"}]  # the check job, no sweep job


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("samprivacy.sweep.runner") is None,
                    reason="samprivacy.sweep.runner (what the job's `samprivacy run` calls) does not exist yet")
def test_submit_follow_runs_the_sweep_into_the_given_workdir(ray_head, tmp_path):
    from mlflow.tracking import MlflowClient

    from samprivacy.tags import TAG_KIND, TAG_TRIAL

    workdir = tmp_path / "shared" / "tiny"
    result = run_cli("submit", str(write_spec(tmp_path)), "--address", ray_head.address, "--workdir", str(workdir),
                     "--follow", env=ray_head.env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("tiny-submit")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get(TAG_KIND) == "sweep"]
    children = [r for r in runs if r.data.tags.get(TAG_KIND) == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == TINY["trials"] and len({r.data.tags[TAG_TRIAL] for r in children}) == TINY["trials"]
    assert all(r.data.tags["samprivacy.sweep_run_id"] == parents[0].info.run_id for r in children)
