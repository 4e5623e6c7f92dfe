"""The Ray Tune trainable: a plain function that runs `pipeline.run_trial` and reports to Tune and MLflow.

A trial is one unit of work (one configuration on one seed). The driver creates its MLflow run as Tune queues it
and passes the run id in the config (`mlflow_run_id`), so a worker never searches MLflow; the worker logs the
run's params (the TrialConfig), keeping that write off the driver, which every trial waits on. Every
`checkpoint_interval_s` the trial writes its epoch curves to that run and reports to Tune with a checkpoint, so a
retried or resumed trial continues from there; a trial shorter than the interval never checkpoints. At the end
it writes the curves, final metrics and artifacts, and reports the objectives without a checkpoint (its finished
MLflow run is the record: a trial whose run already ended, resumed or taken up again by a restarted driver,
reports that again instead of re-running). It
always ends with finite objectives or a stated failure: a diverging run or bad input reports `failed` (Optuna
records FAIL with the reason; Tune does not retry it, since it would fail the same way), the MLflow run is marked
FAILED with the reason, and the sweep goes on.

torch and the pipeline are imported inside the trial, so the driver (which imports this module for Tune) does
not pay for them.
"""

from __future__ import annotations

import importlib
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlflow.entities import Run
from ray import tune

from samprivacy.errors import SamprivacyError, TrainingDiverged
from samprivacy.spec import SweepSpec, TrialConfig
from samprivacy.sweep.metrics import TrialMetrics
from samprivacy.sweep.space import config_from_params
from samprivacy.sweep.tracking import Tracker, trial_metrics
from samprivacy.tags import TAG_BEST_ATTACK, TAG_LAST_ERROR, TAG_PARETO, TAG_WARNINGS

STATE_FILE = "train_state.pt"
RUN_TRIAL = "samprivacy.pipeline:run_trial"


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep shares (sent once through Ray's object store)."""

    spec: SweepSpec
    mlflow_uri: str | None
    parent_run_id: str | None
    data_root: str | None  # resolved to an absolute path by the driver
    references: str | None = None  # folder of shared reference models (population.shared_references)
    work: str = RUN_TRIAL  # "module:function" a trial runs; tests and benchmarks put a trivial one here


def trial_config(ctx: SweepContext, params: dict) -> TrialConfig:
    config = config_from_params(ctx.spec, params)
    device = "cuda" if ctx.spec.resources.gpu > 0 else "cpu"
    return config.model_copy(update={"data_root": ctx.data_root, "device": device})


_TRACKERS: dict[tuple[str, str], Tracker] = {}


def _tracker(ctx: SweepContext) -> Tracker:
    """One MLflow client per worker process and sweep (actors are reused across trials)."""
    if ctx.mlflow_uri is None:
        raise SamprivacyError("a sweep trial needs the sweep's MLflow store (SweepContext.mlflow_uri)")
    key = (ctx.mlflow_uri, ctx.spec.name)
    if key not in _TRACKERS:
        _TRACKERS[key] = Tracker(ctx.mlflow_uri, ctx.spec.name)
    return _TRACKERS[key]


def _work(ctx: SweepContext) -> Callable[..., Any]:
    module, _, name = ctx.work.partition(":")
    return getattr(importlib.import_module(module), name)


def _report(metrics: dict, state: dict, filename: str) -> None:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, Path(tmp) / filename)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _load_checkpoint() -> dict | None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    import torch

    with checkpoint.as_directory() as directory:
        if (Path(directory) / STATE_FILE).exists():
            return torch.load(Path(directory) / STATE_FILE, weights_only=True)
    return None


def _settled(run: Run, objectives: tuple[str, ...]) -> dict | None:
    """What a trial reported last time, if its MLflow run already finished (after the driver's last snapshot,
    before the driver stopped). A FAILED run is not settled: an error may not repeat, so it trains again."""
    if run.info.status == "FINISHED" and all(k in run.data.metrics for k in objectives):
        return {k: run.data.metrics[k] for k in objectives}
    return None


def run_sweep_trial(params: dict, ctx: SweepContext) -> None:
    """Tune's function trainable (bound to `ctx` with `tune.with_parameters`)."""
    if ctx.work == RUN_TRIAL:  # the pipeline trains with torch: one trial must not take every core
        import torch

        torch.set_num_threads(max(1, math.floor(ctx.spec.resources.cpu)))
    trial_id = tune.get_context().get_trial_id()
    config = trial_config(ctx, params)
    tracker = _tracker(ctx)
    # `method` (sgd, sam, dp-sgd, advreg, ...): what the report's rows and colours are named by
    logged = {**config.model_dump(exclude_none=True), "method": config.method,
              "optuna_trial": params.get("optuna_trial")}
    run_id = params.get("mlflow_run_id") or tracker.child_run(  # no run id: the driver has no MLflow run for it
        trial_id, ctx.parent_run_id or "", run_name=f"{config.method}-{trial_id}", params=logged,
        tags={TAG_PARETO: "false"})  # as the driver's runs: the end of the sweep tags only the front
    run = tracker.client.get_run(run_id)
    settled = _settled(run, ctx.spec.objective_names)
    if settled is not None:  # it ended before the driver stopped (a resume took it up): report it, re-run nothing
        tune.report(settled)
        return
    # The driver creates the run bare; its params go with this trial's first write (one request, off the driver).
    unlogged = None if run.data.params else logged
    live = TrialMetrics(ctx.spec.name, trial_id, config.optimizer)  # Prometheus: dashboards/
    live.started()
    restored = _load_checkpoint()

    pending: list[tuple[int, dict]] = []  # epoch curves not yet in MLflow
    last_report = time.monotonic()

    def on_epoch(row: dict, checkpoint: Callable[[], dict]) -> None:
        # A checkpoint is a synchronous round trip to Tune (and an experiment snapshot): at most every
        # checkpoint_interval_s. Curves go to MLflow first, so a crash can only repeat an epoch's values.
        nonlocal last_report, unlogged
        live.epoch()
        # a population's rows carry `model` and a running `step` over its models: one curve per metric
        pending.append((row.get("step", row["epoch"]), {("epoch_seconds" if k == "seconds" else k): v
                                                         for k, v in row.items() if k not in ("epoch", "step")}))
        if time.monotonic() - last_report < ctx.spec.checkpoint_interval_s:
            return
        tracker.log_metric_rows(run_id, pending, params=unlogged)
        pending.clear()
        unlogged = None
        _report({"epoch": row["epoch"], "val_acc": row["val_acc"], "train_loss": row["train_loss"]},
                checkpoint(), STATE_FILE)
        last_report = time.monotonic()

    try:
        result = _work(ctx)(config, on_epoch=on_epoch, resume=restored, references=ctx.references)
    except (TrainingDiverged, SamprivacyError) as exc:  # deterministic: a retry would fail the same way
        tracker.log_metric_rows(run_id, pending, params=unlogged)
        tracker.finish(run_id, failed_reason=str(exc))
        live.finished("failed")
        tune.report({"failed": str(exc)})
        return
    except Exception as exc:  # Tune retries it (FailureConfig) from the last checkpoint; MLflow shows why
        live.finished("error")
        tracker.set_tags(run_id, {TAG_LAST_ERROR: f"{type(exc).__name__}: {exc}"[:5000]})
        raise

    summary = result.summary()
    warnings = {TAG_WARNINGS: "; ".join(summary["warnings"])} if summary.get("warnings") else {}
    tracker.log_metric_rows(run_id, [*pending, (0, trial_metrics(summary))], params=unlogged,
                            tags={TAG_BEST_ATTACK: summary["best_attack"], **warnings})
    with tempfile.TemporaryDirectory() as tmp:
        result.save(tmp)
        tracker.log_artifacts(run_id, tmp)
    tracker.finish(run_id)
    live.finished("complete", {k: (summary[k], d) for k, d in ctx.spec.objectives.items()
                               if summary.get(k) is not None})
    missing = [f"objective `{k}` is missing: {summary.get('missing', {})[k]}" for k in ctx.spec.objective_names
               if summary.get(k) is None and k in summary.get("missing", {})]
    tune.report({k: summary[k] for k in ctx.spec.objective_names}  # MLflow holds the rest
                | ({"failed": "; ".join(missing)} if missing else {}))
