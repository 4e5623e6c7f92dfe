"""What a running sweep shows: the progress line (the CLI's `on_progress`) and `<workdir>/progress.json`, which
`samprivacy status` reads while the driver runs; and which trial runs ended, for the driver's copy of the results
(publish.LiveResults).

Counts come from memory, never from a whole-study read: the searcher's book (complete, failed, duplicates,
proposals, front size) and a Tune callback that sees trials start and end (running; pending is a trial Tune has
but has not started, e.g. one waiting for resources). Tune pickles its callbacks and searchers and a resume
unpickles them, so both find the driver's `Watch` by the sweep's name.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune.experiment import Trial

from samprivacy.files import write_json_atomic

if TYPE_CHECKING:
    from samprivacy.sweep.publish import LiveResults
    from samprivacy.sweep.search import SweepSearch

_WATCHES: dict[str, "Watch"] = {}
FILE_PERIOD_S = 2.0


class Watch:
    def __init__(self, progress_file: Path, on_progress: Callable[[dict], None] | None, note: str | None,
                 period_s: float = 1.0):
        self.progress_file, self.on_progress, self.note, self.period_s = progress_file, on_progress, note, period_s
        self.search: SweepSearch | None = None  # the SweepSearch of the Tune experiment running now
        self.results: LiveResults | None = None  # the finished trial runs, read as trials end
        self.running: set[str] = set()
        self._shown = self._written = 0.0

    def status(self) -> dict:
        status: dict[str, Any] = self.search.progress() if self.search is not None else {}
        live: set[str] = set(self.search.connect().live) if self.search is not None else set()
        running = len(self.running & live)
        return status | {"running": running, "pending": len(live) - running, "note": self.note}

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.search is None or (not force and now - self._shown < self.period_s):
            return  # (no searcher yet: a restored experiment whose searcher has not been asked anything)
        self._shown = now
        status = self.status()
        if self.on_progress is not None:
            self.on_progress(status)
        if force or now - self._written >= FILE_PERIOD_S:
            self._written = now
            write_json_atomic(self.progress_file, status | {"time": time.time(), "pid": os.getpid(),
                                                            "host": socket.gethostname()})


def watch(name: str) -> Watch | None:
    return _WATCHES.get(name)


@contextmanager
def watching(name: str, progress_file: Path, on_progress: Callable[[dict], None] | None,
             note: str | None) -> Iterator[Watch]:
    _WATCHES[name] = w = Watch(progress_file, on_progress, note)
    try:
        yield w
    finally:
        _WATCHES.pop(name, None)
        if w.results is not None:  # (an interrupted sweep: its reader stops too)
            w.results.finish()
        progress_file.unlink(missing_ok=True)  # no driver: `status` reads the study alone


class TrialStates(tune.Callback):
    """Tells the sweep's Watch which trials run (picklable: it holds only the sweep's name)."""

    def __init__(self, name: str):
        self.name = name

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if (w := watch(self.name)) is not None:
            w.running.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if (w := watch(self.name)) is not None:
            w.running.discard(trial.trial_id)
            if w.results is not None:
                w.results.ended(trial.config.get("mlflow_run_id"), trial.trial_id)

    on_trial_error = on_trial_complete

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if (w := watch(self.name)) is not None:
            w.tick()
