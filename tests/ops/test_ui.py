"""`samprivacy ui`: the `mlflow ui` command line on a sweep's SQLite store, loopback by default."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from samprivacy.cli import main
from samprivacy.errors import ConfigError
from samprivacy.ops.ui import experiment_url, ui_command

from ..conftest import free_port


@pytest.fixture
def workdir(tmp_path):
    folder = tmp_path / "runs" / "quickstart"
    folder.mkdir(parents=True)
    (folder / "mlflow.db").touch()  # an empty SQLite file is an empty database; mlflow creates its tables
    return folder


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_command_serves_the_sweeps_sqlite_store_on_loopback(workdir):
    port = free_port()
    command = ui_command(workdir=workdir, port=port)
    assert command.argv[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert option(command.argv, "--backend-store-uri") == f"sqlite:///{workdir}/mlflow.db"
    assert option(command.argv, "--host") == "127.0.0.1"
    assert option(command.argv, "--port") == str(port)
    assert option(command.argv, "--artifacts-destination") == str(workdir / "mlartifacts")
    assert command.url == f"http://127.0.0.1:{port}"
    assert command.workdir == workdir
    assert command.env == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def test_name_means_runs_slash_name_here(workdir, monkeypatch):
    monkeypatch.chdir(workdir.parent.parent)
    assert ui_command(name="quickstart", check_port=False).backend_store_uri == f"sqlite:///{workdir}/mlflow.db"


def test_all_interfaces_show_a_loopback_url(workdir):
    command = ui_command(workdir=workdir, host="0.0.0.0", port=5999, check_port=False)
    assert option(command.argv, "--host") == "0.0.0.0" and command.url == "http://127.0.0.1:5999"


def test_the_store_recorded_in_sweep_json_wins(workdir, tmp_path):
    elsewhere = tmp_path / "elsewhere.db"
    elsewhere.touch()
    (workdir / "sweep.json").write_text(json.dumps({"spec": {}, "storage": {"mlflow_uri": f"sqlite:///{elsewhere}"}}))
    assert ui_command(workdir=workdir, check_port=False).backend_store_uri == f"sqlite:///{elsewhere}"
    (workdir / "sweep.json").write_text(json.dumps({"spec": {}, "storage": {"mlflow_uri": "http://mlflow:5000"}}))
    with pytest.raises(ConfigError, match="logs to the MLflow server at http://mlflow:5000"):
        ui_command(workdir=workdir, check_port=False)
    (workdir / "sweep.json").write_text("[]")
    with pytest.raises(ConfigError, match="is not a sweep record"):
        ui_command(workdir=workdir, check_port=False)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of --workdir"),
    ({"workdir": "a", "name": "b"}, "exactly one of --workdir"),
    ({"name": "never-ran"}, "no MLflow store at .*never-ran/mlflow.db"),
])
def test_which_store_errors(kwargs, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        ui_command(**kwargs, check_port=False)


def test_a_busy_port_is_reported(workdir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1:.*pass another --port"):
            ui_command(workdir=workdir, port=busy.getsockname()[1])


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["ui", "--workdir", str(tmp_path / "nothing")]) == 2
    assert "no MLflow store" in capsys.readouterr().err


@pytest.mark.slow
def test_the_ui_answers_on_loopback(workdir):
    command = ui_command(workdir=workdir, port=free_port())
    process = subprocess.Popen(command.argv, env={**os.environ, **command.env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline, body = time.monotonic() + 90, None
        while body is None:
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "mlflow ui did not answer within 90 s"
            try:
                with urllib.request.urlopen(command.url + "/", timeout=5) as response:
                    body = response.read().decode()
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        assert "mlflow" in body.lower()
    finally:  # the server and its uvicorn worker share the process group start_new_session gave them
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_sweeps_address_opens_its_runs_table(workdir):
    from mlflow.tracking import MlflowClient

    command = ui_command(workdir=workdir, port=5999, check_port=False)
    assert experiment_url(command, "quickstart") is None  # no experiment yet: nothing to point at
    experiment_id = MlflowClient(command.backend_store_uri).create_experiment("quickstart")
    assert experiment_url(command, "quickstart") == (
        f"http://127.0.0.1:5999/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    (workdir / "sweep.json").write_text(json.dumps({"spec": {"name": "quickstart"},
                                                    "storage": {"mlflow_uri": command.backend_store_uri}}))
    assert experiment_url(command) is not None  # the name comes from sweep.json
