"""The local two-node cluster (deploy/local/up.sh) for the cluster tests, and what they check it with.

`local_cluster` runs up.sh once for the tests of this package, private to them: its own state folder, network
namespace, 10.x.y.0/24 subnet (one that no interface of this machine has) and free ports, so it runs beside any
other Ray or PostgreSQL here. Teardown runs down.sh --purge and checks that none of the processes up.sh
recorded is left and that the namespace is gone. up.sh needs root (it creates the namespace).

The checks read every record from the outside, the way a user would: MLflow over HTTP with the sweep user's
password, the Optuna study from PostgreSQL, Tune's experiment state from the shared folder.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "local"
BIN = Path(sys.executable).parent
UP_TIMEOUT_S = 480  # above the sum of up.sh's own waits (lib.sh SERVICE_WAIT): its own message names what failed
JOB_TIMEOUT_S = 300


@dataclass(frozen=True)
class Cluster:
    state: Path
    settings: dict[str, str]
    env: dict[str, str]  # for client processes: cluster.env on top of this environment
    head_ip: str
    worker_ip: str
    dashboard: str
    mlflow_uri: str
    shared: Path
    secrets_on_command_lines_during_up: list = field(default_factory=list)

    def secret(self, name: str) -> str:
        return (self.state / "secrets" / name).read_text().strip()

    @property
    def mlflow_auth(self) -> tuple[str, str]:
        return "sweeper", self.secret("mlflow_password")

    @property
    def optuna_url(self) -> str:  # as the spec writes it: the password comes from PGPASSFILE on the nodes
        return f"postgresql://optuna@{self.head_ip}:{self.settings['SPR_PG_PORT']}/optuna"

    @property
    def optuna_url_with_password(self) -> str:  # for this test process only
        return self.optuna_url.replace("optuna@", f"optuna:{self.secret('pg_optuna')}@", 1)

    def service(self, action: str, name: str) -> None:
        result = subprocess.run(["bash", str(DEPLOY / "service.sh"), action, name], env=self.env,
                                capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, f"service.sh {action} {name}:\n{result.stderr[-3000:]}"

    def spec(self, name: str, **fields) -> dict:
        """A small sweep on digits whose state lives on this cluster."""
        return {"name": name, "datasets": ["digits"], "seeds": [0, 1],
                "optimizers": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.2, "log": True}}},
                "train": {"epochs": 4, "batch_size": 128, "lr": 0.05}, "attacks": ["loss", "confidence"],
                "sampler": {"name": "random", "seed": 0}, "trials": 4, "max_concurrent": 2,
                "resources": {"cpu": 1, "gpu": 0}, "max_failures": 2, "checkpoint_interval_s": 0,
                "storage": {"workdir": str(self.shared / "runs" / name), "tune_storage": str(self.shared / "tune"),
                            "mlflow_uri": self.mlflow_uri, "optuna_url": self.optuna_url}, **fields}


SECRET_FILES = ("ray_token", "pg_mlflow", "pg_optuna", "s3_access_key", "s3_secret_key", "mlflow_admin_password",
                "mlflow_password", "mlflow_flask_secret")


class CommandLineWatch:
    """Reads every process's command line (/proc/*/cmdline, readable by every local user) over and over in a
    thread, and records each one that holds the value of a secret of the cluster in `state`: what any user
    running `ps` would have seen. Secrets are read as they appear (up.sh writes them first)."""

    def __init__(self, state: Path, period_s: float = 0.05):
        self.state, self.period_s = state, period_s
        self.found: list[tuple[str, int, str]] = []  # (secret name, pid, command line)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _secrets(self) -> dict[str, str]:
        values = {}
        for name in SECRET_FILES:
            try:
                value = (self.state / "secrets" / name).read_text().strip()
            except OSError:
                continue
            if value:
                values[name] = value
        return values

    def scan(self) -> None:
        secrets_now = self._secrets()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            for name, value in secrets_now.items():
                if value in line and (name, int(proc.name)) not in {(n, p) for n, p, _ in self.found}:
                    self.found.append((name, int(proc.name), line[:300]))

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.scan()
            self._stop.wait(self.period_s)

    def __enter__(self) -> "CommandLineWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def service_processes(state: Path) -> dict[str, list[tuple[int, int, str]]]:
    """(pid, uid, command) of every process of each service up.sh recorded: the recorded process, its session
    and all their descendants (as lib.sh's `tree` finds them)."""
    table = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
            uid = proc.stat().st_uid
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z":
            table[int(proc.name)] = (int(fields[1]), int(fields[3]), uid, command)  # ppid, session, uid
    found = {}
    for pid_file in (state / "pids").glob("*.pid"):
        root = int(pid_file.read_text().split()[0])
        keep = {root} | {p for p, (_, sid, _, _) in table.items() if sid == root}
        grew = True
        while grew:
            grown = {p for p, (ppid, _, _, _) in table.items() if ppid in keep} - keep
            keep |= grown
            grew = bool(grown)
        found[pid_file.stem] = sorted((p, table[p][2], table[p][3]) for p in keep if p in table)
    return found


def _unused_subnet() -> str:
    taken = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    for _ in range(100):
        subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        if f" {subnet}." not in taken:
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 subnet")


def _read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value
    return env


def _missing_prerequisites() -> list[str]:
    missing = [] if os.geteuid() == 0 else ["root (up.sh creates a network namespace)"]
    missing += [tool for tool in ("ip", "runuser", "curl", "openssl", "envsubst") if shutil.which(tool) is None]
    missing += [f"{tool} in {BIN}" for tool in ("ray", "mlflow", "rclone") if not (BIN / tool).exists()]
    if not Path("/usr/lib/postgresql/15/bin/postgres").exists():
        missing.append("PostgreSQL 15 (apt-get install postgresql-15)")
    return missing


@pytest.fixture(scope="package")
def local_cluster():
    missing = _missing_prerequisites()
    if missing:
        message = "the local cluster needs " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run installs them)")
        pytest.skip(message)
    state = Path(tempfile.mkdtemp(prefix="spl-", dir="/tmp"))  # short: Ray's socket paths must stay short
    settings = {"SPR_STATE": str(state), "SPR_NAME": f"t{secrets.token_hex(2)}", "SPR_SUBNET": _unused_subnet(),
                "SPR_BIN": str(BIN), **{key: str(free_port()) for key in (
                    "SPR_PG_PORT", "SPR_S3_PORT", "SPR_MLFLOW_PORT", "SPR_RAY_PORT", "SPR_DASHBOARD_PORT",
                    "SPR_RAY_CLIENT_PORT", "SPR_RAY_AGENT_PORT")}}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))} | settings
    try:  # down.sh stops whatever up.sh started, even when up.sh fails or is killed at its timeout
        with CommandLineWatch(state) as watch:  # up.sh polls the services with curl: no token on its command line
            up = subprocess.run(["bash", str(DEPLOY / "up.sh")], env=env, capture_output=True, text=True,
                                timeout=UP_TIMEOUT_S)
        assert up.returncode == 0, f"up.sh failed:\n{up.stderr[-4000:]}"
        client_env = env | _read_env_file(state / "cluster.env") | {"PATH": f"{BIN}:{os.environ['PATH']}"}
        head, worker = f"{settings['SPR_SUBNET']}.1", f"{settings['SPR_SUBNET']}.2"
        yield Cluster(state=state, settings=settings, env=client_env, head_ip=head, worker_ip=worker,
                      dashboard=client_env["RAY_API_SERVER_ADDRESS"], mlflow_uri=client_env["MLFLOW_TRACKING_URI"],
                      shared=Path(client_env["SPR_SHARED"]), secrets_on_command_lines_during_up=watch.found)
    finally:
        recorded = {p.stem: p.read_text().split() for p in (state / "pids").glob("*.pid")}
        down = subprocess.run(["bash", str(DEPLOY / "down.sh"), "--purge"], env=env, capture_output=True,
                              text=True, timeout=180)
        assert down.returncode == 0, f"down.sh failed:\n{down.stderr[-3000:]}"
        assert not [name for name, (pid, started) in recorded.items() if _running(int(pid), started)], \
            f"down.sh left processes running: {recorded}"
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"{settings['SPR_NAME']}-worker" not in namespaces
        assert not state.exists()


def _running(pid: int, started: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0] != "Z" and fields[19] == started


# -- driving sweeps ------------------------------------------------------------------------------------------
def submit(cluster: Cluster, spec: dict, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    """`samprivacy submit` from this machine, as a user would after sourcing cluster.env."""
    path = folder / f"{spec['name']}.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return subprocess.run([str(BIN / "samprivacy"), "submit", str(path), *extra], env=cluster.env, cwd=folder,
                          capture_output=True, text=True, timeout=JOB_TIMEOUT_S + 60)


def job_client(cluster: Cluster):
    from samprivacy.ops.submit import connect

    return connect(cluster.dashboard, token=cluster.secret("ray_token"))


def wait_job(cluster: Cluster, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> str:
    client = job_client(cluster)
    deadline = time.monotonic() + timeout_s
    while not client.get_job_status(job_id).is_terminal():
        assert time.monotonic() < deadline, f"job {job_id} still running after {timeout_s}s:\n" \
                                            + client.get_job_logs(job_id)[-3000:]
        time.sleep(1)
    return str(client.get_job_status(job_id))


def wait_until(condition, what: str, timeout_s: float = 240, poll_s: float = 0.3):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)
    return value


# -- reading the records back --------------------------------------------------------------------------------
def mlflow_get(cluster: Cluster, path: str, auth=True, **params) -> requests.Response:
    return requests.get(f"{cluster.mlflow_uri}/api/2.0/mlflow/{path}", params=params, timeout=30,
                        auth=cluster.mlflow_auth if auth else None)


def mlflow_trial_runs(cluster: Cluster, sweep: str) -> list[dict]:
    """The sweep's child runs (not deleted), over the REST API with the sweep user's credentials."""
    experiment = mlflow_get(cluster, "experiments/get-by-name", experiment_name=sweep)
    experiment.raise_for_status()
    body = {"experiment_ids": [experiment.json()["experiment"]["experiment_id"]], "max_results": 1000,
            "filter": "tags.`samprivacy.kind` = 'trial'"}
    runs, token = [], None
    while True:
        page = requests.post(f"{cluster.mlflow_uri}/api/2.0/mlflow/runs/search", auth=cluster.mlflow_auth,
                             json=body | ({"page_token": token} if token else {}), timeout=30)
        page.raise_for_status()
        runs += page.json().get("runs", [])
        if not (token := page.json().get("next_page_token")):
            return runs


def run_tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def metric_steps(cluster: Cluster, run_id: str, key: str) -> list[tuple[int, float]]:
    response = mlflow_get(cluster, "metrics/get-history", run_id=run_id, metric_key=key, max_results=1000)
    response.raise_for_status()
    return sorted((m["step"], m["value"]) for m in response.json().get("metrics", []))


def optuna_trials(cluster: Cluster, sweep: str) -> list:
    import optuna

    try:
        return optuna.load_study(study_name=sweep, storage=cluster.optuna_url_with_password).get_trials()
    except KeyError:  # not created yet
        return []


def tune_trials(cluster: Cluster, sweep: str) -> list:
    from ray.tune import ExperimentAnalysis

    return ExperimentAnalysis(str(cluster.shared / "tune" / sweep)).trials


def tune_progress(cluster: Cluster, sweep: str) -> list[dict]:
    """Each trial's last report in Tune's newest experiment snapshot, read while the sweep runs (trials write no
    result.json; every trial checkpoint forces a snapshot, so a checkpointed epoch is in it)."""
    try:
        trials = tune_trials(cluster, sweep)
    except Exception:  # noqa: BLE001 - no snapshot yet, or one being replaced: nothing reported yet
        return []
    return [trial.last_result for trial in trials if trial.last_result]


def assert_budget_exactly_once(cluster: Cluster, sweep: str, budget: int) -> dict:
    """MLflow trial runs = Optuna COMPLETE trials = Tune finished trials = the budget, the same trial ids, none
    twice; every run FINISHED with every epoch of its curve. Returns the MLflow runs by trial id."""
    from optuna.trial import TrialState

    runs = mlflow_trial_runs(cluster, sweep)
    mlflow_ids = [run_tags(r)["samprivacy.trial_id"] for r in runs]
    trials = optuna_trials(cluster, sweep)
    optuna_ids = [t.user_attrs["tune_trial_id"] for t in trials if t.state == TrialState.COMPLETE]
    tune = tune_trials(cluster, sweep)
    tune_ids = [t.trial_id for t in tune if t.status == "TERMINATED"]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len(tune) == len(tune_ids) == budget, [(t.trial_id, t.status) for t in tune]
    assert len(mlflow_ids) == len(optuna_ids) == budget, (mlflow_ids, optuna_ids)
    assert sorted(mlflow_ids) == sorted(optuna_ids) == sorted(tune_ids)  # the same trials, none twice
    by_trial = dict(zip(mlflow_ids, runs))
    for trial_id, run in by_trial.items():
        assert run["info"]["status"] == "FINISHED", (trial_id, run_tags(run))
    return by_trial
