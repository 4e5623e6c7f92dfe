"""Between Optuna and Ray Tune: proposals and the units of work they become (pure bookkeeping: no Ray, Optuna or
MLflow, so it is tested in milliseconds).

A *proposal* is one Optuna trial: one configuration. It trains on `repeats` seeds, each a *unit*: one training
run, one Tune trial, one MLflow `trial` run. A unit is known by its key, the configuration's id (its TrialConfig
without the seed, hashed) and the seed. Before a unit is queued the book looks its key up:

    finished (complete)  -> its objectives are reused, nothing trains
    training now         -> the proposal waits for it, nothing trains twice
    neither              -> the unit is queued for Tune

A proposal all of whose units are answered by earlier proposals is a *duplicate*; the others are *measured*, and
only those count toward the budget (`trials`). A proposal is told to Optuna once every unit has an outcome: the
mean over its seeds (standard deviations alongside), or a failure if a seed failed. Failures are never reused: a
configuration proposed again after a failure trains again (the failure may not repeat).

Proposing stops when the budget is measured, when every distinct configuration of a finite space is measured,
or at the cap on proposals (`CAP_FACTOR` x the budget) when the sampler keeps repeating itself.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

CAP_FACTOR = 10


def unit_key(config_id: str, seed: int) -> str:
    return f"{config_id}/{seed}"


@dataclass(frozen=True)
class Unit:
    proposal: int  # the Optuna trial number of the proposal that trains it
    config_id: str
    seed: int

    @property
    def key(self) -> str:
        return unit_key(self.config_id, self.seed)


@dataclass(frozen=True)
class Outcome:
    """How a unit ended: its objectives, or why it failed; the Tune trial and MLflow run that measured it."""

    values: tuple[float, ...] | None
    reason: str | None = None
    trial_id: str | None = None
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.values is not None


@dataclass
class Proposal:
    number: int
    config_id: str
    seeds: tuple[int, ...]
    duplicate_of: int | None = None  # a duplicate: the (first) proposal whose units answer it
    outcomes: dict[int, Outcome] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """What makes two proposals the same configuration: the id and the seeds it runs on."""
        return f"{self.config_id}/{','.join(map(str, self.seeds))}"

    @property
    def done(self) -> bool:
        return len(self.outcomes) == len(self.seeds)

    def result(self) -> tuple[list[float] | None, list[float], str | None]:
        """(means, standard deviations, None) over the seeds, or (None, [], the first failure's reason)."""
        failed = [self.outcomes[s] for s in self.seeds if not self.outcomes[s].ok]
        if failed:
            return None, [], failed[0].reason or "a seed of this configuration failed"
        columns = list(zip(*(self.outcomes[s].values for s in self.seeds)))
        means = [statistics.fmean(c) for c in columns]
        stds = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in columns]  # sample std over seeds, as papers
        return means, stds, None


class Book:
    """Every open proposal, every unit training or finished; decides what trains, what is reused, what waits,
    and when proposing must stop. Memory: one short entry per finished unit (the duplicate index), the rest
    bounded by what is open."""

    def __init__(self, budget: int, space_size: int | None = None, cap: int | None = None):
        self.budget, self.space_size = budget, space_size
        self.cap = cap if cap is not None else CAP_FACTOR * budget
        self._finished: dict[str, tuple[Outcome, int]] = {}  # unit key -> (outcome, proposal that trained it)
        self._training: dict[str, Unit] = {}
        self._waiting: dict[str, list[int]] = {}  # unit key -> proposals (other than its own) waiting for it
        self._open: dict[int, Proposal] = {}
        self._measured_keys: set[str] = set()
        self.proposals = self.measured = self.duplicates = self.complete = self.failed = 0

    # -- what stops proposing ------------------------------------------------------------------------------
    def stop_reason(self) -> str | None:
        """None while more proposals are wanted; else why not ("" when the budget is simply measured)."""
        if self.measured >= self.budget:
            return ""
        if self.space_size is not None and len(self._measured_keys) >= self.space_size:
            return (f"the search space holds {self.space_size} distinct configurations and every one is measured; "
                    f"{self.budget - self.measured} of the {self.budget} trials are not needed")
        if self.proposals >= self.cap:
            return (f"the sampler made {self.proposals} proposals ({CAP_FACTOR} x trials), {self.duplicates} of them "
                    f"configurations already measured, and found only {self.measured} distinct ones; widen the "
                    f"search space or lower trials")
        return None

    # -- proposals -----------------------------------------------------------------------------------------
    def propose(self, number: int, config_id: str, seeds: Sequence[int], *, duplicate: bool | None = None,
                duplicate_of: int | None = None, outcomes: dict[int, Outcome] | None = None
                ) -> tuple[Proposal, list[Unit]]:
        """Register a proposal; returns it and the units to queue (none for a duplicate).

        `duplicate` None: decided here. A proposal is measured when it trains a unit of its own: one to queue, one
        a restored Tune trial trains for it (`training`), or one that ended before a restart (`outcomes`, which
        hold only its own units' ends); otherwise it is a duplicate. A proposal that was open when the driver
        stopped passes True when the study records it as a duplicate (with `duplicate_of`, the proposal it
        repeats) and None otherwise: a driver killed between a duplicate's parameters and that record leaves
        the study no trace of the decision, so it is made again here, the same way."""
        proposal = Proposal(number, config_id, tuple(seeds), outcomes=dict(outcomes or {}))
        new, sources, own = [], [], bool(outcomes)
        for seed in proposal.seeds:
            key = unit_key(config_id, seed)
            if seed in proposal.outcomes:
                continue
            if key in self._finished:
                outcome, source = self._finished[key]
                proposal.outcomes[seed] = outcome
                sources.append(source)
            elif key in self._training:
                if self._training[key].proposal != number:
                    self._waiting.setdefault(key, []).append(number)
                    sources.append(self._training[key].proposal)
                else:  # a restored Tune trial trains it for this proposal
                    own = True
            elif duplicate:  # decided a duplicate, but what it waited for is gone (its trainer failed meanwhile)
                proposal.outcomes[seed] = Outcome(None, "stale: the run this duplicate waited for is gone")
            else:
                new.append(Unit(number, config_id, seed))
        if duplicate is None:
            duplicate = not new and not own
        if duplicate:
            proposal.duplicate_of = min(sources, default=duplicate_of)  # none left: what was decided before
            self.duplicates += 1
        else:
            self.measured += 1
            self._measured_keys.add(proposal.key)
            for seed, outcome in (outcomes or {}).items():  # ended before a restart: reusable from now on
                if outcome.ok:
                    self._finished.setdefault(unit_key(config_id, seed), (outcome, number))
        self.proposals += 1
        for unit in new:
            self._training[unit.key] = unit
        if proposal.done:
            self._count(proposal)
        else:
            self._open[number] = proposal
        return proposal, new

    def record(self, proposal: Proposal, duplicate: bool) -> None:
        """A proposal finished before the driver (re)started: count it and index its complete units."""
        self.proposals += 1
        if duplicate:
            self.duplicates += 1
            return
        self.measured += 1
        self._measured_keys.add(proposal.key)
        for seed, outcome in proposal.outcomes.items():
            if outcome.ok:
                self._finished.setdefault(unit_key(proposal.config_id, seed), (outcome, proposal.number))
        self._count(proposal)

    def training(self, unit: Unit) -> None:
        """A unit that a restored Tune trial is training (registered before the open proposals are)."""
        self._training[unit.key] = unit

    def finish(self, unit: Unit, outcome: Outcome) -> list[int]:
        """A unit ended; returns the numbers of the proposals it completed (its own first, then those that
        waited for it). They stay open until `close`d, when Optuna is told."""
        if self._training.get(unit.key) != unit:
            return []  # not training here (a late report of a unit already settled)
        del self._training[unit.key]
        if outcome.ok:
            self._finished[unit.key] = (outcome, unit.proposal)
        done: list[int] = []
        for number in [unit.proposal, *self._waiting.pop(unit.key, [])]:
            proposal = self._open.get(number)
            if proposal is None or proposal.done:
                continue
            proposal.outcomes[unit.seed] = outcome
            if proposal.done:
                self._count(proposal)
                done.append(number)
        return done

    def is_open(self, number: int) -> bool:
        """Whether proposal `number` is registered and Optuna is not yet being told it."""
        return number in self._open

    def close(self, number: int) -> Proposal:
        """A done proposal leaves the book's open ones (Optuna is being told)."""
        return self._open.pop(number)

    def _count(self, proposal: Proposal) -> None:
        if proposal.duplicate_of is None:
            ok = all(o.ok for o in proposal.outcomes.values())
            self.complete += ok
            self.failed += not ok

    @property
    def waiting(self) -> int:
        """Duplicates still waiting for a unit another proposal trains."""
        return sum(p.duplicate_of is not None and not p.done for p in self._open.values())


class Front:
    """The Pareto front of the told points, kept up to date one point at a time (O(front) per point)."""

    def __init__(self, modes: Sequence[str]):
        self._signs = [-1.0 if m == "max" else 1.0 for m in modes]
        self._points: list[tuple[float, ...]] = []

    def add(self, values: Sequence[float]) -> None:
        point = tuple(s * v for s, v in zip(self._signs, values))
        if any(_dominates(q, point) for q in self._points):
            return  # (equal points all stay on the front, as in report.pareto.non_dominated)
        self._points = [q for q in self._points if not _dominates(point, q)] + [point]

    def __len__(self) -> int:
        return len(self._points)


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))
