"""Ride out a restarting server: retry calls that failed because the server went away, with backoff.

A sweep outlives the services it writes to: PostgreSQL restarts, a tracking server is redeployed. A call that
fails because the connection was refused or dropped is retried, with exponentially growing, jittered waits,
until `OUTAGE_S` has passed; any other error is raised at once.

- Optuna: `ResilientRDBStorage`, an RDBStorage whose every call is retried that way. It is used only once the
  storage has connected (a wrong URL or password fails at once, when the sweep starts).
- MLflow: its HTTP client already retries refused connections and 5xx answers for every method (urllib3, with
  backoff); `samprivacy.sweep.tracking` only sets that policy, so a trial waits out a tracking-server restart
  instead of failing.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from typing import Any, Callable, TypeVar

import optuna
import sqlalchemy.exc

T = TypeVar("T")
OUTAGE_S = 240.0     # how long a server may be away before the call fails for good
FIRST_WAIT_S = 0.25  # the first wait; each next one doubles, up to MAX_WAIT_S
MAX_WAIT_S = 8.0
_log = logging.getLogger(__name__)


def database_unreachable(exc: BaseException) -> bool:
    """True for a lost or refused database connection (also when Optuna wrapped it in StorageInternalError)."""
    cause: BaseException | None = exc
    while cause is not None:
        exc = cause
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return True
        cause = exc.__cause__
    return False


def schema_made_beside(exc: BaseException) -> bool:
    """True where opening a new database failed because another process created the same tables at that moment
    (a duplicate row or table): opening it again finds them made."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, sqlalchemy.exc.IntegrityError) or (
                isinstance(cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError))
                and "already exists" in str(cause)):
            return True
        cause = cause.__cause__
    return False


def retry(call: Callable[[], T], transient: Callable[[BaseException], bool], what: str,
          outage_s: float = OUTAGE_S) -> T:
    """call(), again after each transient failure (waits 0.25 s, 0.5 s, ... 8 s, jittered) for up to outage_s."""
    deadline, wait = time.monotonic() + outage_s, FIRST_WAIT_S
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + wait > deadline:
                raise
            _log.warning("%s failed (%s); retrying in %.1f s", what, type(exc).__name__, wait)
            time.sleep(wait * random.uniform(0.5, 1.0))  # jitter: many trials must not retry in lockstep
            wait = min(2 * wait, MAX_WAIT_S)


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage, whose calls survive a database restart (see the module docstring).

    A write whose connection dropped after the server committed it is retried too: a trial created twice
    leaves a second RUNNING trial that the sweep fails as stale at the end, so counts stay right.
    """


_outer = threading.local()  # a retried call that makes another: only the outermost retries (one budget)


def _retried(method: Callable) -> Callable:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_outer, "active", False):
            return method(self, *args, **kwargs)
        _outer.active = True
        try:
            return retry(lambda: method(self, *args, **kwargs), database_unreachable,
                         f"Optuna storage {method.__name__}")
        finally:
            _outer.active = False
    return wrapper


# Every call a study makes on its storage: the BaseStorage methods that RDBStorage implements (the others are
# built on these), its heartbeat, and the private ones that Optuna's _CachedStorage (which wraps every
# RDBStorage a study uses) calls directly. Each opens its own session, so a retry starts afresh.
_BASE, _RDB = vars(optuna.storages.BaseStorage), vars(optuna.storages.RDBStorage)
_CALLS = [n for n in _BASE if not n.startswith("_") and callable(_RDB.get(n))] + [
    "record_heartbeat", "_create_new_trial", "_set_trial_param", "_get_trials", "_get_best_trial_id",
    "_get_stale_trial_ids"]
for _name in _CALLS:
    setattr(ResilientRDBStorage, _name, _retried(_RDB[_name]))
