"""`samprivacy dashboard`: optuna-dashboard's command line on the sweep's study, loopback by default."""

from __future__ import annotations

import socket
import sys

import pytest

from samprivacy.errors import ConfigError
from samprivacy.ops.dashboard import dashboard_command


def test_the_command_runs_optuna_dashboard_on_the_studys_storage():
    command = dashboard_command("sqlite:////w/optuna.db", 3, port=8123, check=False)
    assert command.argv[0] == sys.executable and "optuna_dashboard.run_server" in command.argv[2]
    assert command.argv[3:] == ["sqlite:////w/optuna.db", "127.0.0.1", "8123"]
    assert command.url == "http://127.0.0.1:8123/dashboard/studies/3"
    assert dashboard_command("x", 1, host="0.0.0.0", port=9, check=False).url.startswith("http://127.0.0.1:9/")


def test_a_busy_port_is_reported():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="pass another --port"):
            dashboard_command("sqlite:///x", 1, port=busy.getsockname()[1])
