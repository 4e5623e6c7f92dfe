"""The Ray Tune trainable: a plain function that runs `pipeline.run_trial` and reports to Tune and MLflow.

Every `checkpoint_interval_s` (and after the last epoch) it writes the epoch curves to the trial's MLflow child
run and reports to Tune with a checkpoint, so a retried or resumed trial continues from its last checkpoint. It always ends with finite objectives or a stated
failure: a diverging run or bad input reports `failed` (Optuna records FAIL with the reason; Tune does not
retry it, since it would fail the same way), the MLflow run is marked FAILED with the reason, and the sweep goes on.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from ray import tune

from samprivacy.errors import SamprivacyError, TrainingDiverged
from samprivacy.pipeline import run_trial
from samprivacy.spec import OBJECTIVE_METRICS, SweepSpec, TrialConfig
from samprivacy.sweep.metrics import TrialMetrics
from samprivacy.sweep.space import config_from_params
from samprivacy.sweep.tracking import Tracker, trial_metrics

STATE_FILE = "train_state.pt"
FINAL_FILE = "final.pt"
# What the final Tune report carries: every metric a spec may name as an objective, plus context.
REPORTED = (*OBJECTIVE_METRICS, "best_attack", "best_epoch", "seconds")


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep shares (sent once through Ray's object store)."""

    spec: SweepSpec
    mlflow_uri: str
    parent_run_id: str
    data_root: str | None  # resolved to an absolute path by the driver
    references: str | None = None  # folder of shared reference models (population.shared_references)


def trial_config(ctx: SweepContext, params: dict) -> TrialConfig:
    config = config_from_params(ctx.spec, params)
    device = "cuda" if ctx.spec.resources.gpu > 0 else "cpu"
    return config.model_copy(update={"data_root": ctx.data_root, "device": device})


def _report(metrics: dict, state: dict, filename: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, Path(tmp) / filename)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _load_checkpoint() -> tuple[str, dict] | None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        for name in (FINAL_FILE, STATE_FILE):
            if (Path(directory) / name).exists():
                return name, torch.load(Path(directory) / name, weights_only=True)
    return None


def run_sweep_trial(params: dict, ctx: SweepContext) -> None:
    """Tune's function trainable (bound to `ctx` with `tune.with_parameters`)."""
    torch.set_num_threads(max(1, math.floor(ctx.spec.resources.cpu)))  # one trial must not take every core
    trial_id = tune.get_context().get_trial_id()
    config = trial_config(ctx, params)
    tracker = Tracker(ctx.mlflow_uri, ctx.spec.name)
    run_id = tracker.child_run(trial_id, ctx.parent_run_id, run_name=f"{config.optimizer}-{trial_id}", params={
        **config.model_dump(exclude_none=True), "optuna_trial": params.get("optuna_trial")})

    live = TrialMetrics(ctx.spec.name, trial_id, config.optimizer)  # Prometheus: dashboards/
    live.started()
    restored = _load_checkpoint()
    if restored is not None and restored[0] == FINAL_FILE:
        tune.report(restored[1]["metrics"])  # finished before the driver stopped: report again, nothing re-runs
        return

    pending: list[tuple[int, dict]] = []  # epoch curves not yet in MLflow
    last_report = time.monotonic()

    def flush() -> None:
        tracker.log_metric_rows(run_id, pending)
        pending.clear()

    def on_epoch(row: dict, checkpoint) -> None:
        # A checkpoint is a synchronous round trip to Tune (and a state snapshot): at most every
        # checkpoint_interval_s, and after the last epoch. Curves go to MLflow first, so a crash can only
        # repeat an epoch's values, never lose them.
        nonlocal last_report
        live.epoch()
        # a population's rows carry `model` and a running `step` over its models: one curve per metric
        pending.append((row.get("step", row["epoch"]), {("epoch_seconds" if k == "seconds" else k): v
                                                         for k, v in row.items() if k not in ("epoch", "step")}))
        if row["epoch"] < config.epochs and time.monotonic() - last_report < ctx.spec.checkpoint_interval_s:
            return
        flush()
        _report({"epoch": row["epoch"], "val_acc": row["val_acc"], "train_loss": row["train_loss"]},
                checkpoint(), STATE_FILE)
        last_report = time.monotonic()

    try:
        result = run_trial(config, on_epoch=on_epoch, resume=restored[1] if restored else None,
                           references=ctx.references)
    except (TrainingDiverged, SamprivacyError) as exc:  # deterministic: a retry would fail the same way
        flush()
        tracker.finish(run_id, failed_reason=str(exc))
        live.finished("failed")
        tune.report({"failed": str(exc)})
        return
    except Exception as exc:  # Tune retries it (FailureConfig) from the last epoch; MLflow shows why
        live.finished("error")
        tracker.set_tags(run_id, {"samprivacy.last_error": f"{type(exc).__name__}: {exc}"[:5000]})
        raise

    summary = result.summary()
    tracker.log_metrics(run_id, trial_metrics(summary))
    with tempfile.TemporaryDirectory() as tmp:
        result.save(tmp)
        tracker.log_artifacts(run_id, tmp)
    tracker.set_tags(run_id, {"samprivacy.best_attack": summary["best_attack"]})
    tracker.finish(run_id)
    metrics = {k: summary[k] for k in REPORTED if summary.get(k) is not None}
    live.finished("complete", {k: (summary[k], d) for k, d in ctx.spec.objectives.items() if summary.get(k) is not None})
    _report(metrics, {"metrics": metrics}, FINAL_FILE)
