"""The sweep's live metrics, exported from the trials through Ray's metrics API (`ray.util.metrics`).

Ray serves them with its own metrics on each node's metrics port (Prometheus names get the prefix `ray_`;
counters also the suffix `_total`); dashboards/ has the scrape configuration and a Grafana dashboard. Tags:
`sweep` on every metric, so one Prometheus serves many sweeps.

    ray_samprivacy_trial_running{sweep, trial}                 1 while a trial trains and attacks, then 0
    ray_samprivacy_trials_finished_total{sweep, state}         complete | failed (diverged, bad input) | error (retried)
    ray_samprivacy_epochs_total{sweep, optimizer}              rate(...) = epochs per second
    ray_samprivacy_objective{sweep, trial, objective, direction}  a finished trial's objective values; max/min by
                                                               objective over trials = the best so far
"""

from __future__ import annotations

from functools import lru_cache

from ray.util import metrics


@lru_cache(maxsize=1)
def _metrics() -> dict:
    # Created once per worker process (a Ray metric registers itself with the process's core worker).
    return {
        "running": metrics.Gauge("samprivacy_trial_running", "1 while the trial runs, 0 after", ("sweep", "trial")),
        "finished": metrics.Counter("samprivacy_trials_finished", "trials that ended, by state", ("sweep", "state")),
        "epochs": metrics.Counter("samprivacy_epochs", "training epochs completed", ("sweep", "optimizer")),
        "objective": metrics.Gauge("samprivacy_objective", "a finished trial's objective value",
                                   ("sweep", "trial", "objective", "direction")),
    }


class TrialMetrics:
    """One trial's view of the sweep's metrics."""

    def __init__(self, sweep: str, trial: str, optimizer: str):
        self.sweep, self.trial, self.optimizer = sweep, trial, optimizer
        self._m = _metrics()

    def started(self) -> None:
        self._m["running"].set(1, {"sweep": self.sweep, "trial": self.trial})

    def epoch(self) -> None:
        self._m["epochs"].inc(1, {"sweep": self.sweep, "optimizer": self.optimizer})

    def finished(self, state: str, objectives: dict[str, tuple[float, str]] | None = None) -> None:
        """state: complete | failed | error; objectives: name -> (value, "max" | "min")."""
        self._m["running"].set(0, {"sweep": self.sweep, "trial": self.trial})
        self._m["finished"].inc(1, {"sweep": self.sweep, "state": state})
        for name, (value, direction) in (objectives or {}).items():
            self._m["objective"].set(float(value), {"sweep": self.sweep, "trial": self.trial, "objective": name,
                                                    "direction": "max" if direction.startswith("max") else "min"})
