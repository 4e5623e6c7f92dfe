"""`SweepSearch`: Ray Tune's searcher for a sweep, a thin adapter between Tune and the proposal book
(proposing.Proposer): Tune asks it for a trial's config and tells it how trials ended; it pickles with Tune's
experiment snapshots. Optuna, the study and MLflow are the book's business."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray.tune.search import Searcher

from samprivacy.sweep.progress import watch
from samprivacy.sweep.proposing import Proposer, Snapshot, running_units
from samprivacy.sweep.space import suggest_params
from samprivacy.sweep.trial import SweepContext


# The trials of the Tune experiment the runner is restoring (compat.tune_trials), while it restores and runs it:
# Tune unpickles its searcher itself and takes no arguments for it.
_restoring: dict[str, tuple[str, dict]] | None = None


@contextmanager
def restoring(trials: dict[str, tuple[str, dict]] | None) -> Iterator[None]:
    """Around `Tuner.restore(...).fit()`: the searcher Tune restores takes which trials run from `trials`."""
    global _restoring
    _restoring = trials
    try:
        yield
    finally:
        _restoring = None


class SweepSearch(Searcher):
    """Ray Tune's searcher for a sweep (one per Tune experiment; a long sweep runs several, see runner).

    `segment_size`: at most this many Tune trials in this experiment, then FINISHED (what is queued carries
    over to the next experiment's searcher through the study).

    It limits the trials running at once itself (`set_max_concurrency`), so that one record says which Tune
    trials run: Tune's ConcurrencyLimiter would keep a second one, in a file of its own, which a kill during
    Tune's copy of a snapshot to storage can leave from another moment (a trial it counts forever stalls the
    experiment)."""

    def __init__(self, ctx: SweepContext, optuna_url: str, segment_size: int | None = None) -> None:
        super().__init__()  # no metric/mode: several objectives, checked by the book (strict metric checking is off)
        self.ctx, self.optuna_url, self.segment_size = ctx, optuna_url, segment_size
        self.finished = False  # told Tune FINISHED: its experiment ended by itself (not by Ctrl-C / SIGUSR1)
        self.launched = 0  # Tune trials of this experiment
        self.restored: Snapshot = {}  # the snapshot Tune restored this searcher from, until it connects
        self.proposer: Proposer | None = None
        self.max_concurrent: int | None = None
        self.running: set[str] = set()  # Tune trials of this experiment that have not ended

    def next_segment(self) -> SweepSearch:
        """The searcher of the next Tune experiment of this driver: the same book, study and queue (no rebuild,
        whose cost grows with the sweep). Call after `flush`, once this experiment has returned."""
        follower = SweepSearch(self.ctx, self.optuna_url, self.segment_size)
        follower.proposer = self.proposer
        return follower

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True  # Tune's ConcurrencyLimiter leaves the limit to this searcher

    def connect(self) -> Proposer:
        """The proposal book, built from the study (and the restored snapshot) on first use."""
        if self.proposer is None:
            self.launched = self.restored.get("launched", self.launched)
            # the suggestion is looked up here at each proposal: a drill replaces search.suggest_params to kill
            # a driver between ask() and its first suggestion (tests/sweep/test_resume.py)
            self.proposer = Proposer(self.ctx, self.optuna_url, self.restored,
                                     suggest=lambda trial, spec: suggest_params(trial, spec), tune=_restoring)
            # a restored experiment: what Tune runs again (by its own record where the runner read it)
            self.running = (set(running_units(_restoring)) if _restoring is not None
                            else set(self.restored.get("live", {})))
            if (w := watch(self.ctx.spec.name)) is not None:
                w.search = self
        return self.proposer

    # -- pickling: Tune stores the searcher in tuner.pkl and its state in each snapshot ------------------------
    def _snapshot(self) -> Snapshot:
        return self.restored if self.proposer is None else self.proposer.snapshot() | {"launched": self.launched}

    def __getstate__(self) -> dict[str, Any]:
        return {"ctx": self.ctx, "optuna_url": self.optuna_url, "segment_size": self.segment_size,
                "restored": self._snapshot()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["ctx"], state["optuna_url"], state["segment_size"])  # type: ignore[misc]
        self.restored = state["restored"]

    def save(self, checkpoint_path: str) -> None:
        if self.proposer is not None:
            self.proposer.snapshot_saved()
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self._snapshot(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.restored = pickle.load(f)
        self.proposer = None

    # -- Tune's side ---------------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | str | None:  # type: ignore[override]  # Tune's own FINISHED is a str
        proposer = self.connect()
        proposer.tell_due()
        if self.segment_size is not None and self.launched >= self.segment_size:
            self.finished = True  # this Tune experiment is full; the runner starts the next one
            return Searcher.FINISHED
        if self.max_concurrent is not None and len(self.running) >= self.max_concurrent:
            return None  # Tune asks again once a trial has ended
        params = proposer.next_unit(trial_id)
        if params is None:
            self.finished = True
            return Searcher.FINISHED
        self.launched += 1
        self.running.add(trial_id)
        return params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        proposer = self.connect()  # first: a restored searcher's first call sets `running` from Tune's record
        self.running.discard(trial_id)
        proposer.finish(trial_id, result, error)

    # -- the driver's side ---------------------------------------------------------------------------------
    def has_work(self) -> bool:
        return self.connect().has_work()

    def flush(self) -> None:
        """Tell Optuna everything that ended: call once Tune has returned (its final snapshot is on storage)."""
        if self.proposer is not None:
            self.proposer.flush()

    def progress(self) -> dict:
        return self.connect().progress()
