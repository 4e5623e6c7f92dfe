"""The proposal book of a sweep's driver: Optuna proposals in, units of work out, outcomes told back.

Each Optuna trial is a proposal (a configuration); `units.Book` decides which of its seeds train (one Tune trial
each), which reuse an earlier measurement, and which wait for one that is training. No Optuna trial is left
RUNNING, and the study (study.py) is the record a restarted driver rebuilds the book from: open proposals are
taken up again, their units train unless a restored Tune trial trains them or their MLflow run finished.

When Optuna hears: a proposal answered by earlier measurements (a duplicate) is told at once. A proposal that
a unit completes is told once Tune's experiment snapshot recording that unit's end is on storage (the snapshot
after the next), so that what Optuna holds, Tune's experiment state holds too, even after a SIGKILL. The book,
in memory, knows at once: the budget, duplicates and progress never wait for Optuna. Between snapshots the
ended units travel in the searcher's snapshot (`snapshot`, then `restored` state for the next driver).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import optuna

from samprivacy.spec import SweepSpec
from samprivacy.sweep.space import make_sampler, method_of, proposal_config_id, suggest_params, unit_seeds
from samprivacy.sweep.study import (ATTR_DUPLICATE_OF, ATTR_TUNE_TRIAL, ATTR_UNITS, objective_values, open_study,
                                    read_proposals, units_attr)
from samprivacy.sweep.tracking import Tracker
from samprivacy.sweep.trial import SweepContext, trial_config
from samprivacy.sweep.units import Book, Front, Outcome, Proposal, Unit

# (Tune trial id, unit, outcome, proposal numbers it completed): a unit that ended, until Optuna hears it
Ended = tuple[str, Unit, Outcome, list[int]]
# What a driver's snapshot holds (O(concurrency)): live units by Tune trial id, and units that ended unheard
Snapshot = dict[str, Any]


def running_units(tune: dict[str, tuple[str, dict]]) -> dict[str, tuple[int, int]]:
    """Tune trial id -> (proposal, seed) of every trial a restored Tune experiment runs again: all but those that
    ended (TERMINATED; errored ones are resumed too)."""
    return {trial_id: (int(config["optuna_trial"]), int(config["seed"])) for trial_id, (status, config) in tune.items()
            if status != "TERMINATED" and "optuna_trial" in config and "seed" in config}


class Proposer:
    """Between Tune and Optuna: the study, the book, the queue of units, and what Optuna has yet to hear."""

    def __init__(self, ctx: SweepContext, optuna_url: str, restored: Snapshot,
                 suggest: Callable[[optuna.Trial, SweepSpec], dict[str, Any]] = suggest_params,
                 tune: dict[str, tuple[str, dict]] | None = None) -> None:
        """restored: the searcher's snapshot a restarted driver's Tune gave back ({} for a new experiment).
        tune: that experiment's trials as Tune restores them (trial id -> (status, config), compat.tune_trials):
        where given, which Tune trials still train comes from it, not from the searcher's snapshot. Tune copies
        a snapshot's files to storage one by one after writing them, so a kill can leave the searcher's state of
        another moment than Tune's; Tune's own record is what it will run."""
        spec = self.spec = ctx.spec
        self.ctx, self.suggest = ctx, suggest  # suggest: define-by-run parameters of a new proposal
        self.handle = open_study(spec, optuna_url, make_sampler(spec))
        self.study = self.handle.study
        if (asked := len(self.study.get_trials(deepcopy=False))) and spec.sampler.seed is not None:
            # a restarted driver: a sampler seeded as at the start would propose the same points again
            reseeded = spec.sampler.model_copy(update={"seed": spec.sampler.seed + asked})
            self.study.sampler = make_sampler(spec.model_copy(update={"sampler": reseeded}))
        self.tracker = Tracker(ctx.mlflow_uri, spec.name) if ctx.mlflow_uri else None
        self.book, self.front = Book(spec.n_trials, spec.grid_size()), Front(spec.objective_modes)
        self.queue: deque[Unit] = deque()
        self.live: dict[str, Unit] = {}  # Tune trial id -> the unit it trains
        self.params: dict[int, dict] = {}  # open proposals' Optuna params
        self.runs: dict[str, str] = {}  # unit key -> its MLflow run, while it trains
        self.reuse: dict[str, str] = {}  # unit key -> the run of an earlier attempt, for a unit taken up again
        self.ended: list[Ended] = []  # since the last snapshot
        self.recorded: list[Ended] = []  # recorded by the last snapshot
        self.due: list[Ended] = []  # on storage: Optuna may hear them
        # heard of but not by Optuna: ends of units whose own proposal is still open (its other seeds train). They
        # stay in every snapshot until Optuna holds them (with the proposal's `units`), or a restart would train
        # them again.
        self.held: list[Ended] = []
        live = restored.get("live", {}) if tune is None else running_units(tune)
        self._rebuild(live, restored.get("ended", []))

    def _rebuild(self, live: dict[str, tuple[int, int]], ended: list) -> None:
        record = read_proposals(self.handle, self.spec)
        for proposal in record.settled:
            self.book.record(proposal, duplicate=proposal.duplicate_of is not None)
            if proposal.duplicate_of is None and proposal.done and (means := proposal.result()[0]) is not None:
                self.front.add(means)
        open_ = {proposal.number: proposal for proposal, _ in record.open}
        known: dict[int, dict[int, Outcome]] = {n: {} for n in open_}  # open proposals' seeds a snapshot ended
        for trial_id, number, seed, values, reason in ended:
            if number in open_:
                known[number][seed] = Outcome(None if values is None else tuple(values), reason, trial_id)
        for trial_id, (number, seed) in live.items():  # Tune restored these trials: they train their units
            if number in open_ and seed not in known[number]:
                unit = Unit(number, open_[number].config_id, seed)
                self.book.training(unit)
                self.live[trial_id] = unit
        for proposal, params in record.open:
            self.params[proposal.number] = params
            # recorded a duplicate: one still; otherwise decided again (measured unless it trains nothing of its
            # own: a driver killed before a duplicate's record leaves no trace of that decision)
            taken, new = self._take(proposal.number, proposal.config_id, proposal.seeds,
                                    duplicate=True if proposal.duplicate_of is not None else None,
                                    duplicate_of=proposal.duplicate_of, outcomes=known[proposal.number])
            if proposal.duplicate_of is None and taken.duplicate_of is not None and not taken.done:
                # decided a waiting duplicate again: record it, as _propose does, before another kill can forget
                self.handle.set_user_attr(proposal.number, ATTR_DUPLICATE_OF, taken.duplicate_of)
            for unit in new:  # an earlier attempt's run: finished (the trial settles at once) or to continue
                if self.tracker is not None and (run := self.tracker.unit_run(unit.config_id, unit.seed)):
                    self.reuse[unit.key] = run
        # the snapshot's ends of proposals still open: carried on in this driver's snapshots until Optuna holds them
        self.held = [(trial_id, Unit(number, open_[number].config_id, seed),
                      Outcome(None if values is None else tuple(values), reason, trial_id), [])
                     for trial_id, number, seed, values, reason in ended
                     if number in open_ and self.book.is_open(number)]

    def snapshot(self) -> Snapshot:
        ended = [(tid, u.proposal, u.seed, o.values, o.reason)
                 for tid, u, o, _ in self.held + self.due + self.recorded + self.ended]
        return {"live": {tid: (u.proposal, u.seed) for tid, u in self.live.items()}, "ended": ended}

    def snapshot_saved(self) -> None:
        """Tune saved a snapshot: what ended before the previous one is now on storage with it, so Optuna may
        hear it (at the next call, not inside the snapshot, whose duration sets Tune's snapshot period)."""
        self.due += self.recorded
        self.recorded, self.ended = self.ended, []

    def has_work(self) -> bool:
        """Whether a new Tune experiment would get trials: units queued, or more proposals wanted."""
        return bool(self.queue) or self.book.stop_reason() is None

    def next_unit(self, trial_id: str) -> dict | None:
        """The config of the next unit to train as Tune trial `trial_id`, or None when the book wants no more."""
        self.tell_due()
        while not self.queue:
            if self.book.stop_reason() is not None:
                return None
            self._propose()
        unit = self.queue.popleft()
        params = {**self.params[unit.proposal], "seed": unit.seed, "optuna_trial": unit.proposal,
                  "config_id": unit.config_id}
        if self.tracker is not None:
            method = method_of(self.spec, params)
            params["mlflow_run_id"] = self.runs[unit.key] = self.tracker.unit_trial_run(
                trial_id, self.ctx.parent_run_id or "", unit, f"{method}-{trial_id}", self.reuse.pop(unit.key, None))
        self.live[trial_id] = unit
        return params

    def finish(self, trial_id: str, result: dict | None, error: bool) -> None:
        unit = self.live.pop(trial_id, None)
        if unit is not None:
            values, reason = objective_values(result, list(self.spec.objective_names), error)
            outcome = Outcome(None if values is None else tuple(values), reason, trial_id, self.runs.pop(unit.key, None))
            done = self.book.finish(unit, outcome)  # the budget, duplicates and progress know at once
            self.ended.append((trial_id, unit, outcome, done))
        self.tell_due()

    def tell_due(self) -> None:
        due, self.due = self.due, []
        for *_, done in due:
            for number in done:
                self._tell(self.book.close(number))
        if due or self.held:
            self.held = [e for e in self.held + due if self.book.is_open(e[1].proposal)]

    def flush(self) -> None:
        """Tell Optuna everything that ended: call once Tune has returned (its final snapshot is on storage)."""
        self.due += self.recorded + self.ended
        self.recorded, self.ended = [], []
        self.tell_due()

    def _propose(self) -> None:
        trial = self.study.ask()
        params = self.suggest(trial, self.spec)
        seeds = unit_seeds(self.spec, params)
        self.params[trial.number] = params
        proposal, _ = self._take(trial.number, proposal_config_id(self.spec, params, seeds), seeds)
        if proposal.duplicate_of is not None and not proposal.done:  # it waits: say so before a crash can forget
            trial.set_user_attr(ATTR_DUPLICATE_OF, proposal.duplicate_of)

    def _take(self, number: int, cid: str, seeds: tuple[int, ...], **known: Any) -> tuple[Proposal, list[Unit]]:
        proposal, new = self.book.propose(number, cid, seeds, **known)
        self.queue.extend(new)
        if proposal.done:  # answered by measurements Optuna already holds (or a snapshot recorded): tell now
            self._tell(proposal)
        return proposal, new

    def _tell(self, proposal: Proposal) -> None:
        means, _, reason = proposal.result()
        params = self.params.pop(proposal.number, None)
        if proposal.duplicate_of is not None:
            self.handle.set_user_attr(proposal.number, ATTR_DUPLICATE_OF, proposal.duplicate_of)
        elif self.spec.repeats > 1:
            self.handle.set_user_attr(proposal.number, ATTR_UNITS, units_attr(proposal))
        else:
            self.handle.set_user_attr(proposal.number, ATTR_TUNE_TRIAL, proposal.outcomes[proposal.seeds[0]].trial_id)
        if self.tracker is not None and params is not None:
            config = trial_config(self.ctx, {**params, "seed": proposal.seeds[0]}).model_dump(exclude_none=True)
            config.pop("seed")
            self.tracker.record_proposal(self.ctx.parent_run_id or "", proposal, config, self.spec.objective_names,
                                         self.spec.repeats, self.runs)
        if means is not None:
            self.study.tell(proposal.number, means)
            if proposal.duplicate_of is None:
                self.front.add(means)
        else:
            self.handle.fail(proposal.number, reason or "failed")

    def progress(self) -> dict:
        book = self.book
        return {"budget": book.budget, "complete": book.complete, "failed": book.failed,
                "duplicates": book.duplicates, "proposals": book.proposals, "waiting": book.waiting,
                "front_size": len(self.front), "stop_reason": book.stop_reason() or None}
