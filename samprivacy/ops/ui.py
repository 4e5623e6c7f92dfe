"""The MLflow UI on a sweep's local store: which store, and the `mlflow ui` command line that serves it.

    ui_command(workdir=...) or ui_command(name=...) -> UiCommand (argv, url, store); the CLI runs it
    experiment_url(command) -> the sweep's runs table in that UI (the page that shows the trials and the front)

Loopback (127.0.0.1) unless asked: the UI has no login, and MLflow's server accepts writes as well as reads.
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from samprivacy.errors import ConfigError

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 5000
SWEEP_FILE = "sweep.json"  # = sweep.results.SWEEP_FILE (written by `samprivacy run`; not imported: optuna)


@dataclass(frozen=True)
class UiCommand:
    argv: list[str]
    url: str
    backend_store_uri: str
    workdir: Path
    env: dict[str, str]  # to add to the environment the command runs in


def sweep_workdir(workdir: str | Path | None = None, name: str | None = None) -> Path:
    """The folder a sweep ran in: `workdir`, else ./runs/<name> (the `samprivacy run` default)."""
    if (workdir is None) == (name is None):
        raise ConfigError("pass exactly one of --workdir DIR (the folder a sweep ran in) or --name NAME "
                          "(for ./runs/NAME)")
    return (Path(workdir).expanduser() if workdir is not None else Path("runs") / str(name)).resolve()


def backend_store_uri(workdir: Path) -> str:
    """The sweep's MLflow store: the one its sweep.json records, else sqlite:///<workdir>/mlflow.db."""
    record = workdir / SWEEP_FILE
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    if record.exists():
        try:
            uri = json.loads(record.read_text())["storage"]["mlflow_uri"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{record} is not a sweep record written by `samprivacy run`; "
                              f"pass the folder the sweep ran in") from None
    if not uri.startswith("sqlite"):
        raise ConfigError(f"the sweep in {workdir} logs to the MLflow server at {uri}: open that in a browser "
                          f"(`samprivacy ui` serves local SQLite stores only)")
    path = Path(uri.split(":///", 1)[-1])
    if not path.exists():
        raise ConfigError(f"no MLflow store at {path}; run a sweep first (`samprivacy run SPEC`) or pass "
                          f"--workdir with the folder it ran in")
    return uri


def ensure_port_free(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port "
                              f"(or --host)") from None


def ui_command(workdir: str | Path | None = None, name: str | None = None, *, host: str = LOOPBACK,
               port: int = DEFAULT_PORT, check_port: bool = True) -> UiCommand:
    """`python -m mlflow ui` on the sweep's SQLite store, bound to `host:port`.

    One worker (a personal viewer, not a team server); artifacts uploaded through the UI land in
    <workdir>/mlartifacts, not in the current folder. MLflow's job runner (GenAI evaluation jobs) stays off:
    a sweep needs none, and its Huey consumers outlive a stopped server (MLflow 3.17).
    """
    folder = sweep_workdir(workdir, name)
    uri = backend_store_uri(folder)
    if check_port:
        ensure_port_free(host, port)
    argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
            "--artifacts-destination", str(folder / "mlartifacts"),
            "--host", host, "--port", str(port), "--workers", "1"]
    shown = LOOPBACK if host in ("0.0.0.0", "::", "") else host
    return UiCommand(argv=argv, url=f"http://{f'[{shown}]' if ':' in shown else shown}:{port}",
                     backend_store_uri=uri, workdir=folder, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def sweep_name(workdir: Path) -> str | None:
    """The sweep's name as its sweep.json records it (None without one)."""
    try:
        return json.loads((workdir / SWEEP_FILE).read_text())["spec"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def experiment_url(command: UiCommand, name: str | None = None) -> str | None:
    """`<ui>/#/experiments/<id>/runs?workflowType=machine_learning`: the sweep's runs table with its description
    (the front) above it. MLflow 3.17 opens an experiment on its GenAI overview unless the URL says otherwise."""
    from mlflow.tracking import MlflowClient

    name = name or sweep_name(command.workdir)
    experiment = MlflowClient(command.backend_store_uri).get_experiment_by_name(name) if name else None
    if experiment is None:
        return None
    return f"{command.url}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
