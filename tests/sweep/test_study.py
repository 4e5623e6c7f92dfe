"""sweep/study.py: the Optuna study as the sweep's record, through Optuna's public API (SQLite in tmp_path)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from samprivacy.errors import ConfigError
from samprivacy.spec import parse_spec
from samprivacy.sweep import space
from samprivacy.sweep.study import (ATTR_DUPLICATE_OF, ATTR_FAIL_REASON, INTERRUPTED, STALE, fail_stale_trials,
                                    load_study, objective_values, open_study, optuna_storage, read_proposals)

SPEC = parse_spec({"name": "rec", "seeds": [0, 1], "optimizers": {"sgd": {}, "sam": {"rho": {"low": 0.01,
                                                                                             "high": 0.1}}},
                   "train": {"epochs": 1}, "attacks": ["loss"], "sampler": {"name": "random", "seed": 0},
                   "trials": 8})


def opened(tmp_path):
    return open_study(SPEC, f"sqlite:///{tmp_path}/optuna.db", space.make_sampler(SPEC))


def test_the_study_is_created_once_and_found_again_with_its_id(tmp_path):
    first, second = opened(tmp_path), opened(tmp_path)
    assert first.study_id == second.study_id
    assert load_study("rec", f"sqlite:///{tmp_path}/optuna.db").study_id == first.study_id
    with pytest.raises(ConfigError, match="has no Optuna study yet"):
        load_study("other", f"sqlite:///{tmp_path}/optuna.db")


def test_a_database_whose_tables_another_process_creates_at_the_same_moment_opens(tmp_path, monkeypatch):
    """Seen in a repeated run of the resume tests: the test's reader and the starting driver opened the new study
    database at once, both created Optuna's tables, and the driver lost the race to record alembic's version
    (UNIQUE constraint failed) and died. Made certain: the other process records it between our check and ours."""
    from alembic.runtime.migration import HeadMaintainer

    url = f"sqlite:///{tmp_path}/optuna.db"
    insert, beside, raced = HeadMaintainer._insert_version, [], []

    def the_other_process_first(self, version):  # after our read of alembic's version (none yet), before our write
        if not raced:
            raced.append(True)
            beside.append(optuna.storages.RDBStorage(url))  # creates the tables and records the version
        return insert(self, version)

    monkeypatch.setattr(HeadMaintainer, "_insert_version", the_other_process_first)
    storage = optuna_storage(url)
    assert beside and storage.get_all_studies() == []
    study = optuna.create_study(study_name="s", storage=storage)
    assert [s.study_name for s in beside[0].get_all_studies()] == [study.study_name]


def test_read_proposals_splits_settled_and_open_and_fails_an_interrupted_ask(tmp_path):
    handle = opened(tmp_path)
    done = handle.study.ask()
    space.suggest_params(done, SPEC)
    handle.study.tell(done, [0.9, 0.6])
    running = handle.study.ask()
    space.suggest_params(running, SPEC)
    handle.set_user_attr(running.number, ATTR_DUPLICATE_OF, 0)
    interrupted = handle.study.ask()  # a driver killed between ask() and its first suggestion

    record = read_proposals(handle, SPEC)

    assert [p.number for p in record.settled] == [done.number]
    assert record.settled[0].done and record.settled[0].result()[0] == [0.9, 0.6]
    assert [(p.number, p.duplicate_of) for p, _ in record.open] == [(running.number, 0)]
    assert record.open[0][1] == running.params
    failed = handle.study.trials[interrupted.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs[ATTR_FAIL_REASON] == INTERRUPTED
    assert read_proposals(handle, SPEC).settled == record.settled  # the failed ask is skipped from now on


def test_fail_stale_trials_fails_every_running_trial_with_its_reason(tmp_path):
    handle = opened(tmp_path)
    asked = handle.study.ask()
    space.suggest_params(asked, SPEC)
    handle.study.ask()  # no parameters
    assert fail_stale_trials(handle, SPEC) == 2
    reasons = [t.user_attrs[ATTR_FAIL_REASON] for t in handle.study.get_trials(states=(TrialState.FAIL,))]
    assert reasons == [STALE, INTERRUPTED]
    assert fail_stale_trials(handle, SPEC) == 0


def test_a_user_attr_is_set_by_trial_number_until_the_trial_is_told(tmp_path):
    handle = opened(tmp_path)
    trial = handle.study.ask()
    handle.set_user_attr(trial.number, "note", {"a": 1})
    handle.study.tell(trial.number, [0.5, 0.5])
    assert optuna.load_study(study_name="rec", storage=f"sqlite:///{tmp_path}/optuna.db").trials[0].user_attrs == {
        "note": {"a": 1}}
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # hence: attributes first, then tell
        handle.set_user_attr(trial.number, "late", 1)


@pytest.mark.parametrize("result, error, expected", [
    ({"test_acc": 0.9, "attack_acc": 0.6}, False, ([0.9, 0.6], None)),
    ({"test_acc": 0.9}, False, (None, "objective `attack_acc` is missing or not finite: None")),
    ({"test_acc": float("nan"), "attack_acc": 0.6}, False, (None, "objective `test_acc` is missing or not finite: nan")),
    ({"failed": "training diverged at epoch 1"}, False, (None, "training diverged at epoch 1")),
    (None, False, (None, "the trial reported no result")),
    ({"failed": "boom"}, True, (None, "boom")),
])
def test_objective_values_or_why_not(result, error, expected):
    assert objective_values(result, ["test_acc", "attack_acc"], error) == expected
