"""A sweep's results read back from MLflow (no Ray, no Optuna): its finished `trial` runs as `TrialRecord`s.

Runs are found by the tags every sweep run carries (`samprivacy.sweep`, `samprivacy.kind`), so this works on a
finished sweep's SQLite file and on a tracking server alike, and before or after replicates exist: `config` and
`duplicate` runs are the service's bookkeeping, the trial runs are the measurements.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow.tracking import MlflowClient
from mlflow.entities import Run

from samprivacy.errors import ConfigError
from samprivacy.report.records import SweepResults, TrialRecord
from samprivacy.tags import TAG_CONFIG, TAG_KIND, TAG_SWEEP, TAG_TRIAL


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def search(client: MlflowClient, experiment_id: str, status: str | None = None, **tags: str) -> list:
    """Every run of the experiment with these tag values, and this status if given (e.g. RUNNING), paged: a
    sweep may have more than one page."""
    clauses = " and ".join([f"tags.`{k}` = '{_quote(v)}'" for k, v in tags.items()]
                           + ([f"attributes.status = '{status}'"] if status else []))
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=clauses, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def trial_record(run: Run) -> TrialRecord:
    return TrialRecord(run_id=run.info.run_id, name=run.info.run_name or run.info.run_id, params=dict(run.data.params),
                       metrics=dict(run.data.metrics), trial_id=run.data.tags.get(TAG_TRIAL),
                       config_id=run.data.tags.get(TAG_CONFIG))


def load_results(tracking_uri: str, sweep: str, objectives: Mapping[str, str]) -> SweepResults:
    """The sweep's FINISHED trial runs, grouped by configuration, with its experiment and summary run ids."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(sweep)
    if experiment is None:
        raise ConfigError(f"no MLflow experiment '{sweep}' at {tracking_uri}; has the sweep started? "
                          f"(`samprivacy status {sweep}`)")
    eid = experiment.experiment_id
    trials = [trial_record(r) for r in search(client, eid, **{TAG_SWEEP: sweep, TAG_KIND: "trial"})
              if r.info.status == "FINISHED"]
    trials.sort(key=lambda t: (t.trial_id or "", t.run_id))
    summary = search(client, eid, **{TAG_SWEEP: sweep, TAG_KIND: "sweep"})
    return SweepResults.build(sweep, objectives, trials, experiment_id=eid,
                              summary_run_id=summary[0].info.run_id if summary else None)
