"""Kill the sweep driver with SIGKILL mid-sweep, resume it, and check that nothing is lost or duplicated:
MLflow child runs = Optuna COMPLETE trials = Tune finished trials = the trial budget, one per trial id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

BUDGET = 6
SPEC = {
    "name": "killme", "datasets": ["digits"], "seeds": [0, 1],
    "optimizers": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.2, "log": True}}},
    "train": {"epochs": 4, "batch_size": 128, "lr": 0.05},
    "attacks": ["loss", "confidence"], "trials": BUDGET, "max_concurrent": 2,
    "resources": {"cpu": 1, "gpu": 0}, "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 3},
}


def samprivacy(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.Popen([sys.executable, "-m", "samprivacy.cli", *args], env=env, start_new_session=True,
                            **kwargs)


def trial_states(workdir) -> list[TrialState]:
    try:
        study = optuna.load_study(study_name="killme", storage=f"sqlite:///{workdir}/optuna.db")
        return [t.state for t in study.get_trials(deepcopy=False)]
    except Exception:  # not created yet
        return []


@pytest.mark.parametrize("kill_when", ["first_trial_running", "three_trials_complete"])
def test_sigkill_then_resume_finishes_the_budget_exactly_once(tmp_path, kill_when):
    spec_file = tmp_path / "killme.yaml"
    spec_file.write_text(json.dumps(SPEC))
    workdir = tmp_path / "work"
    log = open(tmp_path / "run.log", "w")
    driver = samprivacy("run", str(spec_file), "--workdir", str(workdir), stdout=log, stderr=log)
    ready = {"first_trial_running": lambda s: TrialState.RUNNING in s,
             "three_trials_complete": lambda s: s.count(TrialState.COMPLETE) >= 3}[kill_when]
    deadline = time.monotonic() + 240
    while not ready(trial_states(workdir)):
        assert driver.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the sweep never reached the kill point"
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert trial_states(workdir).count(TrialState.COMPLETE) < BUDGET

    resumed = samprivacy("resume", "killme", "--workdir", str(workdir), stdout=log, stderr=log)
    assert resumed.wait(timeout=400) == 0, (tmp_path / "run.log").read_text()[-3000:]

    study = optuna.load_study(study_name="killme", storage=f"sqlite:///{workdir}/optuna.db")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    optuna_ids = [t.user_attrs["tune_trial_id"] for t in complete]

    from ray.tune import ExperimentAnalysis

    tune_trials = ExperimentAnalysis(str(workdir / "tune" / "killme")).trials
    tune_ids = [t.trial_id for t in tune_trials if t.status == "TERMINATED"]

    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("killme")
    children = [r for r in client.search_runs([experiment.experiment_id], max_results=1000)
                if r.data.tags.get("samprivacy.kind") == "trial"]
    mlflow_ids = [r.data.tags["samprivacy.trial_id"] for r in children]

    assert len(tune_trials) == BUDGET
    assert len(complete) == len(tune_ids) == len(children) == BUDGET
    assert sorted(optuna_ids) == sorted(tune_ids) == sorted(mlflow_ids)  # the same trials, none twice
    assert all(r.info.status == "FINISHED" and "test_acc" in r.data.metrics for r in children)
    assert_whole_curves(client, children, SPEC["train"]["epochs"])


def assert_whole_curves(client, runs, epochs):
    """Every epoch is in each run's curve; an epoch re-run after a crash logged the same value again."""
    for r in runs:
        history = client.get_metric_history(r.info.run_id, "val_acc")
        assert sorted({m.step for m in history}) == list(range(1, epochs + 1))
        for step in range(1, epochs + 1):
            assert len({m.value for m in history if m.step == step}) == 1


def test_a_killed_trial_worker_is_retried_from_its_last_epoch(tmp_path):
    """SIGKILL the Ray worker running a trial: Tune retries it (max_failures) from its epoch checkpoint."""
    spec = {**SPEC, "name": "crash", "seeds": [0], "optimizers": {"sgd": {}}, "trials": 2, "max_concurrent": 1,
            "max_failures": 1, "checkpoint_interval_s": 0, "train": {"epochs": 8, "batch_size": 32, "lr": 0.05},
            "sampler": {"name": "random", "seed": 0}}
    spec_file = tmp_path / "crash.yaml"
    spec_file.write_text(json.dumps(spec))
    workdir = tmp_path / "work"
    log = open(tmp_path / "run.log", "w")
    driver = samprivacy("run", str(spec_file), "--workdir", str(workdir), stdout=log, stderr=log)
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")

    deadline = time.monotonic() + 240
    while epochs_logged(client, "crash") < 3:
        assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
        time.sleep(0.2)
    logged_before_kill = epochs_logged(client, "crash")
    workers = [pid for pid in descendants(driver.pid) if "ImplicitFunc" in cmdline(pid)]
    assert workers, "no trial worker found under the driver"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    assert driver.wait(timeout=400) == 0, (tmp_path / "run.log").read_text()[-3000:]

    study = optuna.load_study(study_name="crash", storage=f"sqlite:///{workdir}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    experiment = client.get_experiment_by_name("crash")
    children = [r for r in client.search_runs([experiment.experiment_id])
                if r.data.tags.get("samprivacy.kind") == "trial"]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert_whole_curves(client, children, 8)
    # resumed from its checkpoint, not restarted: a restart would have logged all 8 epochs again
    assert max(len(client.get_metric_history(r.info.run_id, "val_acc")) for r in children) < logged_before_kill + 8
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(workdir / "tune" / "crash")).trials
    assert sorted(t.status for t in trials) == ["TERMINATED", "TERMINATED"]
    assert sum(t.num_failures for t in trials) == 1  # the retry happened


def test_an_errored_trial_is_failed_everywhere_then_completed_by_resume(tmp_path):
    """max_failures 0: a killed worker errors its trial. The sweep ends with it FAILED in MLflow (not RUNNING)
    and counted failed; `resume` re-runs it from its checkpoint and Optuna records it COMPLETE."""
    spec = {**SPEC, "name": "errored", "seeds": [0], "optimizers": {"sgd": {}}, "trials": 2, "max_concurrent": 1,
            "max_failures": 0, "checkpoint_interval_s": 0, "train": {"epochs": 30, "batch_size": 32, "lr": 0.05},
            "sampler": {"name": "random", "seed": 0}}
    spec_file = tmp_path / "errored.yaml"
    spec_file.write_text(json.dumps(spec))
    workdir = tmp_path / "work"
    with open(tmp_path / "run.log", "w") as log:
        driver = samprivacy("run", str(spec_file), "--workdir", str(workdir), stdout=log, stderr=log)
        client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
        deadline = time.monotonic() + 240
        while epochs_logged(client, "errored") < 3:  # a few epochs in: there is a checkpoint to resume from
            assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.2)
        workers = [p for p in descendants(driver.pid) if "ImplicitFunc" in cmdline(p)]
        assert workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        assert driver.wait(timeout=400) == 0, (tmp_path / "run.log").read_text()[-3000:]
        experiment = client.get_experiment_by_name("errored")

        def child_statuses():
            return sorted(r.info.status for r in client.search_runs([experiment.experiment_id])
                          if r.data.tags.get("samprivacy.kind") == "trial")

        assert child_statuses() == ["FAILED", "FINISHED"]
        status = subprocess.run([sys.executable, "-m", "samprivacy.cli", "status", "errored", "--workdir",
                                 str(workdir), "--json"], capture_output=True, text=True)
        assert json.loads(status.stdout)["failed"] == 1

        resumed = samprivacy("resume", "errored", "--workdir", str(workdir), stdout=log, stderr=log)
        assert resumed.wait(timeout=400) == 0, (tmp_path / "run.log").read_text()[-3000:]
    study = optuna.load_study(study_name="errored", storage=f"sqlite:///{workdir}/optuna.db")
    complete = {t.user_attrs["tune_trial_id"] for t in study.trials if t.state == TrialState.COMPLETE}
    assert len(complete) == 2
    assert child_statuses() == ["FINISHED", "FINISHED"]
    status = subprocess.run([sys.executable, "-m", "samprivacy.cli", "status", "errored", "--workdir",
                             str(workdir), "--json"], capture_output=True, text=True)
    assert json.loads(status.stdout)["failed"] == 0 and json.loads(status.stdout)["complete"] == 2


def epochs_logged(client, name) -> int:
    """The most epochs any trial of sweep `name` has logged so far (0 before its MLflow store exists)."""
    try:
        runs = client.search_runs([client.get_experiment_by_name(name).experiment_id],
                                  filter_string="tags.`samprivacy.kind` = 'trial'")
        return max((len(client.get_metric_history(r.info.run_id, "val_acc")) for r in runs), default=0)
    except Exception:
        return 0


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Every process below `root` (Linux /proc): the driver's Ray processes and workers."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid]
        found += children
        frontier += children
    return found
