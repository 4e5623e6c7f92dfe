"""Retries through a server outage: transient database errors are retried with backoff until the outage budget
runs out, anything else is raised at once; ResilientRDBStorage retries every storage call. (The real outage,
a PostgreSQL restart, is drilled in tests/deploy/test_cluster_drills.py.)"""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy.exc
from optuna.exceptions import StorageInternalError

from samprivacy.sweep import retry as retry_module
from samprivacy.sweep.retry import ResilientRDBStorage, database_unreachable, retry
from samprivacy.sweep.study import optuna_storage


def lost_connection() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


@pytest.fixture(autouse=True)
def quick_waits(monkeypatch):
    monkeypatch.setattr(retry_module, "FIRST_WAIT_S", 0.01)
    monkeypatch.setattr(retry_module, "MAX_WAIT_S", 0.02)


class Flaky:
    """Fails `failures` times with `error`, then returns 'ok'."""

    def __init__(self, failures: int, error: Exception):
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_a_lost_connection_is_retried_until_the_call_succeeds():
    call = Flaky(3, lost_connection())
    assert retry(call, database_unreachable, "test") == "ok" and call.calls == 4


def test_any_other_error_is_raised_at_once():
    call = Flaky(1, ValueError("bad value"))
    with pytest.raises(ValueError):
        retry(call, database_unreachable, "test")
    assert call.calls == 1


def test_an_outage_longer_than_the_budget_fails_with_the_database_error():
    call = Flaky(10**6, lost_connection())
    with pytest.raises(sqlalchemy.exc.OperationalError):
        retry(call, database_unreachable, "test", outage_s=0.2)
    assert 2 < call.calls < 100


@pytest.mark.parametrize("error, transient", [
    (lost_connection(), True),
    (sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")), True),
    (sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
    (KeyError("study"), False),
])
def test_which_errors_count_as_an_outage(error, transient):
    wrapped = StorageInternalError("An exception is raised during the commit.")
    wrapped.__cause__ = error  # how Optuna's RDBStorage reports it
    assert database_unreachable(error) is transient and database_unreachable(wrapped) is transient


def test_every_storage_call_of_a_study_is_retried(tmp_path):
    storage = ResilientRDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    real_session = storage.scoped_session
    failing = Flaky(2, lost_connection())

    def session():  # the database is away for the next two connections
        if failing.calls < failing.failures:
            failing()
        return real_session()

    storage.scoped_session = session
    trial = study.ask()
    study.tell(trial, 1.0)
    assert failing.calls == 2 and [t.state for t in study.get_trials()] == [optuna.trial.TrialState.COMPLETE]


def test_database_servers_get_the_resilient_storage_and_sqlite_does_not(tmp_path, monkeypatch):
    from samprivacy.sweep import study

    assert type(optuna_storage(f"sqlite:///{tmp_path / 'o.db'}")) is optuna.storages.RDBStorage
    made = []
    monkeypatch.setattr(study, "ResilientRDBStorage", lambda url, **kwargs: made.append((url, kwargs)))
    optuna_storage("postgresql://optuna@db:5432/optuna")  # no server here: only which storage, and how
    assert made == [("postgresql://optuna@db:5432/optuna", {"engine_kwargs": {"pool_pre_ping": True}})]
