"""Who gets into the local two-node cluster, checked on a running one:

- every process of every service runs as the unprivileged service user, none as root;
- no secret is ever on a process's command line (what `ps` shows every local user), while up.sh starts the
  cluster and while services restart; the secret files are the service user's alone;
- requests without the Ray token, or with a wrong one, are refused by the jobs API and the Ray client port;
- a second up.sh that would take the running cluster's name is refused before it changes anything, and a failed
  start removes what it made and nothing of the running cluster.
"""

from __future__ import annotations

import os
import pwd
import secrets
import socket
import stat
import subprocess
import sys
import time
import textwrap
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.deploy.conftest import DEPLOY, Cluster, CommandLineWatch, _unused_subnet, service_processes

pytestmark = pytest.mark.slow

SERVICE_USER = "samprivacy"


def alive_nodes(cluster: Cluster) -> int:
    nodes = requests.get(f"{cluster.dashboard}/api/v0/nodes", params={"limit": 100}, timeout=30,
                         headers={"Authorization": f"Bearer {cluster.secret('ray_token')}"})
    nodes.raise_for_status()
    return sum(n["state"] == "ALIVE" for n in nodes.json()["data"]["result"]["result"])


def netns_exists(name: str) -> bool:
    return f"{name}-worker" in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def second_up(cluster: Cluster, state: Path, **settings: str) -> subprocess.CompletedProcess:
    """up.sh for another cluster beside the running one: its own state, subnet and ports unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env |= {"SPR_STATE": str(state), "SPR_BIN": cluster.settings["SPR_BIN"], "SPR_NAME": f"t{secrets.token_hex(2)}",
            "SPR_SUBNET": _unused_subnet(), **{key: str(free_port()) for key in (
                "SPR_PG_PORT", "SPR_S3_PORT", "SPR_MLFLOW_PORT", "SPR_RAY_PORT", "SPR_DASHBOARD_PORT",
                "SPR_RAY_CLIENT_PORT", "SPR_RAY_AGENT_PORT")}} | settings
    return subprocess.run(["bash", str(DEPLOY / "up.sh")], env=env, capture_output=True, text=True, timeout=240)


# -- least privilege ----------------------------------------------------------------------------------------------
def test_every_service_process_runs_as_the_service_user(local_cluster):
    uid = pwd.getpwnam(SERVICE_USER).pw_uid
    processes = service_processes(local_cluster.state)
    assert set(processes) == {"postgres", "s3", "mlflow", "ray-head", "ray-worker"}
    for service, rows in processes.items():
        assert len(rows) >= 1, service
        assert [row for row in rows if row[1] != uid] == [], (service, rows)  # root included


def test_the_secret_files_are_the_service_user_s_alone(local_cluster):
    folder = local_cluster.state / "secrets"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
        assert pwd.getpwuid(path.stat().st_uid).pw_name == SERVICE_USER, path.name


def test_no_secret_was_on_a_command_line_while_up_sh_ran(local_cluster):
    assert local_cluster.secrets_on_command_lines_during_up == []


def test_no_secret_is_on_a_command_line_while_services_restart(local_cluster):
    with CommandLineWatch(local_cluster.state) as watch:
        local_cluster.service("restart", "s3")
        local_cluster.service("restart", "mlflow")
    watch.scan()
    assert watch.found == []


def test_the_watch_sees_a_secret_on_a_command_line(local_cluster):
    """The check above can fail: a process holding the token in its arguments is found."""
    token = local_cluster.secret("ray_token")
    # python keeps its arguments for its whole life (`sh -c` would exec `sleep` and drop them)
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", f"Authorization: Bearer {token}"])
    try:
        watch = CommandLineWatch(local_cluster.state)
        deadline = time.monotonic() + 10
        # Popen returns once exec has closed the child's close-on-exec pipe, but the kernel sets the new
        # command line a moment later (/proc/PID/cmdline reads empty in between): look again until it shows
        while not watch.found and time.monotonic() < deadline:
            watch.scan()
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    assert [(name, pid) for name, pid, _ in watch.found] == [("ray_token", process.pid)]


# -- the Ray token ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-token"}], ids=["no token", "wrong token"])
def test_the_jobs_api_refuses_a_request_without_the_token(local_cluster, headers):
    refused = requests.get(f"{local_cluster.dashboard}/api/jobs/", headers=headers, timeout=30)
    assert refused.status_code in (401, 403), refused.text[:300]
    submit = requests.post(f"{local_cluster.dashboard}/api/jobs/", headers=headers, timeout=30,
                           json={"entrypoint": "touch /tmp/i-was-run"})
    assert submit.status_code in (401, 403), submit.text[:300]
    allowed = requests.get(f"{local_cluster.dashboard}/api/jobs/", timeout=30,
                           headers={"Authorization": f"Bearer {local_cluster.secret('ray_token')}"})
    assert allowed.status_code == 200


CONNECT = textwrap.dedent("""
    import sys, ray
    try:
        ray.init(sys.argv[1])
        print("connected", ray.cluster_resources().get("CPU"))
    except Exception as error:  # what the client port answers
        print("refused:", type(error).__name__, str(error)[:300])
        sys.exit(3)
""")


@pytest.mark.parametrize("token", [None, "wrong"], ids=["no token", "wrong token"])
def test_the_ray_client_port_refuses_a_connection_without_the_token(local_cluster, tmp_path, token):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(tmp_path)}
    if token:
        (tmp_path / "token").write_text(token)
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "token")}
    address = f"ray://{local_cluster.head_ip}:{local_cluster.settings['SPR_RAY_CLIENT_PORT']}"
    result = subprocess.run([sys.executable, "-c", CONNECT, address], env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode != 0 and "connected" not in result.stdout, result.stdout + result.stderr[-2000:]


# -- up.sh keeps to its own -----------------------------------------------------------------------------------------
def test_a_second_up_with_the_running_cluster_s_name_is_refused_and_changes_nothing(local_cluster, tmp_path):
    name = local_cluster.settings["SPR_NAME"]
    result = second_up(local_cluster, tmp_path / "other", SPR_NAME=name)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"SPR_NAME '{name}' is in use by the local cluster in {local_cluster.state}" in result.stderr
    assert "nothing was changed" in result.stderr and result.stderr.count("error:") == 1
    assert not (tmp_path / "other").exists()
    assert netns_exists(name) and alive_nodes(local_cluster) == 2


def test_a_port_held_by_another_program_is_refused_before_anything_changes(local_cluster, tmp_path):
    with socket.socket() as squatter:  # on every address: it would answer on the head's address too
        squatter.bind(("0.0.0.0", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        name = f"t{secrets.token_hex(2)}"
        result = second_up(local_cluster, tmp_path / "other", SPR_NAME=name, SPR_MLFLOW_PORT=str(port))
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"port {port} (SPR_MLFLOW_PORT) is taken by pid {os.getpid()}" in result.stderr
    assert not (tmp_path / "other").exists() and not netns_exists(name)


def test_a_failed_start_removes_what_it_made_and_nothing_of_the_running_cluster(local_cluster, tmp_path):
    broken = tmp_path / "pgbin"  # a PostgreSQL whose initdb fails: up.sh fails after making its network
    broken.mkdir()
    for tool, code in (("postgres", 0), ("initdb", 1)):
        (broken / tool).write_text(f"#!/bin/sh\necho 'initdb: broken on purpose' >&2\nexit {code}\n")
        (broken / tool).chmod(0o755)
    name = f"t{secrets.token_hex(2)}"
    result = second_up(local_cluster, tmp_path / "other", SPR_NAME=name, SPR_PG_BIN=str(broken))
    assert result.returncode != 0 and "startup failed; stopping what this run started" in result.stderr
    assert not netns_exists(name) and not Path(f"/run/samprivacy-local/{name}").exists()
    running = local_cluster.settings["SPR_NAME"]
    assert netns_exists(running) and alive_nodes(local_cluster) == 2
    assert Path(f"/run/samprivacy-local/{running}").read_text().strip() == str(local_cluster.state)
