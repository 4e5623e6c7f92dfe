"""A sweep's results read back from MLflow (no Ray, no Optuna): its finished `trial` runs as `TrialRecord`s.

Runs are found by the tags every sweep run carries (`samprivacy.sweep`, `samprivacy.kind`), so this works on a
finished sweep's SQLite file and on a tracking server alike, and before or after replicates exist: `config` and
`duplicate` runs are the service's bookkeeping, the trial runs are the measurements.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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
    return search_filter(client, experiment_id, clauses)


def search_filter(client: MlflowClient, experiment_id: str, clauses: str) -> list:
    """Every run of the experiment that the MLflow filter string `clauses` selects, paged."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=clauses, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def runs_by_id(client: MlflowClient, experiment_id: str, run_ids: list[str]) -> list:
    """These runs of the experiment (those that exist and are not deleted), in pages of 100 ids."""
    runs = []
    for i in range(0, len(run_ids), 100):
        ids = ", ".join(f"'{_quote(r)}'" for r in run_ids[i:i + 100])
        runs += search_filter(client, experiment_id, f"attributes.run_id IN ({ids})")
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
    summary = search(client, eid, **{TAG_SWEEP: sweep, TAG_KIND: "sweep"})
    return results_of(sweep, objectives, trials, eid, summary[0].info.run_id if summary else None)


def results_of(sweep: str, objectives: Mapping[str, str], trials: Iterable[TrialRecord], experiment_id: str,
               summary_run_id: str | None) -> SweepResults:
    """The results of these FINISHED trial runs, in the order every reader uses (by Tune trial id, then run)."""
    ordered = sorted(trials, key=lambda t: (t.trial_id or "", t.run_id))
    return SweepResults.build(sweep, objectives, ordered, experiment_id=experiment_id, summary_run_id=summary_run_id)
