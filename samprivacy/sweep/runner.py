"""Run and resume sweeps: Ray Tune executes units of work, SweepSearch (Optuna) proposes them, MLflow records them.

    run(spec)    -> a new sweep (refuses to overwrite one that exists: that is what resume is for)
    resume(name) -> Tune restores unfinished and errored trials; finished ones never re-run; open Optuna
                    proposals are taken up again; the same MLflow runs are found again by their ids and tags
A sweep runs as Tune experiments of at most SEGMENT_TRIALS trials each (`tune/<name>`, `<name>.1`, ...), so
Tune's experiment state, its trial folders and the driver's memory stay bounded however long the sweep. Both
end by publishing the Pareto front (publish.py): `pareto=true` tags on trial runs, plots and tables on the
summary run, the front in the experiment's description.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune import ResultGrid
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from samprivacy.compat import (clear_pending_trial_decisions, drop_torn_searcher_state,
                               release_concurrency_limiter, restore_deleted_checkpoints, tune_trials)
from samprivacy.errors import ConfigError
from samprivacy.spec import SweepSpec
from samprivacy.sweep.cluster import join_cluster, start_ray  # noqa: F401 (start_ray: runner's API)
from samprivacy.sweep.progress import TrialStates, watching
from samprivacy.sweep.publish import LiveResults, publish
from samprivacy.sweep.results import (PROGRESS_FILE, Sweep, measured_rows, open_sweep, pareto_report, sweep_status,
                                      trial_rows)
from samprivacy.sweep.search import SweepSearch, restoring
from samprivacy.sweep.study import (STOP_REASON, SweepStudy, complete_late, fail_stale_trials, load_study,
                                    objective_values, optuna_storage)
from samprivacy.sweep.tracking import Tracker
from samprivacy.sweep.trial import RUN_TRIAL, SweepContext, run_sweep_trial
from samprivacy.tags import TAG_SPEC_HASH, TAG_STOP_REASON, TAG_TRIAL, TAG_WORKDIR

SEGMENT_TRIALS = 1000  # Tune trials per Tune experiment (see the module's docstring)

# Per-epoch reports carry no objectives (those come once, at the end): SweepSearch checks them itself.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
# Every trial checkpoint forces a snapshot (num_to_keep=1): intended, so Tune's warning about it is noise.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# No result.json / progress.csv / TensorBoard files per trial: MLflow holds every metric and curve.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Tune's new console output prints an experiment box even with verbose=0; the CLI shows its own progress.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

Progress = Callable[[dict], None]
optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("mlflow").setLevel(logging.WARNING)
# Tune's results grid looks for the per-trial result files that the disabled loggers would write: expected.
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
log = logging.getLogger(__name__)


def prepare(spec: SweepSpec, workdir: str | Path | None = None) -> Sweep:
    if workdir is not None:
        spec = spec.with_workdir(workdir)
    return Sweep(spec, spec.resolved_storage())


def run(spec: SweepSpec, *, workdir: str | Path | None = None, address: str | None = None,
        spec_file: str | Path | None = None, on_progress: Progress | None = None, work: str | None = None) -> dict:
    """A new sweep. `work`: the "module:function" each trial runs instead of pipeline.run_trial (tests and
    benchmarks give a trivial one); a resume must be given the same."""
    sweep = prepare(spec, workdir)
    with ThreadPoolExecutor(1, thread_name_prefix="samprivacy-preflight") as pool:
        checked = pool.submit(preflight, spec)  # meanwhile Ray starts or is joined (a local Ray: seconds)
        # first: a trial no node can hold stops the sweep before any state
        note = join_cluster(spec.resources, address)
        if (sweep.storage.workdir / "sweep.json").exists() or tune.Tuner.can_restore(sweep.experiment_path):
            raise ConfigError(f"sweep '{spec.name}' already has state in {sweep.storage.workdir}; continue it with "
                              f"`samprivacy resume {spec.name} --workdir {sweep.storage.workdir}`, or choose "
                              f"another `name` or --workdir")
        if spec.storage.optuna_url and spec.name in optuna.get_all_study_names(
                optuna_storage(spec.storage.optuna_url)):
            # A shared study server: another workdir's sweep of this name may be running; never take it over.
            raise ConfigError(f"the Optuna storage already holds a study named '{spec.name}'; resume that sweep "
                              f"from its workdir, or give this one another `name`")
        checked.result()  # a missing or malformed data file stops the sweep before any state, too
    sweep.save()
    return _execute(sweep, spec_file, on_progress, note, work)


def preflight(spec: SweepSpec) -> None:
    """Read each dataset once in the driver, so a missing or malformed file stops the sweep before anything
    starts (instead of failing every trial on the workers). Read as numpy arrays: the driver never imports
    torch (seconds of the sweep's start)."""
    from samprivacy.learn.data import read_dataset

    for name in spec.datasets:
        read_dataset(name, root=_data_root(spec), seed=spec.seeds[0], download=spec.download,
                     **spec.dataset_options.get(name, {}))


def resume(name: str, *, workdir: str | Path | None = None, address: str | None = None,
           on_progress: Progress | None = None, work: str | None = None) -> dict:
    sweep = open_sweep(name, workdir)
    note = join_cluster(sweep.spec.resources, address)
    return _execute(sweep, None, on_progress, note, work)



def _restorable(path: str) -> bool:
    """Tune can resume only from an experiment-state snapshot. `Tuner.can_restore` also says yes when just
    tuner.pkl exists (a driver killed before its first snapshot), and the restore then half-fails; start that
    segment afresh instead: its open Optuna proposals are taken up again, MLflow's partial runs are cleaned up
    in finalize."""
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


def _stop_if_interrupted(spec: SweepSpec, grid: ResultGrid, search: SweepSearch | None = None) -> None:
    """Tune ends an experiment on Ctrl-C (SIGINT) or SIGUSR1 by saving its state and returning as if it were
    done: the sweep must stop there too (not start the next segment), leaving its open proposals to `resume`.
    Interrupted: a trial Tune left unfinished, or (for a new experiment) a searcher that never said FINISHED."""
    if grid.num_terminated + grid.num_errors < len(grid) or (search is not None and not search.finished):
        raise KeyboardInterrupt(f"interrupted: the sweep's state is saved; `samprivacy resume {spec.name}` "
                                f"continues it")


def _execute(sweep: Sweep, spec_file: str | Path | None, on_progress: Progress | None, note: str | None, work: str | None) -> dict:
    """Run the sweep's segments: first every earlier one that Tune can restore (its unfinished and errored
    trials), then new ones while the book wants more (a restored searcher takes up open proposals)."""
    spec = sweep.spec
    tracker = _tracker(sweep)
    parent = tracker.parent_run(spec.canonical_json(), spec_file)
    tracker.set_tags(parent, {TAG_SPEC_HASH: spec.spec_hash(), TAG_WORKDIR: str(sweep.storage.workdir)})
    ctx = SweepContext(spec, sweep.storage.mlflow_uri, parent, _data_root(spec),
                       references=str(sweep.storage.workdir / "references"), work=work or RUN_TRIAL)
    trainable = tune.with_resources(tune.with_parameters(run_sweep_trial, ctx=ctx),
                                    {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    late = []  # trials a restore finished: their proposal may have failed before (an error)
    with watching(spec.name, sweep.storage.workdir / PROGRESS_FILE, on_progress, note) as watch:
        watch.results = live = LiveResults(tracker)  # read as trials end: the end reads only the last few
        segment = 0
        while _restorable(sweep.segment_path(segment)):
            clear_pending_trial_decisions(sweep.segment_path(segment))  # a dead driver's (samprivacy.compat)
            drop_torn_searcher_state(sweep.segment_path(segment))  # Tune would refuse to restore the experiment
            release_concurrency_limiter(sweep.segment_path(segment))  # a snapshot of an earlier version's
            for trial_id, source in restore_deleted_checkpoints(sweep.segment_path(segment)).items():
                log.warning("trial %s: Tune deleted the checkpoint its last snapshot names (the driver stopped before "
                            "the next snapshot reached storage); it goes on from %s", trial_id,
                            source or "its first epoch: no later checkpoint is left")
            # which trials run again comes from Tune's own snapshot on storage, not from the searcher's file of it,
            # which a kill during Tune's copy of the snapshot can leave from another moment (search.restoring)
            with restoring(tune_trials(sweep.segment_path(segment))):
                tuner = tune.Tuner.restore(sweep.segment_path(segment), trainable, resume_unfinished=True,
                                           resume_errored=True)
                grid = tuner.fit()
            late += [r for r in (grid[i] for i in range(len(grid))) if r.error is None and r.config
                     and "optuna_trial" in r.config]
            if watch.search is not None:
                watch.search.flush()  # Tune's final snapshot of this experiment is on storage
            _stop_if_interrupted(spec, grid)
            segment += 1
        # after restored segments, the last one's book goes on (what it holds in memory and snapshots, e.g. the
        # ends of seeds whose configuration is still open, is not in the study)
        search = (watch.search.next_segment() if watch.search is not None
                  else SweepSearch(ctx, sweep.storage.optuna_url, SEGMENT_TRIALS))
        while search.has_work():
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=search, num_samples=-1, max_concurrent_trials=spec.max_concurrent,
                                            scheduler=LiveFIFOScheduler(),
                                            reuse_actors=True),  # a new actor per trial re-imports torch: seconds
                run_config=tune.RunConfig(
                    name=sweep.segment_name(segment), storage_path=sweep.storage.tune_storage, verbose=0,
                    failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1), callbacks=[TrialStates(spec.name)]))
            grid = tuner.fit()
            search.flush()
            _stop_if_interrupted(spec, grid, search)
            search = search.next_segment()
            segment += 1
        watch.search = search
        proposer = search.connect()
        outcome = finalize(sweep, tracker, parent, late, proposer.book.stop_reason(), proposer.handle, live)
        watch.tick(force=True)
    return outcome | {"note": note}


class LiveFIFOScheduler(FIFOScheduler):
    """Tune's FIFO scheduler looks for a pending trial among all trials, finished ones included, on every step:
    O(trials) per step. The live ones suffice."""

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        for status in (Trial.PENDING, Trial.PAUSED):
            for trial in tune_controller.get_live_trials():
                if trial.status == status:
                    return trial
        return None


def finalize(sweep: Sweep, tracker: Tracker, parent: str, late: list, stop_reason: str | None,
             opened: SweepStudy | None = None, live: LiveResults | None = None) -> dict:
    """Reconcile Optuna and MLflow with Tune's final results, then publish the Pareto front to MLflow.

    `opened`: the driver's open study and `live` its copy of the finished runs, so that this reads only what
    ended last, whatever the sweep's size (without them, the study and every run are read).

    `late` holds results of trials that a restore finished: a proposal that failed when one of them errored is
    completed by a copy. Tune has returned, so no trial is live: an Optuna trial still RUNNING belongs to none,
    and a trial run still RUNNING is either a failed trial's or an orphan's (started by a driver that died)."""
    spec = sweep.spec
    handle = opened if opened is not None else load_study(spec.name, sweep.storage.optuna_url)
    study = handle.study
    failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    finished_late: dict[int, dict[int, tuple[str, list[float]]]] = {}  # proposal -> seed -> (Tune trial, values)
    for result in late:
        values, reason = objective_values(result.metrics, list(spec.objective_names), error=False)
        if values is not None and result.config["optuna_trial"] in failed:
            finished_late.setdefault(result.config["optuna_trial"], {})[result.config["seed"]] = (
                result.metrics["trial_id"], values)
    for number, seeds in finished_late.items():
        complete_late(study, spec, number, seeds)
    fail_stale_trials(handle, spec)
    if stop_reason:
        study.set_user_attr(STOP_REASON, stop_reason)
    rows = trial_rows(sweep, study)
    measured = measured_rows(rows)
    complete = {i for r in measured if r["state"] == "COMPLETE" for i in r["trial_ids"]}
    failures = {i: r["fail_reason"] for r in rows if r["state"] == "FAIL" for i in r["trial_ids"]}
    for run in tracker.child_runs(status="RUNNING"):
        trial_id = run.data.tags.get(TAG_TRIAL)
        if trial_id in complete:
            continue
        if trial_id in failures:  # errored on its last retry: say so instead of RUNNING forever
            tracker.finish(run.info.run_id, failed_reason=failures[trial_id] or "the trial raised an error")
        else:  # a trial the record never kept (the driver died as it started): a partial run, to the trash
            tracker.client.delete_run(run.info.run_id)
    # Optuna's record, one point per proposal: its json on the summary run (`samprivacy pareto` draws it on demand;
    # the plots people read are the published report's)
    report = pareto_report(sweep, rows=rows, draw=False)
    if spec.repeats > 1:  # only replicates have configuration-mean runs
        tracker.tag_config_runs({r["number"] for r in report["front"]})
    tracker.client.log_artifact(parent, report["files"]["json"], "pareto")
    # What people read: the front of configuration means, plots, tables, the experiment's description (MLflow)
    if live is not None:
        live.finish()
    published = publish(sweep.spec, tracker, parent, sweep.storage.workdir / "report", live, complete)
    status = sweep_status(sweep, rows, live=False, study=study)
    metrics = {"trials_complete": status["complete"], "trials_failed": status["failed"],
               "trials_duplicate": status["duplicates"], "proposals": status["proposals"],
               "pareto_size": published.report.front_size}
    if published.report.hypervolume is not None:
        metrics["hypervolume"] = published.report.hypervolume
    tracker.log_metrics(parent, metrics)
    if stop_reason:
        tracker.set_tags(parent, {TAG_STOP_REASON: stop_reason})
    tracker.finish(parent)  # Tune returned: every trial reached a final state
    return {"status": status, "pareto": report, "parent_run_id": parent, "experiment_id": tracker.experiment_id,
            "mlflow_uri": sweep.storage.mlflow_uri, "ui_path": published.ui_path,
            "report_dir": str(published.report.folder)}
