"""Publish a sweep's results where people look: MLflow, read back from MLflow itself.

    publish(spec, tracker, summary_run_id, folder) -> Publication

Reads the finished trial runs (report.runs), groups them by configuration, and writes back: the configuration
id on runs that lack one, `pareto=true/false` on every trial run (the front of configuration means), the report
files (plots, front, Table 1/2) as artifacts of the summary run under `report/`, the summary run's description
(the tables) and the experiment's description (summary line, plot, front table) and saved views.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from samprivacy.report import page
from samprivacy.report.bundle import ReportFiles, write_report
from samprivacy.report.records import SweepResults
from samprivacy.report.runs import load_results
from samprivacy.spec import SweepSpec
from samprivacy.sweep.tracking import Tracker
from samprivacy.tags import TAG_CONFIG, TAG_NOTE


@dataclass(frozen=True)
class Publication:
    results: SweepResults
    report: ReportFiles
    ui_path: str  # the experiment's runs table, to append to a UI's address


def _link_base(tracking_uri: str) -> str:
    # A tracking server's UI has an address; a SQLite store is shown by `samprivacy ui` at its root ("").
    return tracking_uri if tracking_uri.startswith(("http://", "https://")) else ""


def publish(spec: SweepSpec, tracker: Tracker, summary_run_id: str, folder: str | Path) -> Publication:
    results = load_results(tracker.tracking_uri, spec.name, spec.objectives)
    for trial in results.trials:
        if trial.config_id is None:  # before replicates existed, runs had no config id: the same hash as here
            tracker.set_tags(trial.run_id, {TAG_CONFIG: trial.config_key})
    front = {run for config in results.front() for run in config.run_ids}
    tracker.tag_pareto_runs(front)
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
