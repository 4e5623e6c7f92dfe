"""Test-wide settings and fixtures.

Every Ray a test starts stays on loopback. `ray_head`: a real single-node Ray cluster with token authentication.
Started like a real head node (`ray start --head --block`, dashboard on) but private to this test session:

- loopback only: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, or Ray swaps --node-ip-address 127.0.0.1 for the
  machine's network address and the GCS listens on every interface;
- free ports for the GCS, the dashboard, the Ray Client server (default 10001) and the dashboard agent
  (default 52365), so it runs beside other local clusters; a short --temp-dir (Unix socket paths <= 107 bytes);
- its own token (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH=<temp dir>/token): never reads or writes
  ~/.ray/auth_token, whose presence would otherwise decide whether `ray start` turns authentication on;
- the venv's bin first on PATH, like a cluster started from an activated venv: the job's `python` has samprivacy.

Stopping: never `ray stop`, which kills every Ray process on the machine (other tests', other people's).
`ray start` runs in a session of its own (start_new_session); teardown sends it SIGTERM (with the drain
timeout at 0 it kills the processes it started at once), then SIGKILLs whatever is left in that session and
below it (a job's driver runs in a session of its own, under a worker of ours). Linux only (/proc).
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

# A single-node Ray binds to 127.0.0.1 instead of advertising the machine's network address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# The empty MLflow database that new tracking stores copy (sweep.tracking.prepare_store): made once for the whole
# session, in a folder of its own rather than the user's ~/.cache.
os.environ.setdefault("SAMPRIVACY_CACHE", tempfile.mkdtemp(prefix="samprivacy-cache-"))

STARTUP_TIMEOUT_S = 120
STOP_GRACE_S = 15


@dataclass(frozen=True)
class RayHead:
    address: str            # the dashboard: http://127.0.0.1:<port>
    gcs_address: str        # 127.0.0.1:<port>
    token: str
    env: dict[str, str]     # for client subprocesses: token auth on, no RAY_ADDRESS
    temp_dir: Path
    log: Path


_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now on every address, for a server a test starts later. Chosen between Ray's worker ports
    (10002-19999) and the kernel's ephemeral range, never twice in a test session: a port the kernel handed out
    (as binding port 0 does) could be taken before the test's server binds it, by any process binding port 0 or
    connecting out (Ray starting beside the test); outside that range only an explicit choice can take it."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    candidates = list(range(20000, ephemeral_low)) if ephemeral_low > 21000 else []
    random.shuffle(candidates)
    for port in candidates:
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:  # every address: a listener on any of them (a local cluster's head address) holds the port
                s.bind(("", port))
            except OSError:  # in use
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # an unusual ephemeral range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, session id, start time) for every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
        if fields[0] != "Z":
            table[int(entry)] = (int(fields[1]), int(fields[3]), int(fields[19]))
    return table


def _session_tree(sid: int) -> set[tuple[int, int]]:
    """(pid, start time) of the processes in session `sid` and of all their descendants."""
    table = _proc_table()
    members = {pid for pid, (_, session, _) in table.items() if session == sid}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in members} - members
        members |= children
        grew = bool(children)
    return {(pid, table[pid][2]) for pid in members}


def _kill_survivors(processes: set[tuple[int, int]]) -> None:
    table = _proc_table()
    for pid, started in processes:
        if pid in table and table[pid][2] == started:  # the same process, not a reused pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def stop_head(process: subprocess.Popen) -> None:
    """Stop the cluster `ray start --block` (pid = session id) started, and nothing else."""
    sid = process.pid
    before = _session_tree(sid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and _session_tree(sid):
        time.sleep(0.2)
    _kill_survivors(before | _session_tree(sid))
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _dashboard_ready(address: str, token: str) -> bool:
    request = urllib.request.Request(f"{address}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def ray_head():
    if not sys.platform.startswith("linux"):
        pytest.skip("the ray_head fixture stops its cluster through /proc (Linux only)")
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        pytest.skip(f"no `ray` next to {sys.executable}")
    temp_dir = Path(tempfile.mkdtemp(prefix="spr-", dir="/tmp"))
    token_file = temp_dir / "token"
    token = secrets.token_hex(32)
    token_file.write_text(token)
    token_file.chmod(0o600)
    gcs_port, dashboard_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file),
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{ray_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    log = temp_dir / "ray-start.log"
    command = [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--dashboard-host", "127.0.0.1", "--port", str(gcs_port), "--dashboard-port", str(dashboard_port),
               "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
               "--num-cpus", "2", "--temp-dir", str(temp_dir / "r"), "--disable-usage-stats"]
    address = f"http://127.0.0.1:{dashboard_port}"
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _dashboard_ready(address, token):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`ray start --head` did not bring up a dashboard at {address}:\n"
                            + log.read_text()[-4000:])
            time.sleep(0.5)
        yield RayHead(address=address, gcs_address=f"127.0.0.1:{gcs_port}", token=token, env=env,
                      temp_dir=temp_dir, log=log)
    finally:
        stop_head(process)
        shutil.rmtree(temp_dir, ignore_errors=True)
