"""Optuna behind Ray Tune: `SweepSearch`, an `OptunaSearch` with a persistent study and its traps fixed.

Ray's OptunaSearch, as shipped, (1) leaves an Optuna trial RUNNING forever when a trial errors or reports a
missing or NaN objective (its `tell` fails and the exception is only logged), (2) shares one default study
name, and (3) on restore trusts a pickled study whose RUNNING trials may belong to Tune trials that no longer
exist. Here every Tune trial ends as exactly one finished Optuna trial (COMPLETE with finite objectives, or FAIL
with the reason in the user attribute `fail_reason`), the study is named after the sweep, and RUNNING trials
that no live Tune trial will finish are failed when the study is (re)attached.
"""

from __future__ import annotations

import functools
import math

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from samprivacy.errors import ConfigError
from samprivacy.spec import SweepSpec
from samprivacy.sweep.retry import ResilientRDBStorage
from samprivacy.sweep.space import make_sampler, suggest_params

ATTR_TUNE_TRIAL = "tune_trial_id"
ATTR_FAIL_REASON = "fail_reason"


def optuna_storage(url: str) -> optuna.storages.BaseStorage:
    """RDB storage (SQLite, PostgreSQL, MySQL). SQLite waits on a locked file instead of failing at once; a
    database server may restart mid-sweep: pooled connections are checked before use and calls are retried."""
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return ResilientRDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def load_study(spec_name: str, url: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=spec_name, storage=optuna_storage(url))
    except KeyError:  # the sweep was saved but its study not created yet (it is starting, or died starting)
        raise ConfigError(f"sweep '{spec_name}' has no Optuna study yet in {url}; wait for it to start, or "
                          f"`samprivacy resume {spec_name}` if its driver died") from None


def _define_by_run(trial: optuna.Trial, spec: SweepSpec) -> None:
    suggest_params(trial, spec)  # Tune collects the suggestions as the trial's config (flat, dotted names)


class SweepSearch(OptunaSearch):
    def __init__(self, spec: SweepSpec, optuna_url: str):
        super().__init__(
            space=functools.partial(_define_by_run, spec=spec), metric=list(spec.objective_names),
            mode=list(spec.objective_modes), sampler=make_sampler(spec), storage=optuna_storage(optuna_url),
            study_name=spec.name)
        self._optuna_url = optuna_url

    # -- the study ---------------------------------------------------------------------------------------
    def _setup_study(self, mode):
        super()._setup_study(mode)
        fail_stale_trials(self._ot_study)  # a fresh Tune run has no live trials yet

    def restore(self, checkpoint_path: str):
        super().restore(checkpoint_path)
        # Re-attach to the storage by URL (the pickled engine is gone) and re-bind the trial handles.
        self._storage = optuna_storage(self._optuna_url)
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=self._storage,
                                           sampler=self._ot_study.sampler)
        self._ot_trials = {tid: optuna.Trial(self._ot_study, t._trial_id) for tid, t in self._ot_trials.items()}
        live = {t._trial_id for tid, t in self._ot_trials.items() if tid not in self._completed_trials}
        fail_stale_trials(self._ot_study, live)

    # -- trials -----------------------------------------------------------------------------------------
    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if config is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr(ATTR_TUNE_TRIAL, trial_id)
        return {**config, "optuna_trial": ot_trial.number}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        values, reason = objective_values(result, self.metric, error)
        storage = self._ot_study._storage
        state = storage.get_trial(ot_trial._trial_id).state
        if state == TrialState.RUNNING:
            if reason is None:
                self._ot_study.tell(ot_trial, values)
            else:
                ot_trial.set_user_attr(ATTR_FAIL_REASON, reason)
                self._ot_study.tell(ot_trial, state=TrialState.FAIL)
        elif state == TrialState.FAIL and reason is None:
            record_completion(self._ot_study, trial_id, values)
        # COMPLETE already: told before the driver stopped; this is the same trial reporting again.
        self._completed_trials.add(trial_id)


def record_completion(study: optuna.Study, tune_trial_id: str, values: list[float]) -> bool:
    """Make sure Tune trial `tune_trial_id` has a COMPLETE Optuna trial with `values`.

    A trial that failed (an error, or marked stale) and then finished after a resume cannot be reopened in
    Optuna: it is recorded as a completed copy with the same params. Returns True if a copy was added.
    """
    rows = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(ATTR_TUNE_TRIAL) == tune_trial_id]
    if not rows or any(t.state == TrialState.COMPLETE for t in rows):
        return False
    failed = rows[-1]
    study.add_trial(optuna.trial.create_trial(
        params=failed.params, distributions=failed.distributions, values=values,
        user_attrs={k: v for k, v in failed.user_attrs.items() if k != ATTR_FAIL_REASON}))
    return True


def fail_stale_trials(study: optuna.Study, live: set[int] = frozenset()) -> int:
    """FAIL every RUNNING trial whose storage id is not in `live` (no Tune trial will ever finish it)."""
    storage, failed = study._storage, 0
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen._trial_id not in live:
            storage.set_trial_user_attr(frozen._trial_id, ATTR_FAIL_REASON,
                                        "stale: the sweep driver stopped before this trial was recorded")
            storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
            failed += 1
    return failed


def objective_values(result: dict | None, metrics: list[str], error: bool) -> tuple[list[float] | None, str | None]:
    """(values, None) when every objective is present and finite, else (None, the reason the trial failed)."""
    if error:
        return None, (result or {}).get("failed") or "the trial raised an error (see its error.txt in Tune storage)"
    if not result:
        return None, "the trial reported no result"
    if result.get("failed"):
        return None, str(result["failed"])
    values = []
    for metric in metrics:
        value = result.get(metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return None, f"objective `{metric}` is missing or not finite: {value!r}"
        values.append(float(value))
    return values, None
