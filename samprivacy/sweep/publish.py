"""Publish a sweep's results where people look: MLflow, read back from MLflow itself.

    publish(spec, tracker, summary_run_id, folder, live=None) -> Publication

Reads the finished trial runs (report.runs), groups them by configuration, and writes back: the configuration
id on runs that lack one, `pareto=true/false` on every trial run (the front of configuration means), the report
files (plots, front, Table 1/2) as artifacts of the summary run under `report/`, the summary run's description
(the tables) and the experiment's description (summary line, plot, front table) and saved views.

A running driver keeps a `LiveResults`: the finished trial runs read as they end, so that publishing at the end
of a sweep reads only its last few runs and writes only the pareto tags that change, whatever the sweep's size.
What it publishes is what a full read would (`samprivacy report` reads everything, as before).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from samprivacy.report import page
from samprivacy.report.bundle import ReportFiles, write_report
from samprivacy.report.records import SweepResults, TrialRecord
from samprivacy.report.runs import load_results, results_of, runs_by_id, search, trial_record
from samprivacy.spec import SweepSpec
from samprivacy.sweep.tracking import Tracker
from samprivacy.tags import TAG_CONFIG, TAG_KIND, TAG_NOTE, TAG_PARETO, TAG_SWEEP, TAG_TRIAL

log = logging.getLogger(__name__)
READ_PERIOD_S = 1.0  # LiveResults reads the runs that ended at most this often, in one query per 100 runs


class LiveResults:
    """The sweep's FINISHED trial runs as `TrialRecord`s (with each run's pareto tag), kept up to date while the
    driver runs, so that the end of a sweep does not read every run again (a full read grows with the sweep).

    A thread reads, first, every trial run MLflow already holds (a resumed sweep's earlier runs), then each run
    whose Tune trial ended (`ended`: the driver's Tune callback), by id, in batches. `finish` reads what is left;
    `records` gives what a full read (`report.runs.load_results`) would, or None when this copy cannot vouch for
    that (a read failed, or a measured Tune trial has no record here): the caller then reads everything."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracking_uri, self.experiment_id, self.sweep = tracker.tracking_uri, tracker.experiment_id, tracker.sweep
        self.runs: dict[str, tuple[TrialRecord, str | None]] = {}  # run id -> (record, its pareto tag)
        self.error: BaseException | None = None
        self._ended: queue.SimpleQueue[tuple[str | None, str] | None] = queue.SimpleQueue()
        self._finishing = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"samprivacy-results-{self.sweep}", daemon=True)
        self._thread.start()

    def ended(self, run_id: str | None, trial_id: str) -> None:
        """Tune trial `trial_id` ended (completed, failed or errored); `run_id`: its MLflow run, when known."""
        self._ended.put((run_id, trial_id))

    def finish(self) -> None:
        """Read the runs that ended last and stop reading (again: nothing)."""
        if self._thread.is_alive():
            self._finishing.set()
            self._ended.put(None)
            self._thread.join()

    def records(self, measured_trials: Collection[str]) -> list[TrialRecord] | None:
        """The finished trial runs (call `finish` first), or None if a Tune trial in `measured_trials` (those the
        study says were measured) has no finished run here or a read failed."""
        if self.error is not None:
            log.warning("reading the sweep's runs as they ended failed (%s): reading them all", self.error)
            return None
        held = {record.trial_id for record, _ in self.runs.values()}
        if missing := [t for t in measured_trials if t not in held]:
            log.warning("%d measured trials have no finished run in the driver's copy (e.g. %s): reading all runs",
                        len(missing), missing[0])
            return None
        return [record for record, _ in self.runs.values()]

    def _read(self) -> None:
        client = MlflowClient(tracking_uri=self.tracking_uri)
        stop = False  # `finish` has asked (its None has been taken from the queue)
        try:
            self._take(search(client, self.experiment_id, **{TAG_SWEEP: self.sweep, TAG_KIND: "trial"}))
            while not stop:
                batch = [self._ended.get()]
                self._finishing.wait(READ_PERIOD_S)  # let the runs that end meanwhile join this read
                while not self._ended.empty():
                    batch.append(self._ended.get())
                stop = None in batch
                ended = [item for item in batch if item is not None]
                runs = runs_by_id(client, self.experiment_id, [r for r, _ in ended if r])
                for _, trial_id in (item for item in ended if item[0] is None):  # a run the worker made
                    runs += search(client, self.experiment_id, **{TAG_SWEEP: self.sweep, TAG_TRIAL: trial_id})
                self._take(runs)
                # the report's plots need matplotlib: imported here, once the first trials have ended (not during
                # the sweep's start, and not at its end)
                import matplotlib.figure  # noqa: F401
        except Exception as exc:  # the end of the sweep reads everything instead; the sweep itself goes on
            self.error = exc
            while not stop:  # wait for `finish` (unless its None came with the batch that failed)
                stop = self._ended.get() is None

    def _take(self, runs: list[Run]) -> None:
        for run in runs:
            if run.info.status == "FINISHED" and run.data.tags.get(TAG_KIND) == "trial":
                self.runs[run.info.run_id] = (trial_record(run), run.data.tags.get(TAG_PARETO))
            else:
                self.runs.pop(run.info.run_id, None)


@dataclass(frozen=True)
class Publication:
    results: SweepResults
    report: ReportFiles
    ui_path: str  # the experiment's runs table, to append to a UI's address


def _link_base(tracking_uri: str) -> str:
    # A tracking server's UI has an address; a SQLite store is shown by `samprivacy ui` at its root ("").
    return tracking_uri if tracking_uri.startswith(("http://", "https://")) else ""


def publish(spec: SweepSpec, tracker: Tracker, summary_run_id: str, folder: str | Path,
            live: LiveResults | None = None, measured_trials: Collection[str] = ()) -> Publication:
    """`live`: the driver's copy of the finished runs (finished reading), vouched for by `measured_trials`; without
    it, or when it cannot vouch, every run is read."""
    tagged: dict[str, str | None] | None = None  # each finished trial run's pareto tag, when known without a read
    if live is not None and (records := live.records(measured_trials)) is not None:
        results = results_of(spec.name, spec.objectives, records, tracker.experiment_id, summary_run_id)
        tagged = {run_id: tag for run_id, (_, tag) in live.runs.items()}
    else:
        results = load_results(tracker.tracking_uri, spec.name, spec.objectives)
    for trial in results.trials:
        if trial.config_id is None:  # before replicates existed, runs had no config id: the same hash as here
            tracker.set_tags(trial.run_id, {TAG_CONFIG: trial.config_key})
    front = {run for config in results.front() for run in config.run_ids}
    tracker.tag_pareto_runs(front, tagged)
    report = write_report(results, folder, _link_base(tracker.tracking_uri))
    for path in report.files.values():
        tracker.client.log_artifact(summary_run_id, str(path), page.ARTIFACT_DIR)
    plot = f"{page.ARTIFACT_DIR}/pareto.png" if "pareto.png" in report.files else None
    description = page.experiment_description(results, plot)
    tracker.set_experiment_tags({TAG_NOTE: description, **dict(page.sweep_views(results))} if results.configs
                                else {TAG_NOTE: description})
    tracker.set_tags(summary_run_id, {TAG_NOTE: page.experiment_description(
        results, plot, tables=report.markdown_tables, limit=page.RUN_NOTE_CHARS)})
    return Publication(results, report, page.runs_url(tracker.experiment_id))
