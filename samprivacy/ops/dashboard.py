"""optuna-dashboard on a sweep's Optuna study: Optuna's own views (history, Pareto front, parameter importance).

    dashboard_command(optuna_url, study_id, host=..., port=...) -> DashboardCommand (argv, url); the CLI runs it

Loopback unless asked: optuna-dashboard has no login and can edit the study (notes, trial states).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from samprivacy.ops.ui import LOOPBACK, ensure_port_free

DEFAULT_PORT = 8080
# optuna-dashboard's public entry point, so no console script needs to be on PATH.
_RUN = "import sys, optuna_dashboard; optuna_dashboard.run_server(sys.argv[1], host=sys.argv[2], port=int(sys.argv[3]))"


@dataclass(frozen=True)
class DashboardCommand:
    argv: list[str]
    url: str  # the study's page


def dashboard_command(optuna_url: str, study_id: int, *, host: str = LOOPBACK, port: int = DEFAULT_PORT,
                      check: bool = True) -> DashboardCommand:
    if check:
        ensure_port_free(host, port)
    shown = LOOPBACK if host in ("0.0.0.0", "::", "") else host
    base = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
    return DashboardCommand([sys.executable, "-c", _RUN, optuna_url, host, str(port)],
                            f"{base}/dashboard/studies/{study_id}")
