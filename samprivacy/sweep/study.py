"""The Optuna study as a sweep's record: one trial per proposal, ending COMPLETE or FAIL (no Ray needed).

User attributes of a proposal: `tune_trial_id` (one seed: the Tune trial that measured it), `units` (repeats > 1:
per seed its values, failure and Tune trial), `duplicate_of` (the proposal whose measurement it reuses, written
as soon as it is decided), `copy_of` (a COMPLETE copy of a proposal that failed and was finished by a resume:
Optuna never reopens a finished trial), `fail_reason`. The study's own `stop_reason` says why a sweep ended
before its budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from samprivacy.errors import ConfigError
from samprivacy.spec import SweepSpec
from samprivacy.sweep.retry import ResilientRDBStorage, retry, schema_made_beside
from samprivacy.sweep.space import directions, missing_params, proposal_config_id, unit_seeds
from samprivacy.sweep.units import Outcome, Proposal

ATTR_TUNE_TRIAL = "tune_trial_id"
ATTR_FAIL_REASON = "fail_reason"
ATTR_UNITS = "units"
ATTR_DUPLICATE_OF = "duplicate_of"
ATTR_COPY_OF = "copy_of"
STOP_REASON = "stop_reason"
STALE = "stale: the sweep driver stopped before this trial was recorded"
# A proposal whose driver died between Optuna's ask() and the end of its suggestions: no configuration, so it is
# no measurement and no failure; it does not count against `trials` and every reader of the study skips it.
INTERRUPTED = "interrupted before its parameters were chosen: the sweep driver stopped inside the proposal"


def bookkeeping_failure(reason: str | None) -> bool:
    """Whether a FAIL's reason is bookkeeping (stale, or interrupted before its parameters), not a failed trial."""
    return (reason or "").startswith(("stale", "interrupted before its parameters"))


SCHEMA_RACE_S = 30.0  # how long opening a new database may keep meeting another process creating its tables


def optuna_storage(url: str) -> optuna.storages.BaseStorage:
    """RDB storage (SQLite, PostgreSQL, MySQL). SQLite waits on a locked file instead of failing at once; a
    database server may restart mid-sweep: pooled connections are checked before use and calls are retried.
    Opening a new database creates Optuna's tables; two processes opening it at once (a driver starting while
    `status` or a script reads the study) both try, and the one that loses sees a duplicate: it opens again and
    finds them made (a repeated run of the resume tests saw a driver die of it)."""
    if url.startswith("sqlite"):
        def make() -> optuna.storages.BaseStorage:
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    else:
        def make() -> optuna.storages.BaseStorage:
            return ResilientRDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    return retry(make, schema_made_beside, "creating Optuna's tables", outage_s=SCHEMA_RACE_S)


@dataclass(frozen=True)
class SweepStudy:
    """A sweep's Optuna study with the storage it was opened on. Optuna's public storage methods address a
    trial by the study's id and the trial's number; a Study object does not expose its storage, so it is kept
    here, and the id is asked of the storage by name."""

    study: optuna.Study
    storage: BaseStorage
    study_id: int

    @classmethod
    def on(cls, study: optuna.Study, storage: BaseStorage) -> "SweepStudy":
        return cls(study, storage, storage.get_study_id_from_name(study.study_name))

    def set_user_attr(self, number: int, key: str, value: Any) -> None:
        """A user attribute of trial `number`, which must not be finished yet (set attributes, then tell): the
        driver holds a proposal by its number, not as an optuna.Trial."""
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        self.storage.set_trial_user_attr(trial_id, key, value)

    def fail(self, number: int, reason: str) -> None:
        self.set_user_attr(number, ATTR_FAIL_REASON, reason)
        self.study.tell(number, state=TrialState.FAIL)


def open_study(spec: SweepSpec, url: str, sampler: BaseSampler) -> SweepStudy:
    """The sweep's study, created on first use."""
    storage = optuna_storage(url)
    study = optuna.create_study(study_name=spec.name, storage=storage, directions=directions(spec), sampler=sampler,
                                load_if_exists=True)
    return SweepStudy.on(study, storage)


def load_study(spec_name: str, url: str) -> SweepStudy:
    storage = optuna_storage(url)
    try:
        return SweepStudy.on(optuna.load_study(study_name=spec_name, storage=storage), storage)
    except KeyError:  # the sweep was saved but its study not created yet (it is starting, or died starting)
        raise ConfigError(f"sweep '{spec_name}' has no Optuna study yet in {url}; wait for it to start, or "
                          f"`samprivacy resume {spec_name}` if its driver died") from None


@dataclass
class StudyRecord:
    """What a (re)starting driver reads from the study: the settled proposals with their outcomes, and the open
    ones (RUNNING: a driver stopped before it told them) with their Optuna params."""

    settled: list[Proposal]
    open: list[tuple[Proposal, dict[str, Any]]]


def read_proposals(handle: SweepStudy, spec: SweepSpec) -> StudyRecord:
    """Every proposal of the study, in order. A RUNNING trial whose driver died before its parameters were all
    set is failed here as INTERRUPTED (an earlier rebuild, e.g. a restored segment's, may have done so): no
    configuration, not proposed, not measured, not against the budget."""
    trials = sorted(handle.study.get_trials(deepcopy=False), key=lambda t: t.number)
    copies = {t.user_attrs[ATTR_COPY_OF]: t for t in trials
              if ATTR_COPY_OF in t.user_attrs and t.state == TrialState.COMPLETE}
    record = StudyRecord([], [])
    for t in trials:
        if ATTR_COPY_OF in t.user_attrs or t.state not in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING):
            continue
        if missing_params(spec, t.params):
            if t.state == TrialState.RUNNING:
                handle.fail(t.number, INTERRUPTED)
            continue
        seeds = unit_seeds(spec, t.params)
        proposal = Proposal(t.number, proposal_config_id(spec, t.params, seeds), seeds,
                            duplicate_of=t.user_attrs.get(ATTR_DUPLICATE_OF))
        if t.state == TrialState.RUNNING:
            record.open.append((proposal, dict(t.params)))
        else:
            proposal.outcomes = proposal_outcomes(copies.get(t.number, t), seeds)
            record.settled.append(proposal)
    return record


def proposal_outcomes(trial: FrozenTrial, seeds: tuple[int, ...]) -> dict[int, Outcome]:
    """A proposal's per-seed outcomes as the study holds them (`units`, else its own state for one seed)."""
    if ATTR_UNITS in trial.user_attrs:
        return {int(seed): Outcome(tuple(u["values"]) if u.get("values") else None, u.get("reason"), u.get("trial"))
                for seed, u in trial.user_attrs[ATTR_UNITS].items()}
    if len(seeds) != 1 or trial.state == TrialState.RUNNING:
        return {}
    trial_id = trial.user_attrs.get(ATTR_TUNE_TRIAL)
    if trial.state == TrialState.COMPLETE:
        return {seeds[0]: Outcome(tuple(trial.values), None, trial_id)}
    return {seeds[0]: Outcome(None, trial.user_attrs.get(ATTR_FAIL_REASON) or "failed", trial_id)}


def units_attr(proposal: Proposal) -> dict:
    return {str(seed): {"values": list(o.values) if o.values is not None else None, "reason": o.reason, "trial": o.trial_id}
            for seed, o in proposal.outcomes.items()}


def complete_late(study: optuna.Study, spec: SweepSpec, number: int, late: dict[int, tuple[str, list[float]]]) -> bool:
    """Units of proposal `number` that errored (and so failed its proposal) finished after a resume: `late` maps
    each such seed to (its Tune trial id, its values), all of them at once (two seeds that errored complete the
    proposal only together). Optuna never reopens a finished trial: when every seed now has values, a COMPLETE
    copy with `copy_of` is added. Returns True if a copy was added."""
    trials = study.get_trials(deepcopy=False)
    if not late or any(t.user_attrs.get(ATTR_COPY_OF) == number for t in trials):
        return False
    failed = next((t for t in trials if t.number == number and t.state == TrialState.FAIL), None)
    if failed is None or ATTR_DUPLICATE_OF in failed.user_attrs:
        return False
    seeds = unit_seeds(spec, failed.params)
    proposal = Proposal(number, "", seeds, outcomes=proposal_outcomes(failed, seeds))
    for seed, (tune_trial_id, values) in late.items():
        proposal.outcomes[seed] = Outcome(tuple(values), None, tune_trial_id)
    means, _, reason = proposal.result()
    if reason is not None:
        return False
    attrs = {k: v for k, v in failed.user_attrs.items() if k != ATTR_FAIL_REASON} | {ATTR_COPY_OF: number}
    attrs |= ({ATTR_UNITS: units_attr(proposal)} if spec.repeats > 1  # one seed: its Tune trial
              else {ATTR_TUNE_TRIAL: proposal.outcomes[proposal.seeds[0]].trial_id})
    study.add_trial(optuna.trial.create_trial(params=failed.params, distributions=failed.distributions,
                                              values=means, user_attrs=attrs))
    return True


def fail_stale_trials(handle: SweepStudy, spec: SweepSpec) -> int:
    """FAIL every RUNNING trial: called once Tune has returned, when no live trial can finish one."""
    failed = 0
    for frozen in handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = INTERRUPTED if missing_params(spec, frozen.params) else STALE
        trial_id = handle.storage.get_trial_id_from_study_id_trial_number(handle.study_id, frozen.number)
        handle.storage.set_trial_user_attr(trial_id, ATTR_FAIL_REASON, reason)
        handle.storage.set_trial_state_values(trial_id, TrialState.FAIL)
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
