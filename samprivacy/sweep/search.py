"""Optuna behind Ray Tune: `SweepSearch`, the Tune searcher that turns Optuna proposals into units of work.

Each Optuna trial is a proposal (a configuration); `units.Book` decides which of its seeds train (one Tune trial
each), which reuse an earlier measurement, and which wait for one that is training. No Optuna trial is left
RUNNING, and the study (see study.py) is the record a restarted driver rebuilds the book from: open proposals
are taken up again, their units train unless a restored Tune trial trains them or their MLflow run finished.

When Optuna hears: a proposal answered by earlier measurements (a duplicate) is told at once. A proposal that
a unit completes is told once Tune's experiment snapshot recording that unit's end is on storage (the snapshot
after the next), so that what Optuna holds, Tune's experiment state holds too, even after a SIGKILL. The book,
in memory, knows at once: the budget, duplicates and progress never wait for Optuna. Between snapshots the
ended units travel in the searcher's own snapshot state.
"""

from __future__ import annotations

import pickle
from collections import deque

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from samprivacy.sweep.progress import watch
from samprivacy.sweep.space import (config_from_params, config_id, directions, make_sampler, method_of,
                                    missing_params,
                                    suggest_params, unit_seeds)
from samprivacy.sweep.study import (ATTR_COPY_OF, ATTR_DUPLICATE_OF, ATTR_FAIL_REASON, ATTR_TUNE_TRIAL, ATTR_UNITS,
                                    INTERRUPTED, objective_values, optuna_storage, proposal_outcomes, units_attr)
from samprivacy.sweep.tracking import TAG_CONFIG, TAG_DUPLICATE_OF, TAG_PROPOSAL, TAG_SEED, TAG_TRIAL, Tracker
from samprivacy.sweep.trial import SweepContext, trial_config
from samprivacy.sweep.units import Book, Front, Outcome, Proposal, Unit


class SweepSearch(Searcher):
    """Ray Tune's searcher for a sweep (one per Tune experiment; a long sweep runs several, see runner).

    `segment_size`: at most this many Tune trials in this experiment, then FINISHED (what is queued carries
    over to the next experiment's searcher through the study)."""

    def __init__(self, ctx: SweepContext, optuna_url: str, segment_size: int | None = None):
        super().__init__()  # no metric/mode: several objectives, checked here (strict metric checking is off)
        self.ctx, self.optuna_url, self.segment_size = ctx, optuna_url, segment_size
        self.finished = False  # told Tune FINISHED: its experiment ended by itself (not by Ctrl-C / SIGUSR1)
        self._state: dict = {"live": {}, "launched": 0, "ended": []}
        self._connected = False

    def next_segment(self) -> "SweepSearch":
        """The searcher of the next Tune experiment of this driver: the same book, study and queue (no rebuild,
        whose cost grows with the sweep). Call after `flush`, once this experiment has returned."""
        follower = SweepSearch(self.ctx, self.optuna_url, self.segment_size)
        if self._connected:
            follower.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("_state", "launched")})
            follower.launched, follower.finished = 0, False
        return follower

    # -- pickling: Tune stores the searcher in tuner.pkl and its state in each snapshot ------------------------
    def __getstate__(self):
        return {"ctx": self.ctx, "optuna_url": self.optuna_url, "segment_size": self.segment_size,
                "_state": self._snapshot() if self._connected else self._state, "_connected": False,
                "_metric": None, "_mode": None}

    def save(self, checkpoint_path: str) -> None:
        """Tune's snapshot: what ended before the previous one is now on storage with it, so Optuna may hear
        it (at the next call, not inside the snapshot, whose duration sets Tune's snapshot period)."""
        if self._connected:
            self._due += self._recorded
            self._recorded, self._ended = self._ended, []
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self._snapshot() if self._connected else self._state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self._state = pickle.load(f)
        self._connected = False

    def _snapshot(self) -> dict:
        # O(concurrency): what is live and what ended but Optuna has not heard; the rest is in the study.
        ended = [(tid, u.proposal, u.seed, o.values, o.reason)
                 for tid, u, o, _ in self._due + self._recorded + self._ended]
        return {"live": {tid: (u.proposal, u.seed) for tid, u in self.live.items()}, "launched": self.launched,
                "ended": ended}

    # -- the book, from the study --------------------------------------------------------------------------
    def _connect(self) -> None:
        if self._connected:
            return
        spec = self.ctx.spec
        self.study = optuna.create_study(study_name=spec.name, storage=optuna_storage(self.optuna_url),
                                         directions=directions(spec), sampler=make_sampler(spec), load_if_exists=True)
        if (asked := len(self.study.get_trials(deepcopy=False))) and spec.sampler.seed is not None:
            # a restarted driver: a sampler seeded as at the start would propose the same points again
            reseeded = spec.sampler.model_copy(update={"seed": spec.sampler.seed + asked})
            self.study.sampler = make_sampler(spec.model_copy(update={"sampler": reseeded}))
        self.tracker = Tracker(self.ctx.mlflow_uri, spec.name) if self.ctx.mlflow_uri else None
        self.book, self.front = Book(spec.n_trials, spec.grid_size()), Front(spec.objective_modes)
        self.queue: deque[Unit] = deque()
        self.live: dict[str, Unit] = {}
        self.params: dict[int, dict] = {}  # open proposals' Optuna params
        self.runs: dict[str, str] = {}  # unit key -> its MLflow run, while it trains
        self.reuse: dict[str, str] = {}  # unit key -> the run of an earlier attempt, for a unit taken up again
        self._ended, self._recorded, self._due = [], [], []  # (trial id, unit, outcome, done), see save()
        self.launched = self._state["launched"]
        self._connected = True
        self._enqueued = False
        self._rebuild(self._state["live"], self._state["ended"])
        if (w := watch(spec.name)) is not None:
            w.search = self

    def has_work(self) -> bool:
        """Whether a new Tune experiment would get trials: units queued, or more proposals wanted."""
        self._connect()
        return bool(self.queue) or self.book.stop_reason() is None

    def _rebuild(self, live: dict[str, tuple[int, int]], ended: list) -> None:
        spec = self.ctx.spec
        trials = sorted(self.study.get_trials(deepcopy=False), key=lambda t: t.number)
        self._enqueued = any(t.state == TrialState.WAITING for t in trials)
        copies = {t.user_attrs[ATTR_COPY_OF]: t for t in trials
                  if ATTR_COPY_OF in t.user_attrs and t.state == TrialState.COMPLETE}
        running = []
        for t in trials:
            if ATTR_COPY_OF in t.user_attrs or t.state not in (TrialState.COMPLETE, TrialState.FAIL,
                                                                TrialState.RUNNING):
                continue
            if missing_params(spec, t.params):  # asked, but the driver died before its parameters were all set
                if t.state == TrialState.RUNNING:  # (an earlier rebuild, e.g. a restored segment's, failed it)
                    self.study._storage.set_trial_user_attr(t._trial_id, ATTR_FAIL_REASON, INTERRUPTED)
                    self.study.tell(t.number, state=TrialState.FAIL)
                continue  # no configuration: not proposed, not measured, not against the budget
            seeds = unit_seeds(spec, t.params)
            cid = self._config_id(t.params, seeds)
            proposal = Proposal(t.number, cid, seeds, duplicate_of=t.user_attrs.get(ATTR_DUPLICATE_OF))
            if t.state == TrialState.RUNNING:
                running.append((t, proposal))
                continue
            proposal.outcomes = proposal_outcomes(copies.get(t.number, t), seeds)
            self.book.record(proposal, duplicate=proposal.duplicate_of is not None)
            means = proposal.result()[0] if proposal.done else None
            if proposal.duplicate_of is None and means is not None:
                self.front.add(means)
        open_ = {t.number: proposal for t, proposal in running}
        known = {number: {} for number in open_}  # outcomes of open proposals' seeds that Tune's snapshot ended
        for trial_id, number, seed, values, reason in ended:
            if number in open_:
                known[number][seed] = Outcome(None if values is None else tuple(values), reason, trial_id)
        for trial_id, (number, seed) in live.items():  # Tune restored these trials: they train their units
            if number in open_ and seed not in known[number]:
                unit = Unit(number, open_[number].config_id, seed)
                self.book.training(unit)
                self.live[trial_id] = unit
        for t, proposal in running:
            self.params[t.number] = dict(t.params)
            _, new = self._take(proposal.number, proposal.config_id, proposal.seeds,
                                duplicate=proposal.duplicate_of is not None, duplicate_of=proposal.duplicate_of,
                                outcomes=known[t.number])
            for unit in new:  # an earlier attempt's run: finished (the trial settles at once) or to continue
                if self.tracker is not None and (run := self.tracker.unit_run(unit.config_id, unit.seed)):
                    self.reuse[unit.key] = run

    def _config_id(self, params: dict, seeds: tuple[int, ...]) -> str:
        return config_id(config_from_params(self.ctx.spec, {**params, "seed": seeds[0]}))

    # -- Tune's side ---------------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | str | None:
        self._connect()
        self._tell_due()
        if self.segment_size is not None and self.launched >= self.segment_size:
            self.finished = True  # this Tune experiment is full; the runner starts the next one
            return Searcher.FINISHED
        while not self.queue:
            if self.book.stop_reason() is not None:
                self.finished = True
                return Searcher.FINISHED
            self._propose()
        unit = self.queue.popleft()
        params = {**self.params[unit.proposal], "seed": unit.seed, "optuna_trial": unit.proposal,
                  "config_id": unit.config_id}
        if self.tracker is not None:
            params["mlflow_run_id"] = self._trial_run(trial_id, unit, params)
            self.runs[unit.key] = params["mlflow_run_id"]
        self.live[trial_id] = unit
        self.launched += 1
        return params

    def _trial_run(self, trial_id: str, unit: Unit, params: dict) -> str:
        if unit.key in self.reuse:
            run_id = self.reuse.pop(unit.key)
            self.tracker.set_tags(run_id, {TAG_TRIAL: trial_id})
            return run_id
        return self.tracker.child_run(trial_id, self.ctx.parent_run_id, search=False, params={},  # the worker logs them
                                      run_name=f"{method_of(self.ctx.spec, params)}-{trial_id}",
                                      tags={TAG_CONFIG: unit.config_id, TAG_SEED: str(unit.seed), "pareto": "false"})

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._connect()
        unit = self.live.pop(trial_id, None)
        if unit is not None:
            values, reason = objective_values(result, list(self.ctx.spec.objective_names), error)
            outcome = Outcome(None if values is None else tuple(values), reason, trial_id, self.runs.get(unit.key))
            self.runs.pop(unit.key, None)
            done = self.book.finish(unit, outcome)  # the budget, duplicates and progress know at once
            self._ended.append((trial_id, unit, outcome, done))
        self._tell_due()

    def _tell_due(self) -> None:
        due, self._due = self._due, []
        for *_, done in due:
            for number in done:
                self._tell(self.book.close(number))

    def flush(self) -> None:
        """Tell Optuna everything that ended: call once Tune has returned (its final snapshot is on storage)."""
        if self._connected:
            self._due += self._recorded + self._ended
            self._recorded, self._ended = [], []
            self._tell_due()

    # -- proposals -----------------------------------------------------------------------------------------
    def _ask(self) -> optuna.Trial:
        """study.ask(), less its search for enqueued (WAITING) trials: a read of every unfinished trial per
        proposal. A sweep enqueues none; if the study had some when the driver started, ask() takes them."""
        if self._enqueued:
            trial = self.study.ask()
            self._enqueued = any(t.state == TrialState.WAITING for t in self.study.get_trials(deepcopy=False))
            return trial
        self.study._thread_local.cached_all_trials = None  # as ask() does: a new trial, a fresh view
        return optuna.Trial(self.study, self.study._storage.create_new_trial(self.study._study_id))

    def _propose(self) -> None:
        trial = self._ask()
        params = suggest_params(trial, self.ctx.spec)
        seeds = unit_seeds(self.ctx.spec, params)
        self.params[trial.number] = params
        proposal, _ = self._take(trial.number, self._config_id(params, seeds), seeds)
        if proposal.duplicate_of is not None and not proposal.done:  # it waits: say so before a crash can forget
            trial.set_user_attr(ATTR_DUPLICATE_OF, proposal.duplicate_of)

    def _take(self, number: int, cid: str, seeds, **known) -> tuple[Proposal, list[Unit]]:
        proposal, new = self.book.propose(number, cid, seeds, **known)
        self.queue.extend(new)
        if proposal.done:  # answered by measurements Optuna already holds (or a snapshot recorded): tell now
            self._tell(proposal)
        return proposal, new

    def _tell(self, proposal: Proposal) -> None:
        spec, storage = self.ctx.spec, self.study._storage
        means, stds, reason = proposal.result()
        storage_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, proposal.number)
        params = self.params.pop(proposal.number, None)
        if proposal.duplicate_of is not None:
            storage.set_trial_user_attr(storage_id, ATTR_DUPLICATE_OF, proposal.duplicate_of)
        elif spec.repeats > 1:
            storage.set_trial_user_attr(storage_id, ATTR_UNITS, units_attr(proposal))
        else:
            storage.set_trial_user_attr(storage_id, ATTR_TUNE_TRIAL, proposal.outcomes[proposal.seeds[0]].trial_id)
        if self.tracker is not None and params is not None:
            self._record(proposal, params, means, stds, reason)
        if reason is None:
            self.study.tell(proposal.number, means)
            if proposal.duplicate_of is None:
                self.front.add(means)
        else:
            storage.set_trial_user_attr(storage_id, ATTR_FAIL_REASON, reason)
            self.study.tell(proposal.number, state=TrialState.FAIL)

    def _record(self, proposal: Proposal, params: dict, means: list[float] | None, stds: list[float],
                reason: str | None) -> None:
        """MLflow: a config run (the mean and std over seeds) for a measured proposal with repeats > 1; a
        duplicate run (no artifacts) pointing at the run whose measurement it reuses."""
        spec, names = self.ctx.spec, self.ctx.spec.objective_names
        if proposal.duplicate_of is None and (reason is not None or spec.repeats == 1):
            return  # one seed: its trial run is the record; a failed configuration: its trial runs say why
        metrics = dict(zip(names, means or []))
        config = trial_config(self.ctx, {**params, "seed": proposal.seeds[0]}).model_dump(exclude_none=True)
        config.pop("seed")
        if spec.repeats > 1:
            metrics |= {f"{n}_std": s for n, s in zip(names, stds)} | {"repeats": spec.repeats}
            config["seeds"] = ",".join(map(str, proposal.seeds))
        key, tags = {TAG_PROPOSAL: str(proposal.number)}, {TAG_CONFIG: proposal.config_id}
        if proposal.duplicate_of is None:
            self.tracker.record_run("config", key, self.ctx.parent_run_id, config, metrics, tags,
                                    f"config-{proposal.number}")
        else:
            tags[TAG_DUPLICATE_OF] = self._original_run(proposal) or "unknown"
            self.tracker.record_run("duplicate", key, self.ctx.parent_run_id, config, metrics, tags,
                                    f"duplicate-{proposal.number}", failed_reason=reason)

    def _original_run(self, proposal: Proposal) -> str | None:
        if self.ctx.spec.repeats > 1 and (found := self.tracker.find_run(**{"samprivacy.kind": "config",
                                                                             TAG_CONFIG: proposal.config_id})):
            return found
        # one seed, or the original's mean not recorded yet (it is told after a snapshot): its first seed's run
        outcome = proposal.outcomes.get(proposal.seeds[0])
        if outcome is None:  # it waited for a unit that is training: that unit's run
            return self.runs.get(f"{proposal.config_id}/{proposal.seeds[0]}")
        return outcome.run_id or (self.tracker.find_run(**{TAG_TRIAL: outcome.trial_id}) if outcome.trial_id else None)

    # -- what the driver shows -----------------------------------------------------------------------------
    def progress(self) -> dict:
        self._connect()
        book = self.book
        return {"budget": book.budget, "complete": book.complete, "failed": book.failed,
                "duplicates": book.duplicates, "proposals": book.proposals, "waiting": book.waiting,
                "front_size": len(self.front), "stop_reason": book.stop_reason() or None}
