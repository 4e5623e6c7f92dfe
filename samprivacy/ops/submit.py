"""Send a sweep to a Ray cluster as a Ray job (Job Submission API); read its status and logs back.

    submit_sweep(spec_path, address)  -> job id; the spec is validated here, before anything is sent
    job_status(address, job_id)       -> JobReport (PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED)
    follow_logs(address, job_id)      -> the job's output, chunk by chunk, until it ends

The job's working_dir is a temporary folder holding only the spec file, so the cluster gets the spec and
nothing else; the cluster must already have samprivacy installed. Before the sweep is sent, a short check job
runs `<python> -c "import samprivacy"` with the same environment and must print this samprivacy's version, so a
cluster that lacks it (or has another version) is named at submit time, not inside the job. Its entrypoint is
`python -m samprivacy.cli run <spec> --workdir <absolute path>`: `python -m` and not the `samprivacy` console
script, because the job runs a shell with the cluster's PATH (a missing module then fails with a clear
"No module named samprivacy"), and `python=` names the cluster's interpreter where `python` is not it.
The workdir is pinned to an absolute path because the job runs in a temporary folder on the cluster: a
relative one would put the sweep's state there, and Ray deletes it.

Token authentication (as of Ray 2.60): the client sends a token when RAY_AUTH_MODE=token is set locally (the token
comes from RAY_AUTH_TOKEN, the file at RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token), or when `token=` is given.
RAY_AUTH_MODE is never forwarded to the job: the job's driver inherits the cluster's own setting, and
forcing "token" onto a cluster without authentication crashes its workers and leaves the job PENDING forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from samprivacy.compat import RUNTIME_ENV_LOGGER
from samprivacy.errors import ConfigError
from samprivacy.spec import SweepSpec, load_spec
from samprivacy.tags import TAG_SPEC_HASH, TAG_SWEEP, TAG_WORKDIR

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# Ray's client lets these override its `address` argument; an explicit --address must win.
_ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
_CONNECT_TIMEOUT_S = 5.0
CHECK_TIMEOUT_S = 120.0  # the interpreter check job: seconds on an idle cluster, longer when the head is busy
_CHATTY_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk", RUNTIME_ENV_LOGGER)
_START_HINT = "start one with `ray start --head --dashboard-host 127.0.0.1` or pass --address"
_TOKEN_HINT = ("set RAY_AUTH_MODE=token and make the cluster's token available here: in ~/.ray/auth_token, in a "
               "file named by RAY_AUTH_TOKEN_PATH, or in RAY_AUTH_TOKEN (`ray get-auth-token` on the head node "
               "prints it)")


@dataclass(frozen=True)
class Submission:
    """Everything sent with a job, built (and checked) locally without contacting the cluster."""

    spec: SweepSpec
    spec_file: Path
    workdir: Path
    entrypoint: str
    submission_id: str
    env_vars: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobReport:
    job_id: str
    status: str
    message: str
    entrypoint: str
    metadata: dict[str, str]

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


def dashboard_address(address: str | None) -> str:
    """The dashboard's HTTP URL: `address`, else RAY_API_SERVER_ADDRESS, else the local default (port 8265)."""
    address = (address or os.environ.get("RAY_API_SERVER_ADDRESS") or DEFAULT_ADDRESS).strip().rstrip("/")
    if "://" not in address:
        address = f"http://{address}"
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--address must be the Ray dashboard's HTTP address like http://head:8265, got "
                          f"{address!r} (a ray:// or GCS address does not serve the Job Submission API)")
    return address


def _relative_sqlite(url: str | None) -> bool:
    return url is not None and url.lower().startswith("sqlite") and not url.split(":///", 1)[-1].startswith("/")


def build_submission(spec_path: str | Path, *, workdir: str | Path | None = None,
                     extra_env: Mapping[str, str] | None = None, python: str = "python",
                     entrypoint: str | None = None, submission_id: str | None = None) -> Submission:
    """Validate the spec and build the job; relative paths are resolved here, where the user meant them."""
    spec_file = Path(spec_path)
    spec = load_spec(spec_file)
    problems = [(key, value) for key, value in (("storage.mlflow_uri", spec.storage.mlflow_uri),
                                                ("storage.optuna_url", spec.storage.optuna_url))
                if _relative_sqlite(value)]
    if spec.data_root and not Path(spec.data_root).expanduser().is_absolute():
        problems.append(("data_root", spec.data_root))
    if problems:
        raise ConfigError(f"{spec_file}: a submitted sweep runs in a temporary folder on the cluster, so paths in "
                          f"the spec must be absolute (as the cluster sees them): "
                          + "; ".join(f"{key} is {value!r}" for key, value in problems))
    if workdir is not None:
        spec = spec.with_workdir(workdir)
    storage = spec.resolved_storage()  # ./runs/<name> or a relative workdir becomes absolute here
    env = {"PYTHONUNBUFFERED": "1",  # the driver writes to a log file: unbuffered, so --follow sees progress
           "MLFLOW_TRACKING_URI": storage.mlflow_uri}
    for key, value in (extra_env or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(f"extra_env must map names to strings, got {key!r}: {value!r}")
        if key == "RAY_AUTH_TOKEN":
            raise ConfigError("do not send RAY_AUTH_TOKEN with the job: the dashboard shows a job's environment "
                              "to anyone who can list jobs, and the cluster's nodes already hold the token")
        env[key] = value
    command = entrypoint or shlex.join([python, "-m", "samprivacy.cli", "run", spec_file.name,
                                        "--workdir", str(storage.workdir)])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Submission(spec=spec, spec_file=spec_file, workdir=storage.workdir, entrypoint=command,
                      submission_id=submission_id or f"samprivacy-{spec.name}-{stamp}-{secrets.token_hex(2)}",
                      env_vars=env, metadata={TAG_SWEEP: spec.name, TAG_SPEC_HASH: spec.spec_hash(),
                                              TAG_WORKDIR: str(storage.workdir)})


@contextmanager
def _translate(address: str) -> Iterator[None]:
    """Turn Ray's connection and authentication errors into ConfigErrors that say what to do."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        if "invalid" in str(exc).lower() or "Forbidden" in str(exc):
            raise ConfigError(f"the Ray dashboard at {address} rejected the authentication token (it is not the "
                              f"cluster's); {_TOKEN_HINT}") from None
        raise ConfigError(f"the Ray dashboard at {address} requires token authentication and no token was sent; "
                          f"{_TOKEN_HINT}") from None
    except (ConnectionError, requests.exceptions.ConnectionError, requests.exceptions.Timeout):
        raise ConfigError(f"cannot reach the Ray dashboard at {address}; {_START_HINT}") from None


def _probe(address: str) -> None:
    """Fail in seconds, not after the operating system's TCP timeout, when nothing listens at `address`."""
    parts = urlsplit(address)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError:
        raise ConfigError(f"cannot reach the Ray dashboard at {address}; {_START_HINT}") from None


def connect(address: str | None = None, *, token: str | None = None) -> JobSubmissionClient:
    """A JobSubmissionClient for the dashboard at `address` (see `dashboard_address`); `token` sends
    `Authorization: Bearer <token>` instead of Ray's RAY_AUTH_MODE / token-file lookup."""
    from ray.job_submission import JobSubmissionClient

    for name in _CHATTY_LOGGERS:  # "Uploading package ...", "WebSocket closed ...": not news to a user
        logging.getLogger(name).setLevel(logging.WARNING)
    address = dashboard_address(address)
    _probe(address)
    hidden = {key: os.environ.pop(key) for key in _ADDRESS_ENV if key in os.environ}
    try:
        with _translate(address):
            return JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"} if token else None)
    except ConfigError:
        raise
    except (RuntimeError, ValueError, KeyError) as exc:  # something answers, but not a Ray dashboard
        raise ConfigError(f"{address} does not answer as a Ray dashboard with the Job Submission API "
                          f"({type(exc).__name__}: {exc}); {_START_HINT}") from None
    finally:
        os.environ.update(hidden)


def submit_sweep(spec_path: str | Path, address: str | None = None, *, workdir: str | Path | None = None,
                 extra_env: Mapping[str, str] | None = None, python: str = "python", entrypoint: str | None = None,
                 submission_id: str | None = None, token: str | None = None, check: bool = True) -> str:
    """Validate the spec, check the cluster's `python` imports this samprivacy, then submit `samprivacy run` on
    the spec as a Ray job; returns the job's submission id.

    `workdir` (absolute, or relative to here) is where the sweep's state goes, as the cluster sees it: on a
    multi-node cluster, a shared filesystem. `entrypoint` replaces the command (same spec upload and env) and
    skips the interpreter check, as does `check=False`.
    """
    job = build_submission(spec_path, workdir=workdir, extra_env=extra_env, python=python, entrypoint=entrypoint,
                           submission_id=submission_id)
    client = connect(address, token=token)
    with tempfile.TemporaryDirectory(prefix="samprivacy-submit-") as folder:
        shutil.copyfile(job.spec_file, Path(folder) / job.spec_file.name)
        runtime_env = {"working_dir": folder, "env_vars": job.env_vars}
        if check and entrypoint is None:
            check_interpreter(client, python, runtime_env, f"{job.submission_id}-check")
        with _translate(client.get_address()):
            try:
                return client.submit_job(entrypoint=job.entrypoint, submission_id=job.submission_id,
                                         runtime_env=runtime_env, metadata=job.metadata)
            except RuntimeError as exc:
                raise ConfigError(f"the Ray dashboard at {client.get_address()} refused the job: {exc}") from None


def check_interpreter(client: JobSubmissionClient, python: str, runtime_env: dict, probe_id: str,
                      timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Run `python -c "import samprivacy"` on the cluster as a short job (id `<sweep job id>-check`) in the sweep
    job's runtime environment; ConfigError unless it prints this samprivacy's version, saying what to install or
    which --python to pass."""
    from samprivacy import __version__

    code = "import samprivacy; print('samprivacy-version', samprivacy.__version__)"
    with _translate(client.get_address()):
        try:
            client.submit_job(entrypoint=shlex.join([python, "-c", code]), submission_id=probe_id,
                              runtime_env=runtime_env, metadata={"samprivacy.check": "interpreter"})
        except RuntimeError as exc:
            raise ConfigError(f"the Ray dashboard at {client.get_address()} refused the check job: {exc}") from None
        deadline = time.monotonic() + timeout_s
        while str(client.get_job_status(probe_id)) not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.2)
        status, logs = str(client.get_job_status(probe_id)), client.get_job_logs(probe_id)
        # Kept in the job list (metadata samprivacy.check): Ray 2.60's job manager re-adds a job deleted right
        # after it ends, as FAILED, which would read as a failure.
        if status not in TERMINAL:
            client.stop_job(probe_id)
    found = [line.split()[1] for line in logs.splitlines() if line.startswith("samprivacy-version ")]
    if status == "SUCCEEDED" and found == [__version__]:
        return
    install = (f"install samprivacy {__version__} into the cluster's Python on every node (docs/cluster.md), or pass "
               f"--python with the interpreter that has it (e.g. --python /opt/venv/bin/python)")
    if found:
        raise ConfigError(f"the cluster's `{python}` has samprivacy {found[0]}, this machine {__version__}; {install}")
    if status not in TERMINAL:
        raise ConfigError(f"the check that the cluster's `{python}` imports samprivacy did not finish within "
                          f"{timeout_s:.0f} s (job {probe_id}: {status}); is the cluster busy? --no-check skips it")
    last = (logs.strip().splitlines() or ["no output"])[-1][:300]
    raise ConfigError(f"the cluster's `{python}` cannot import samprivacy ({last}); {install}")


def _report(client: JobSubmissionClient, job_id: str) -> JobReport:
    with _translate(client.get_address()):
        try:
            info = client.get_job_info(job_id)
        except RuntimeError as exc:
            raise ConfigError(f"no job {job_id!r} at {client.get_address()} ({exc}); `ray job list "
                              f"--address {client.get_address()}` lists them") from None
    return JobReport(job_id=job_id, status=str(info.status), message=info.message or "",
                     entrypoint=info.entrypoint, metadata=dict(info.metadata or {}))


def job_status(address: str | None, job_id: str, *, token: str | None = None) -> JobReport:
    return _report(connect(address, token=token), job_id)


def follow_logs(address: str | None, job_id: str, *, token: str | None = None) -> Iterator[str]:
    """Yield the job's output as it comes (from the start), until the job ends.

    Ray's `tail_job_logs` is an async generator; this drives it on a private event loop, so call it from
    synchronous code (not from inside a running event loop).
    """
    import aiohttp

    client = connect(address, token=token)
    _report(client, job_id)  # a clear error for an unknown job before the stream opens
    stream = client.tail_job_logs(job_id)
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                with _translate(client.get_address()):
                    chunk = loop.run_until_complete(stream.__anext__())
            except StopAsyncIteration:
                return
            except (RuntimeError, aiohttp.ClientError) as exc:
                raise ConfigError(f"lost the log stream of job {job_id} ({exc}); the job goes on: "
                                  f"`ray job logs --follow {job_id} --address {client.get_address()}`") from None
            yield chunk
    finally:
        loop.run_until_complete(stream.aclose())  # type: ignore[attr-defined]  # an async generator: it has aclose
        loop.close()


def wait_for_job(address: str | None, job_id: str, *, token: str | None = None, timeout_s: float = 60.0,
                 poll_s: float = 0.5) -> JobReport:
    """Poll until the job reaches a terminal status (or `timeout_s` passes); returns the last report."""
    client = connect(address, token=token)
    deadline = time.monotonic() + timeout_s
    report = _report(client, job_id)
    while not report.terminal and time.monotonic() < deadline:
        time.sleep(poll_s)
        report = _report(client, job_id)
    return report
