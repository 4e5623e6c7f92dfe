"""The driver's proposal book against a real Optuna study (SQLite, no Ray, no MLflow): what a restarted driver
rebuilds from the study and the searcher's snapshot, whatever moment the previous driver died at."""

from __future__ import annotations

import optuna
import pytest

from samprivacy.spec import parse_spec
from samprivacy.sweep.proposing import Proposer
from samprivacy.sweep.trial import SweepContext

OK = {"test_acc": 0.8, "attack_acc": 0.55}


def context(**changes) -> SweepContext:
    spec = {"name": "book", "datasets": ["digits"], "optimizers": {"sgd": {}},
            "train": {"epochs": 1, "lr": {"low": 0.01, "high": 0.1}},
            "attacks": ["loss"], "trials": 4, "max_concurrent": 2, "sampler": {"name": "random", "seed": 0}} | changes
    return SweepContext(parse_spec(spec), mlflow_uri=None, parent_run_id=None, data_root=None)


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="book", storage=url).get_trials(deepcopy=False)


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/optuna.db"


def test_a_seed_that_ended_while_its_configuration_s_other_seeds_train_is_kept_across_snapshots(url):
    """repeats 2: seed 0 ends, seed 1 still trains. Optuna hears neither until both end, so the searcher's
    snapshots must keep seed 0's end however many pass; a driver restored from the last one must not train it
    again."""
    ctx = context(repeats=2, seeds=[0, 1], trials=2)
    book = Proposer(ctx, url, {})
    first, second = book.next_unit("t0"), book.next_unit("t1")
    assert (first["optuna_trial"], first["seed"]) == (0, 0) and (second["optuna_trial"], second["seed"]) == (0, 1)
    book.finish("t0", OK, error=False)
    for _ in range(3):  # snapshots pass; each later call tells Optuna what is due
        book.snapshot_saved()
        book.tell_due()
    snapshot = book.snapshot()
    assert [(e[0], e[1], e[2]) for e in snapshot["ended"]] == [("t0", 0, 0)]
    assert snapshot["live"] == {"t1": (0, 1)}
    assert trials(url)[0].state == optuna.trial.TrialState.RUNNING  # not told: seed 1 has not ended

    restarted = Proposer(ctx, url, snapshot)  # Tune restores t1; t0 ended
    unit = restarted.next_unit("t2")
    assert (unit["optuna_trial"], unit["seed"]) == (1, 0)  # the next proposal's, not proposal 0's seed 0 again
    for _ in range(3):  # the restarted driver carries t0's end on, so a second kill would not lose it either
        restarted.snapshot_saved()
        restarted.tell_due()
    assert [(e[0], e[1], e[2]) for e in restarted.snapshot()["ended"]] == [("t0", 0, 0)]
    again = Proposer(ctx, url, restarted.snapshot())
    assert [(u.proposal, u.seed) for u in again.queue] == [(1, 1)]  # proposal 1's other seed; nothing of 0's
    restarted.finish("t1", OK, error=False)
    restarted.flush()
    told = trials(url)[0]
    assert told.state == optuna.trial.TrialState.COMPLETE
    assert {s: u["trial"] for s, u in told.user_attrs["units"].items()} == {"0": "t0", "1": "t1"}
    assert restarted.snapshot()["ended"] == []  # told: nothing held any longer


def test_a_duplicate_decided_again_by_a_restart_is_recorded_so_a_second_kill_keeps_it(url):
    """The first driver dies after a duplicate's parameters and before its `duplicate_of`; the restart decides
    it is a duplicate again and records it. If the unit it waits for then fails and the driver dies again, the
    duplicate fails with it (stale) instead of becoming a measurement of its own."""
    ctx = context(seeds=[0], trials=2, train={"epochs": 1, "lr": {"choices": [0.05, 0.1]}})
    book = Proposer(ctx, url, {})
    for _ in range(2):  # the sampler proposes one configuration twice
        book.study.enqueue_trial({"lr": 0.05})
    assert book.next_unit("t0")["optuna_trial"] == 0

    def killed(*args, **kwargs):
        raise SystemExit("killed")
    book.book.propose = killed  # the driver dies once the second proposal's parameters are on storage
    with pytest.raises(SystemExit):
        book.next_unit("t1")
    asked = trials(url)
    assert len(asked) == 2 and asked[1].params == asked[0].params and "duplicate_of" not in asked[1].user_attrs

    restarted = Proposer(ctx, url, {"live": {"t0": (0, 0)}, "ended": []})  # Tune restores t0, still training
    assert trials(url)[1].user_attrs.get("duplicate_of") == 0  # decided a duplicate again, and recorded
    assert (restarted.progress()["duplicates"], restarted.progress()["waiting"]) == (1, 1)
    restarted.finish("t0", None, error=True)  # the unit it waits for fails; a snapshot records that; killed
    again = Proposer(ctx, url, restarted.snapshot())
    assert not again.queue  # nothing trains for the duplicate
    progress = again.progress()
    assert (progress["failed"], progress["duplicates"], progress["proposals"]) == (1, 1, 2)
    told = trials(url)
    assert [t.state for t in told] == [optuna.trial.TrialState.FAIL] * 2 and told[1].user_attrs["duplicate_of"] == 0


def running(config: dict, status: str = "RUNNING") -> tuple[str, dict]:
    """A trial as Tune's experiment snapshot records it (compat.tune_trials)."""
    return status, {"optuna_trial": config["optuna_trial"], "seed": config["seed"]}


def test_a_restart_takes_which_trials_run_from_tune_s_snapshot_not_the_searcher_s(url):
    """Tune copies a snapshot to storage file by file after writing it: a kill meanwhile can leave the searcher's
    file of a later (or earlier) moment than Tune's experiment state. The restarted book follows Tune's record:
    a trial only the searcher knew is gone (its unit trains again), a trial only Tune knew trains its unit."""
    ctx = context(seeds=[0], trials=4)
    book = Proposer(ctx, url, {})
    first, second = book.next_unit("t0"), book.next_unit("t1")
    older = book.snapshot()  # the searcher's file as uploaded before t2
    third = book.next_unit("t2")
    newer = book.snapshot()
    assert set(newer["live"]) == {"t0", "t1", "t2"}

    # the searcher's file is newer than Tune's state, which never heard of t2 (nor, here, of t1)
    restarted = Proposer(ctx, url, newer, tune={"t0": running(first)})
    assert {tid: (u.proposal, u.seed) for tid, u in restarted.live.items()} == {"t0": (0, 0)}
    assert sorted((u.proposal, u.seed) for u in restarted.queue) == [(1, 0), (2, 0)]  # trained again, not lost

    # the searcher's file is older than Tune's state: t2 runs again in Tune, so its unit is not queued twice
    tune = {"t0": running(first), "t1": running(second, "TERMINATED"), "t2": running(third)}
    restarted = Proposer(ctx, url, older, tune=tune)
    assert {tid: (u.proposal, u.seed) for tid, u in restarted.live.items()} == {"t0": (0, 0), "t2": (2, 0)}
    # t1 ended in Tune but neither file holds its end: its unit trains again (a finished MLflow run settles it)
    assert [(u.proposal, u.seed) for u in restarted.queue] == [(1, 0)]


def test_the_searcher_limits_concurrency_by_tune_s_record_of_running_trials(url):
    """The searcher keeps the one count of running trials (Tune's ConcurrencyLimiter kept a second in its own
    file). A restored searcher counts what Tune runs again: a trial only its stale snapshot knew never blocks it."""
    import pickle

    from samprivacy.sweep.search import SweepSearch, restoring

    search = SweepSearch(context(seeds=[0], trials=4), url)
    assert search.set_max_concurrency(1) is True  # Tune's limiter then passes every call through
    first = search.suggest("t0")
    assert first is not None and search.suggest("t1") is None  # full
    search.on_trial_complete("t0", OK)
    second = search.suggest("t1")
    assert second is not None and second["optuna_trial"] == 1

    stale = pickle.loads(pickle.dumps(search))  # as Tune restores it: t1 runs in the snapshot
    assert stale.restored["live"] == {"t1": (1, 0)}
    with restoring({}):  # Tune's own record: no trial of this experiment runs again
        stale.set_max_concurrency(1)
        third = stale.suggest("t2")
    assert third is not None and (third["optuna_trial"], third["seed"]) == (1, 0)  # t1's unit trains again

    restored = pickle.loads(pickle.dumps(search))
    with restoring({"t1": running(second)}):  # t1 runs again in Tune: it holds the one slot
        restored.set_max_concurrency(1)
        assert restored.suggest("t2") is None
        restored.on_trial_complete("t1", OK)
        assert restored.suggest("t2")["optuna_trial"] == 2

    # the first call a restored searcher gets can be a trial's end (Tune had more to run again than it may run
    # at once, so it asked for nothing): that trial must not stay counted
    first_end = pickle.loads(pickle.dumps(search))
    with restoring({"t1": running(second), "t0": running(first, "ERROR")}):
        first_end.set_max_concurrency(1)
        first_end.on_trial_complete("t1", OK)
        assert first_end.running == {"t0"}
