"""Run and resume sweeps: Ray Tune executes trials, SweepSearch (Optuna) proposes them, MLflow records them.

    run(spec)    -> a new sweep (refuses to overwrite one that exists: that is what resume is for)
    resume(name) -> Tune restores unfinished and errored trials; finished ones never re-run; stale
                    RUNNING Optuna trials are failed; the same MLflow runs are found again by their tags
Both end by writing the Pareto front: `pareto=true` tags on child runs, plot and table on the parent run.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable

import optuna
from ray import tune

from samprivacy.errors import ConfigError
from samprivacy.spec import SweepSpec
from samprivacy.sweep.cluster import join_cluster, start_ray  # noqa: F401 (start_ray: runner's API)
from samprivacy.sweep.results import Sweep, open_sweep, pareto_report, sweep_status, trial_rows
from samprivacy.sweep.search import (SweepSearch, fail_stale_trials, load_study, objective_values, optuna_storage,
                                     record_completion)
from samprivacy.sweep.tracking import TAG_TRIAL, Tracker
from samprivacy.sweep.trial import SweepContext, run_sweep_trial

# Per-epoch reports carry no objectives (those come once, at the end): SweepSearch checks them itself.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
# Save Tune's experiment state every 5 s (default: at least 10 s) so a killed driver loses little.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
# Every epoch checkpoint forces a snapshot (num_to_keep=1): intended, so Tune's warning about it is noise.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

# Tune's new console output prints an experiment box even with verbose=0; the CLI shows its own progress.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

Progress = Callable[[dict], None]
optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("mlflow").setLevel(logging.WARNING)


def prepare(spec: SweepSpec, workdir: str | Path | None = None) -> Sweep:
    if workdir is not None:
        spec = spec.with_workdir(workdir)
    return Sweep(spec, spec.resolved_storage())


def run(spec: SweepSpec, *, workdir: str | Path | None = None, address: str | None = None,
        spec_file: str | Path | None = None, on_progress: Progress | None = None) -> dict:
    sweep = prepare(spec, workdir)
    note = join_cluster(spec.resources, address)  # first: a trial no node can hold stops the sweep before any state
    if (sweep.storage.workdir / "sweep.json").exists() or tune.Tuner.can_restore(sweep.experiment_path):
        raise ConfigError(f"sweep '{spec.name}' already has state in {sweep.storage.workdir}; continue it with "
                          f"`samprivacy resume {spec.name} --workdir {sweep.storage.workdir}`, or choose another "
                          f"`name` or --workdir")
    if spec.storage.optuna_url and spec.name in optuna.get_all_study_names(optuna_storage(spec.storage.optuna_url)):
        # A shared study server: another workdir's sweep of this name may be running; never take it over.
        raise ConfigError(f"the Optuna storage already holds a study named '{spec.name}'; resume that sweep from "
                          f"its workdir, or give this one another `name`")
    preflight(spec)
    sweep.save()
    return _execute(sweep, spec_file, on_progress, restore=False, note=note)


def preflight(spec: SweepSpec) -> None:
    """Load each dataset once in the driver, so a missing or malformed file stops the sweep before anything
    starts (instead of failing every trial on the workers)."""
    from samprivacy.learn.data import load_dataset

    for name in spec.datasets:
        load_dataset(name, root=_data_root(spec), seed=spec.seeds[0], download=spec.download)


def resume(name: str, *, workdir: str | Path | None = None, address: str | None = None,
           on_progress: Progress | None = None) -> dict:
    sweep = open_sweep(name, workdir)
    note = join_cluster(sweep.spec.resources, address)
    return _execute(sweep, None, on_progress, restore=_restorable(sweep.experiment_path), note=note)



def _restorable(path: str) -> bool:
    """Tune can resume only from an experiment-state snapshot. `Tuner.can_restore` also says yes when just
    tuner.pkl exists (a driver killed before its first snapshot), and the restore then half-fails; start afresh
    instead: Optuna's orphaned trial is failed as stale, MLflow's partial run is cleaned up in finalize."""
    if "://" in path:  # object storage: trust Tune
        return tune.Tuner.can_restore(path)
    return any(Path(path).glob("experiment_state-*.json"))


def _tracker(sweep: Sweep) -> Tracker:
    # A tracking server chooses its own artifact store; a database (SQLite, PostgreSQL) needs one from us.
    local = not sweep.storage.mlflow_uri.startswith(("http://", "https://", "databricks"))
    artifacts = (sweep.storage.workdir / "mlartifacts").as_uri() if local else None
    return Tracker(sweep.storage.mlflow_uri, sweep.spec.name, artifact_location=artifacts)


def _data_root(spec: SweepSpec) -> str | None:
    # Trials run in Ray's own folders: a relative path must be made absolute where the user meant it.
    return str(Path(spec.data_root).expanduser().resolve()) if spec.data_root else None


def _execute(sweep: Sweep, spec_file, on_progress: Progress | None, restore: bool, note: str | None) -> dict:
    spec = sweep.spec
    tracker = _tracker(sweep)
    parent = tracker.parent_run(spec.canonical_json(), spec_file)
    tracker.set_tags(parent, {"samprivacy.spec_hash": spec.spec_hash(), "samprivacy.workdir": str(sweep.storage.workdir)})
    context = SweepContext(spec, sweep.storage.mlflow_uri, parent, _data_root(spec))
    trainable = tune.with_resources(tune.with_parameters(run_sweep_trial, ctx=context),
                                    {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    if restore:
        tuner = tune.Tuner.restore(sweep.experiment_path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=SweepSearch(spec, sweep.storage.optuna_url),
                                        num_samples=spec.n_trials, max_concurrent_trials=spec.max_concurrent,
                                        reuse_actors=True),  # a new actor per trial re-imports torch: seconds
            run_config=tune.RunConfig(
                name=spec.name, storage_path=sweep.storage.tune_storage, verbose=0,
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    with _polling(sweep, on_progress, note):
        grid = tuner.fit()
    finished = {r.metrics["trial_id"]: r.metrics for r in grid if r.error is None and r.metrics.get("trial_id")}
    return finalize(sweep, tracker, parent, finished) | {"note": note}


def finalize(sweep: Sweep, tracker: Tracker, parent: str, finished: dict[str, dict]) -> dict:
    """Reconcile Optuna and MLflow with Tune's final results, then publish the Pareto front to MLflow.

    `finished` maps Tune trial ids to their last result. Tune has returned, so no trial is live: an Optuna trial
    still RUNNING belongs to none, and a child run still RUNNING is either a failed trial's or an orphan's.
    """
    study = load_study(sweep.spec.name, sweep.storage.optuna_url)
    fail_stale_trials(study)
    for trial_id, result in finished.items():  # e.g. an errored trial that a resume finished
        values, reason = objective_values(result, list(sweep.spec.objective_names), error=False)
        if reason is None:
            record_completion(study, trial_id, values)
    rows = trial_rows(sweep)
    complete = {r["trial_id"] for r in rows if r["state"] == "COMPLETE"}
    failed = {r["trial_id"]: r["fail_reason"] for r in rows if r["state"] == "FAIL" and r["trial_id"]
              and not (r["fail_reason"] or "").startswith("stale")}
    for run in tracker.child_runs():
        trial_id = run.data.tags.get(TAG_TRIAL)
        if run.info.status in ("FINISHED", "FAILED") or trial_id in complete:
            continue
        if trial_id in failed:  # errored on its last retry: say so instead of RUNNING forever
            tracker.finish(run.info.run_id, failed_reason=failed[trial_id] or "the trial raised an error")
        else:  # a trial the record never kept (the driver died as it started): a partial run, to the trash
            tracker.client.delete_run(run.info.run_id)
    report = pareto_report(sweep)
    tracker.tag_pareto({r["trial_id"] for r in report["front"]})
    for kind in ("png", "html", "json"):
        if kind in report["files"]:
            tracker.client.log_artifact(parent, report["files"][kind], "pareto")
    status = sweep_status(sweep)
    metrics = {"trials_complete": status["complete"], "trials_failed": status["failed"],
               "pareto_size": len(report["front"])}
    if report["hypervolume"] is not None:
        metrics["hypervolume"] = report["hypervolume"]
    tracker.log_metrics(parent, metrics)
    tracker.finish(parent)  # Tune returned: every trial reached a final state
    return {"status": status, "pareto": report, "parent_run_id": parent, "experiment_id": tracker.experiment_id,
            "mlflow_uri": sweep.storage.mlflow_uri}


class _polling:
    """Call on_progress(status) about once a second while the sweep runs (reads the Optuna study only)."""

    def __init__(self, sweep: Sweep, on_progress: Progress | None, note: str | None):
        self.sweep, self.on_progress, self.note, self.stop = sweep, on_progress, note, threading.Event()

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self.on_progress(sweep_status(self.sweep) | {"note": self.note})
            except Exception:  # the study may be mid-write; the next poll will do
                pass

    def __enter__(self):
        if self.on_progress is not None:
            self.thread = threading.Thread(target=self._loop, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.on_progress is not None and exc[0] is None:
            self.thread.join()
            self.on_progress(sweep_status(self.sweep))  # the final state, not the last poll's
        return False
