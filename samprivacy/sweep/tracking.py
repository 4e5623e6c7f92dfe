"""MLflow: one summary run per sweep, one run per trial, found again by tags so resume never duplicates.

Trial runs are at the top level of the sweep's experiment (MLflow 3's runs table collapses nested runs under their
parent, hiding the trials): a trial run points to its summary run by the tag `samprivacy.sweep_run_id`. The
"parent"/"child" names below are the roles, not MLflow nesting. Runs that hold no training of their own (a
configuration's mean over its seeds, a duplicate) are nested under the summary run (`record_run`).

Every call goes through an explicit `MlflowClient` (no fluent global state), so the driver and each trial
worker can log to the same store, a SQLite file or an HTTP tracking server alike.
"""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from samprivacy.report.runs import search
from samprivacy.catalog import POPULATION_ATTACKS
from samprivacy.spec import OBJECTIVE_METRICS
from samprivacy.sweep.units import Proposal, Unit, unit_key
from samprivacy.tags import (EXPERIMENT_KIND, TAG_CONFIG, TAG_DUPLICATE_OF, TAG_FAILURE, TAG_GIT_REVISION, TAG_KIND,
                             TAG_PARENT_RUN, TAG_PARETO, TAG_PROPOSAL, TAG_SEED, TAG_SWEEP, TAG_SWEEP_RUN, TAG_TRIAL)

POPULATION_ATTACK_PREFIXES = tuple(f"{a}_" for a in POPULATION_ATTACKS)
_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch
# MLflow prints "View run ..." links to stdout when a run ends against a server; only the CLI prints here.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# A tracking server may restart mid-sweep: MLflow's client retries refused connections and 5xx answers with
# backoff. Waits of 2, 4, 8 ... 120 s (8 retries, about 4 minutes in all) instead of its 4, 8, 16 ... s: a trial
# goes on within seconds of a short restart.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "8")


def git_revision(cwd: str | Path | None = None) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def schema_cache() -> Path:
    """Where the empty MLflow database of each MLflow version is kept: $SAMPRIVACY_CACHE, else
    $XDG_CACHE_HOME/samprivacy, else ~/.cache/samprivacy."""
    if os.environ.get("SAMPRIVACY_CACHE"):
        return Path(os.environ["SAMPRIVACY_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "samprivacy"


def _empty_store() -> Path | None:
    """An empty SQLite tracking database with this MLflow version's schema (what MLflow makes on first use),
    built once per machine and MLflow version; None where the cache cannot be written."""
    try:
        template = schema_cache() / f"mlflow-{mlflow.__version__}.db"
        if template.exists():
            return template
        template.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=template.parent) as tmp:
            MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db").search_experiments()  # every migration, once
            os.replace(Path(tmp) / "mlflow.db", template)  # whole or not at all (two builders: either wins)
    except (OSError, sqlite3.Error, RuntimeError):  # RuntimeError: no home folder to put a cache in
        return None
    return template


def prepare_store(tracking_uri: str) -> None:
    """A new local SQLite tracking database starts as a copy of the cached empty one (`_empty_store`), not by
    MLflow's migrations (1.5 to 2.5 s on every sweep's start). The copy appears whole under its name, so a reader
    that opens the file meanwhile never races a half-made schema. The Default experiment is set to what MLflow
    itself would have written here. Other stores (a server, PostgreSQL, a database that exists) are left to
    MLflow."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    target = Path(tracking_uri.removeprefix("sqlite:///").split("?")[0])
    if target.exists() or (template := _empty_store()) is None:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        shutil.copyfile(template, partial)
        now = int(time.time() * 1000)
        with sqlite3.connect(partial) as db:  # as MlflowClient(tracking_uri) would from this working directory
            db.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                       "WHERE experiment_id = 0", (str(Path("mlruns").resolve() / "0"), now, now))
        db.close()
        os.link(partial, target)  # never over a database another process made meanwhile
    except (OSError, sqlite3.Error):  # made meanwhile, or a filesystem without hard links: MLflow takes over
        pass
    finally:
        partial.unlink(missing_ok=True)


class Tracker:
    """The sweep's view of MLflow: experiment, summary ("parent") run, trial ("child") runs, Pareto tags."""

    def __init__(self, tracking_uri: str, sweep: str, artifact_location: str | None = None):
        prepare_store(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri, self.sweep = tracking_uri, sweep
        self.experiment_id = self._experiment(artifact_location)

    def _experiment(self, artifact_location: str | None) -> str:
        experiment = self.client.get_experiment_by_name(self.sweep)
        if experiment is None:
            try:
                experiment_id = self.client.create_experiment(self.sweep, artifact_location=artifact_location,
                                                              tags=dict([EXPERIMENT_KIND]))
            except Exception:  # created meanwhile by another process
                experiment = self.client.get_experiment_by_name(self.sweep)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        else:
            experiment_id = experiment.experiment_id
            if experiment.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
                self.client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND)
        return experiment_id

    def _find(self, _status: str | None = None, **tags: str) -> list:
        return search(self.client, self.experiment_id, status=_status, **tags)

    def parent_run(self, spec_json: str | None = None, spec_file: str | Path | None = None) -> str:
        """The sweep's parent run: found by tag, created (with the spec and git revision) only the first time."""
        runs = self._find(**{TAG_SWEEP: self.sweep, TAG_KIND: "sweep"})
        if runs:
            run_id = runs[0].info.run_id
            if runs[0].info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=f"{self.sweep} (sweep summary)", tags={
            TAG_SWEEP: self.sweep, TAG_KIND: "sweep", TAG_GIT_REVISION: git_revision()})
        if spec_file is not None:
            self.client.log_artifact(run.info.run_id, str(spec_file), "spec")
        if spec_json is not None:
            self.client.log_text(run.info.run_id, spec_json, "spec/resolved.json")
        return run.info.run_id

    def child_run(self, trial_id: str, parent_run_id: str, params: dict, run_name: str | None = None, *,
                  tags: dict[str, str] | None = None, search: bool = True) -> str:
        """The trial's run: the same one again after a retry or a resume. `search=False`: the caller knows there
        is none yet (the driver, creating it as Tune queues the trial), so no search."""
        runs = self._find(**{TAG_SWEEP: self.sweep, TAG_TRIAL: trial_id}) if search else []
        if runs:
            return runs[0].info.run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name or trial_id, tags={
            TAG_SWEEP: self.sweep, TAG_TRIAL: trial_id, TAG_KIND: "trial", TAG_SWEEP_RUN: parent_run_id,
            **(tags or {})})
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def unit_trial_run(self, trial_id: str, parent_run_id: str, unit: Unit, run_name: str,
                       earlier: str | None = None) -> str:
        """The trial run a unit trains in, created as Tune queues it (its worker logs the params), or the run of
        an `earlier` attempt at the unit, now this Tune trial's."""
        if earlier is not None:
            self.set_tags(earlier, {TAG_TRIAL: trial_id})
            return earlier
        return self.child_run(trial_id, parent_run_id, search=False, params={}, run_name=run_name,
                              tags={TAG_CONFIG: unit.config_id, TAG_SEED: str(unit.seed), TAG_PARETO: "false"})

    def record_proposal(self, parent_run_id: str, proposal: Proposal, config: dict, objectives: tuple[str, ...],
                        repeats: int, training: dict[str, str]) -> None:
        """A told proposal's bookkeeping run: a config run (the mean and std over seeds) for a measured proposal
        with repeats > 1; a duplicate run (no artifacts) pointing at the run whose measurement it reuses.
        `config`: its TrialConfig fields without the seed; `training`: unit key -> run of units training now."""
        means, stds, reason = proposal.result()
        if proposal.duplicate_of is None and (reason is not None or repeats == 1):
            return  # one seed: its trial run is the record; a failed configuration: its trial runs say why
        metrics: dict[str, float] = dict(zip(objectives, means or []))
        if repeats > 1:
            metrics |= {f"{n}_std": s for n, s in zip(objectives, stds)} | {"repeats": repeats}
            config = config | {"seeds": ",".join(map(str, proposal.seeds))}
        key, tags = {TAG_PROPOSAL: str(proposal.number)}, {TAG_CONFIG: proposal.config_id}
        if proposal.duplicate_of is None:
            self.record_run("config", key, parent_run_id, config, metrics, tags, f"config-{proposal.number}")
        else:
            tags[TAG_DUPLICATE_OF] = self._original_run(proposal, repeats, training) or "unknown"
            self.record_run("duplicate", key, parent_run_id, config, metrics, tags, f"duplicate-{proposal.number}",
                            failed_reason=reason)

    def _original_run(self, proposal: Proposal, repeats: int, training: dict[str, str]) -> str | None:
        if repeats > 1 and (found := self.find_run(**{TAG_KIND: "config", TAG_CONFIG: proposal.config_id})):
            return found
        # one seed, or the original's mean not recorded yet (it is told after a snapshot): its first seed's run
        outcome = proposal.outcomes.get(proposal.seeds[0])
        if outcome is None:  # it waited for a unit that is training: that unit's run
            return training.get(unit_key(proposal.config_id, proposal.seeds[0]))
        return outcome.run_id or (self.find_run(**{TAG_TRIAL: outcome.trial_id}) if outcome.trial_id else None)

    def unit_run(self, config_id: str, seed: int) -> str | None:
        """The trial run of an earlier attempt at this configuration and seed that did not fail: a driver that
        takes the unit up again continues it (or, finished, reports it again) instead of starting another."""
        runs = self._find(**{TAG_SWEEP: self.sweep, TAG_KIND: "trial", TAG_CONFIG: config_id, TAG_SEED: str(seed)})
        ranked = sorted((r for r in runs if r.info.status in ("FINISHED", "RUNNING")),
                        key=lambda r: (r.info.status != "FINISHED", -r.info.start_time))
        return ranked[0].info.run_id if ranked else None

    def find_run(self, **tags: str) -> str | None:
        """The id of this sweep's (first) run with these tags, if any."""
        runs = self._find(**{TAG_SWEEP: self.sweep}, **tags)
        return runs[0].info.run_id if runs else None

    def record_run(self, kind: str, key: dict[str, str], parent_run_id: str, params: dict, metrics: dict,
                   tags: dict[str, str], run_name: str, failed_reason: str | None = None) -> str:
        """A finished run that holds no training of its own (a configuration's aggregate over seeds, a duplicate):
        found again by `key` (tags), so a resume never records it twice."""
        found = self.find_run(**{TAG_KIND: kind}, **key)
        if found is not None:
            return found
        # bookkeeping, not measurements: nested under the summary run, so the runs table shows the trials
        run_id = self.client.create_run(self.experiment_id, run_name=run_name, tags={
            TAG_SWEEP: self.sweep, TAG_KIND: kind, TAG_PARENT_RUN: parent_run_id, **key, **tags}).info.run_id
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(params.items()) if v is not None],
                              metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()
                                       if isinstance(v, (int, float)) and math.isfinite(v)])
        self.finish(run_id, failed_reason)
        return run_id

    def child_runs(self, kind: str = "trial", status: str | None = None) -> list:
        """This sweep's runs of `kind`; `status` (e.g. RUNNING) narrows the search in the store."""
        return self._find(**{TAG_SWEEP: self.sweep, TAG_KIND: kind}, _status=status)

    def log_params(self, run_id: str, params: dict) -> None:
        items = [Param(k, str(v)) for k, v in sorted(params.items()) if v is not None]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        self.log_metric_rows(run_id, [(step, metrics)])

    def log_metric_rows(self, run_id: str, rows: list[tuple[int, dict[str, float]]],
                        tags: dict[str, str] | None = None, params: dict | None = None) -> None:
        """Log several steps' metrics (and tags, and up to 100 params) in as few requests as MLflow allows
        (non-finite values are skipped)."""
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for step, metrics in rows for k, v in metrics.items()
                 if isinstance(v, (int, float)) and math.isfinite(v)]
        tag_items = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        param_items = [Param(k, str(v)) for k, v in sorted((params or {}).items()) if v is not None]
        for i in range(0, max(len(items), 1), _BATCH):
            if items[i:i + _BATCH] or (i == 0 and (tag_items or param_items)):
                first = i == 0
                self.client.log_batch(run_id, metrics=items[i:i + _BATCH], tags=tag_items if first else [],
                                      params=param_items if first else [])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, run_id: str, directory: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(directory), artifact_path)

    def finish(self, run_id: str, failed_reason: str | None = None) -> None:
        if failed_reason:
            self.set_tags(run_id, {TAG_FAILURE: failed_reason[:5000]})
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED if failed_reason else
                                                               RunStatus.FINISHED))

    def tag_pareto_runs(self, front_run_ids: set[str], tagged: dict[str, str | None] | None = None) -> int:
        """Tag every trial run pareto=true/false by run id; returns how many are on the front.

        `tagged`: the pareto tag of each finished trial run, as the caller read it (LiveResults): only the runs
        whose tag changes are written, and no run is read. Other trial runs (failed ones) keep the `false` they
        were created with. Without it, every trial run is read."""
        current = tagged if tagged is not None else {r.info.run_id: r.data.tags.get(TAG_PARETO)
                                                     for r in self.child_runs()}
        for run_id, tag in current.items():
            on_front = str(run_id in front_run_ids).lower()
            if tag != on_front:
                self.client.set_tag(run_id, TAG_PARETO, on_front)
        return len(front_run_ids)

    def set_experiment_tags(self, tags: dict[str, str]) -> None:
        """Experiment tags: the description (TAG_NOTE) and the UI's saved views live here."""
        for key, value in tags.items():
            self.client.set_experiment_tag(self.experiment_id, key, value)

    def tag_config_runs(self, front_proposals: set[int]) -> None:
        """Tag every config run (a configuration's aggregate over its seeds) pareto=true/false by whether its
        proposal is on Optuna's front."""
        for run in self.child_runs("config"):
            on_front = str(run.data.tags.get(TAG_PROPOSAL) in {str(n) for n in front_proposals}).lower()
            if run.data.tags.get(TAG_PARETO) != on_front:
                self.client.set_tag(run.info.run_id, TAG_PARETO, on_front)


def trial_metrics(summary: dict) -> dict[str, float]:
    """A trial summary as MLflow metrics: test_acc, attack_acc, attack_<name>_<metric>, ...

    train_acc / val_acc are per-epoch curves in the same run, so the selected model's values are logged as
    selected_train_acc / selected_val_acc; the trial's duration is trial_seconds (epoch_seconds is a curve).
    """
    curves = ("train_acc", "val_acc")
    metrics = {k: summary[k] for k in (*OBJECTIVE_METRICS, "best_epoch")
               if k not in curves and summary.get(k) is not None}
    metrics |= {f"selected_{k}": summary[k] for k in curves}
    metrics["trial_seconds"] = summary["seconds"]
    metrics |= {k: v for k, v in summary.items() if k.endswith("_std") and isinstance(v, float)}  # populations
    # populations: every population attack's figures (per target, intervals, negatives); None (missing) is left out
    metrics |= {k: v for k, v in summary.items() if k.startswith(POPULATION_ATTACK_PREFIXES)
                and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for suffix, table in (("", "attacks"), ("_std", "attacks_std")):
        for name, values in summary.get(table, {}).items():
            for key, value in values.items():
                if value is not None:
                    metrics[f"attack_{name}_{key}{suffix}"] = value
    return metrics
