"""`samprivacy memorization SPEC`: the spec's optimizers' populations trained as one Ray job, then the
memorization report (report.memorization) logged to MLflow and returned.

The populations train as Ray tasks (the spec's per-trial resources each), so the optimizers train in parallel
on whatever the cluster has. A task trains a stack of models as one stacked model where the architecture allows
(FC and MLP: pipeline.members.stack_models), otherwise one model; stacks hold at most TASK_MODELS models and
are cut so that there are about as many tasks as the cluster has task slots. Each finished model's record is saved under
<workdir>/memorization/<optimizer>/model-<k>.pt as its task ends: a run interrupted mid-way continues from the
models already trained. All populations share one membership plan (same pool, same IN/OUT matrix, same
per-model seeds), so their per-example statistics are directly comparable.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import ray
import torch

from samprivacy.errors import ConfigError
from samprivacy.files import save_torch_atomic, write_json_atomic
from samprivacy.learn.population import PopulationPlan, PopulationStats, default_queries
from samprivacy.pipeline import load_data
from samprivacy.pipeline.setup import population_pool
from samprivacy.pipeline.members import (ModelRecord, stack_models, stacks_of, train_member,
                                         train_members_stacked)
from samprivacy.report.memorization import (MemorizationReport, bucket_rows, memorization_report,
                                            plot_buckets, plot_memorization, summary_rows)
from samprivacy.spec import ResolvedStorage, SweepSpec, TrialConfig
from samprivacy.sweep.space import config_from_params
from samprivacy.sweep.tracking import Tracker
from samprivacy.tags import TAG_KIND, TAG_SWEEP

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class MemorizationOutcome:
    report: MemorizationReport
    document: dict  # the JSON document (--json)
    tables: dict[str, list[dict]]  # the printed tables: "buckets" and "summary"
    files: dict[str, str]
    run_id: str | None
    mlflow_uri: str


def optimizer_configs(spec: SweepSpec) -> dict[str, TrialConfig]:
    """One TrialConfig per optimizer of the spec: every parameter fixed, one dataset, one seed."""
    problems = []
    if spec.population is None:
        problems.append("add `population` (e.g. population: {models: 32})")
    if len(spec.datasets) != 1:
        problems.append(f"name one dataset, not {len(spec.datasets)}")
    if len(spec.seeds) != 1:
        problems.append(f"name one seed, not {len(spec.seeds)} (the seed fixes the membership plan)")
    searched = [name for name, group in [*spec.optimizers.items(), ("train", spec.train)]
                for name, p in group.params().items() if not p.is_fixed]
    if searched:
        problems.append(f"fix every parameter (memorization compares one configuration per optimizer); searched: "
                        f"{', '.join(sorted(set(searched)))}")
    if problems:
        raise ConfigError(f"sweep '{spec.name}' cannot run as a memorization analysis: " + "; ".join(problems))
    return {name: config_from_params(spec, {"optimizer": name}) for name in spec.optimizers}


@ray.remote
def _train_members_task(config: TrialConfig, plan: PopulationPlan, members: list[int], queries: int,
                        threads: int) -> dict[int, dict]:
    """Models `members` of the plan, one stacked model when there are several; each model's record state."""
    torch.set_num_threads(threads)
    dataset = load_data(config)
    records = (train_members_stacked(config, dataset, plan, members, queries) if len(members) > 1 else
               {members[0]: train_member(config, dataset, plan, members[0], queries)})
    return {k: record.to_state(keep_roc=False) for k, record in records.items()}


# A task's models are saved when the task ends: a job interrupted loses at most this many per busy slot. 16 small
# models in a stack already cost a few single trainings (docs/performance.md); larger stacks save little more.
TASK_MODELS = 16


def task_stacks(pending: dict[str, list[int]], largest: dict[str, int], slots: int) -> list[tuple[str, list[int]]]:
    """The tasks of the pending models (optimizer -> model numbers): each optimizer's models in stacks of at most
    `largest[optimizer]` (1: one at a time), TASK_MODELS, and ceil(models / slots), so that there are about as
    many tasks as the cluster has task slots (never fewer while there are models enough)."""
    total = sum(len(ks) for ks in pending.values())
    share = max(1, math.ceil(total / max(slots, 1)))
    return [(name, members) for name, ks in pending.items()
            for members in stacks_of(ks, max(1, min(largest[name], share, TASK_MODELS)))]


def task_slots(resources: dict[str, float], cpu: float, gpu: float) -> int:
    """How many tasks asking for `cpu` CPUs and `gpu` GPUs the cluster's `resources` run at once (at least 1)."""
    slots = math.floor(resources.get("CPU", 1) / cpu + 1e-9)
    if gpu:
        slots = min(slots, math.floor(resources.get("GPU", 0) / gpu + 1e-9))
    return max(1, slots)


def run_memorization(spec: SweepSpec, *, workdir: str | Path | None = None, reference: str | None = None,
                     significance: float = 0.0, on_progress: Progress | None = None) -> MemorizationOutcome:
    """Train (or finish) every optimizer's population, build the report, log it to MLflow."""
    from samprivacy.sweep.cluster import start_ray  # one way a driver joins Ray

    if workdir is not None:
        spec = spec.with_workdir(workdir)
    configs = optimizer_configs(spec)
    reference = reference or ("sgd" if "sgd" in configs else next(iter(configs)))
    if reference not in configs:
        raise ConfigError(f"--reference {reference!r} is not an optimizer of the spec; choose from "
                          f"{', '.join(configs)}")
    storage = spec.resolved_storage()
    folder = storage.workdir / "memorization"
    first = next(iter(configs.values()))
    device = "cuda" if spec.resources.gpu > 0 else "cpu"
    configs = {name: c.model_copy(update={"device": device, "data_root": _absolute(c.data_root)})
               for name, c in configs.items()}
    dataset = load_data(next(iter(configs.values())))  # the preflight: a missing file stops us here
    population = spec.population
    assert population is not None  # optimizer_configs refused a spec without one
    plan = PopulationPlan.make(dataset, population.models, population.fraction, seed=first.seed,
                               pool=population_pool(dataset, population.pool))
    queries = population.queries or default_queries(dataset.feature_kind)

    records: dict[str, dict[int, ModelRecord]] = {name: {} for name in configs}
    pending: dict[str, list[int]] = {name: [] for name in configs}
    for name in configs:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for k in range(plan.models):
            path = folder / name / f"model-{k:04d}.pt"
            if path.exists():
                state = torch.load(path, weights_only=True)
                if state.get("fingerprint") != plan.fingerprint():
                    raise ConfigError(f"{path} was trained for another membership plan (another pool, dataset or "
                                      f"population size); delete {folder} to train the populations afresh")
                records[name][k] = ModelRecord.from_state(state)
            else:
                pending[name].append(k)
    total = sum(len(ks) for ks in pending.values())
    if on_progress is not None and not total:
        on_progress({"done": 0, "total": 0, "seconds": 0.0})  # everything was on disk already
    if total:
        start_ray(None)
        threads = max(1, math.floor(spec.resources.cpu))
        slots = task_slots(ray.cluster_resources(), spec.resources.cpu, spec.resources.gpu)
        largest = {name: stack_models(configs[name], dataset) for name in configs}
        task = _train_members_task.options(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)
        plan_ref = ray.put(plan)
        futures = {task.remote(configs[name], plan_ref, members, queries, threads): name
                   for name, members in task_stacks(pending, largest, slots)}
        done, started = 0, time.monotonic()
        if on_progress is not None:
            on_progress({"done": 0, "total": total, "seconds": 0.0})
        while futures:
            ready, _ = ray.wait(list(futures), num_returns=1)
            name = futures.pop(ready[0])
            for k, state in ray.get(ready[0]).items():
                save_torch_atomic({**state, "fingerprint": plan.fingerprint()}, folder / name / f"model-{k:04d}.pt")
                records[name][k] = ModelRecord.from_state(state)
                done += 1
            if on_progress is not None:
                on_progress({"done": done, "total": total, "seconds": time.monotonic() - started})
    populations = {name: PopulationStats.stack(plan.keep, [recs[k].stats for k in range(plan.models)])
                   for name, recs in records.items()}
    singletons = dataset.info.get("singletons")
    report = memorization_report(
        populations, dataset.y[plan.pool].numpy(), dataset.y[plan.test].numpy(), reference=reference,
        singletons=np.isin(plan.pool, singletons) if singletons is not None else None, significance=significance)
    document = {"name": spec.name, "dataset": first.dataset, "seed": first.seed, **report.to_dict(),
                "configs": {name: c.model_dump(mode="json", exclude_none=True) for name, c in configs.items()}}
    files = {"json": str(write_json_atomic(folder / "memorization.json", document)),
             "buckets": str(plot_buckets(report, folder / "buckets.png")),
             "memorization": str(plot_memorization(report, folder / "memorization.png"))}
    np.savez_compressed(folder / "memorization.npz", **report.arrays())  # type: ignore[arg-type]  # numpy stubs
    files["arrays"] = str(folder / "memorization.npz")
    run_id = _log(spec, storage, report, document, files)
    return MemorizationOutcome(report, document, {"buckets": bucket_rows(report), "summary": summary_rows(report)},
                               files, run_id, storage.mlflow_uri)


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def _log(spec: SweepSpec, storage: ResolvedStorage, report: MemorizationReport, document: dict, files: dict[str, str]) -> str:
    """One MLflow run (tag samprivacy.kind=memorization) in the sweep's experiment: metrics, tables, plots."""
    local = not storage.mlflow_uri.startswith(("http://", "https://", "databricks"))
    tracker = Tracker(storage.mlflow_uri, spec.name,
                      artifact_location=(storage.workdir / "mlartifacts").as_uri() if local else None)
    run = tracker.client.create_run(tracker.experiment_id, run_name="memorization",
                                    tags={TAG_SWEEP: spec.name, TAG_KIND: "memorization"})
    run_id = run.info.run_id
    tracker.log_params(run_id, {"models": report.models, "reference": report.reference,
                                "fraction": spec.population.fraction if spec.population else None, "dataset": document["dataset"]})
    metrics = {}
    for name, o in report.optimizers.items():
        metrics[f"{name}_test_acc"] = o.test_acc
        metrics[f"{name}_conf_var_out"] = o.conf_var_out
        metrics |= {f"{name}_bucket{b + 1}_acc": float(v) for b, v in enumerate(o.bucket_acc) if np.isfinite(v)}
        if o.singleton_auc is not None:
            metrics[f"{name}_singleton_auc"] = o.singleton_auc
    if report.null is not None:
        metrics |= {"null_bucket_spread": report.null.spread, "null_bucket_spread_std": report.null.spread_std}
    metrics["no_entropy"] = report.no_entropy
    tracker.log_metrics(run_id, metrics)
    rows = bucket_rows(report)
    tracker.client.log_table(run_id, {k: [r.get(k) for r in rows] for k in rows[0]}, "memorization/buckets.json")
    for path in files.values():
        tracker.client.log_artifact(run_id, path, "memorization")
    tracker.finish(run_id)
    return run_id
