"""deploy/local/*.sh without starting anything: they parse, and a bad setting is refused with one message that
names it, before any change to the machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LOCAL = Path(__file__).resolve().parents[2] / "deploy" / "local"
BIN = str(Path(sys.executable).parent)


def run(script: str, *args: str, tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPR_STATE": str(tmp_path / "state"), "SPR_BIN": BIN, **settings}
    return subprocess.run(["bash", str(LOCAL / script), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("script", sorted(p.name for p in LOCAL.glob("*.sh")))
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(LOCAL / script)], capture_output=True).returncode == 0


@pytest.mark.parametrize("setting, value, says", [
    ("SPR_SUBNET", "192.168.1", "SPR_SUBNET must be the first three numbers of a 10.x.y.0/24 network"),
    ("SPR_SUBNET", "10.300.0", "SPR_SUBNET must be"),
    ("SPR_NAME", "Bad_Name", "SPR_NAME must be 1-8 lowercase letters or digits"),
    ("SPR_USER", "root", "SPR_USER must be an ordinary user name (not root)"),
    ("SPR_MLFLOW_PORT", "50x0", "SPR_MLFLOW_PORT must be a positive whole number"),
    ("SPR_RAY_PORT", "12000", "inside Ray's worker port range"),
    ("SPR_BIN", "/nonexistent", "no ray in SPR_BIN=/nonexistent"),
])
def test_up_refuses_a_bad_setting_before_changing_anything(tmp_path, setting, value, says):
    result = run("up.sh", tmp_path=tmp_path, **{setting: value})
    assert result.returncode == 2
    assert says in result.stderr and result.stderr.count("error:") == 1
    assert not (tmp_path / "state").exists()  # nothing written, no namespace made


def test_down_names_the_state_folder_it_could_not_find(tmp_path):
    result = run("down.sh", tmp_path=tmp_path)
    assert result.returncode == 2 and f"no local cluster in {tmp_path / 'state'}" in result.stderr
    assert "set SPR_STATE to the folder up.sh used" in result.stderr


@pytest.mark.parametrize("args, says", [
    (("restart", "redis"), "unknown service 'redis'; use one of postgres s3 mlflow ray-head ray-worker"),
    (("restart",), "usage: service.sh start|stop|restart|kill SERVICE"),
])
def test_service_refuses_what_it_does_not_know(tmp_path, args, says):
    result = run("service.sh", *args, tmp_path=tmp_path)
    assert result.returncode == 2 and says in result.stderr


def test_down_refuses_an_unknown_flag(tmp_path):
    result = run("down.sh", "--force", tmp_path=tmp_path)
    assert result.returncode == 2 and "usage: down.sh [--purge]" in result.stderr


def test_the_ray_nodes_command_lines_hold_no_secret(tmp_path):
    """`ray_env` is the `env` command every Ray node starts through: its arguments are a command line that any
    user can read (for the moment before `env` execs), so the MLflow password goes into the environment only.
    (The cluster tests watch every command line while the cluster starts; this catches it without the race.)"""
    secrets = tmp_path / "state" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "mlflow_password").write_text("the-password-7f3a")
    script = f'source "{LOCAL}/lib.sh"; SECRETS="{secrets}"; ray_env; printf "%s\\n" "${{RAY_ENV[@]}}"'
    env = {**os.environ, "SPR_STATE": str(tmp_path / "state"), "SPR_BIN": BIN}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "MLFLOW_TRACKING_USERNAME=sweeper" in result.stdout.splitlines()
    assert "the-password-7f3a" not in result.stdout
    starts = (LOCAL / "lib.sh").read_text()
    assert starts.count('MLFLOW_TRACKING_PASSWORD="$(secret mlflow_password)" setsid "${RAY_ENV[@]}"') == 2


def test_a_process_that_exits_while_its_tree_is_read_is_left_out_not_fatal(tmp_path):
    """`tree` reads the processes below a service, then each one's start time; one that exits in between is
    left out. It used to end the loop on a failed `&&`, so under `set -e` `service.sh stop` exited 1 with no
    message whenever the last process listed was gone (a drill's worker node, exiting as its head died). A pid
    that no longer exists is the same case, every time."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    script = f'source "{LOCAL}/lib.sh"; snapshot=$(tree {gone.pid}); echo "survived [$snapshot]"; tree $$ | wc -l'
    env = {**os.environ, "SPR_STATE": str(tmp_path / "state"), "SPR_BIN": BIN}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    survived, live = result.stdout.splitlines()
    assert survived == "survived []" and int(live) >= 1  # a living tree is still read (this shell at least)
