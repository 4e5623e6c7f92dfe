"""A trial with a population: K models of the trial's configuration on random halves of a pool, every attack run
with each model in turn as the target.

    result = run_population_trial(config)                  # config.population = Population(models=16)
    result.summary()["lira_tpr_at_fpr_0.001"]              # the ROC pooled over the 16 targets
    result.summary()["lira_tpr_at_fpr_0.001_ci_low"]       # its 95% interval, ..._negatives the non-members behind it
    result.summary()["lira_tpr_at_fpr_0.001_per_target"]   # the mean over targets, ..._per_target_std its spread

The pool (population.pool) is by default every example outside the test and validation sets (the LiRA protocol),
or the split's members (the paper's Table 1 protocol). Single-model attacks (thresholds, NN, label-only) run
against each model right after it trains, with its own members and non-members in the pool's known half (fit)
and eval half (score); then LiRA and RMIA run on the stacked per-example statistics, scored on the whole pool
(audit.population). The privacy figures of the summary: pipeline.privacy. FC and MLP populations train as one
stacked model (learn.stacked: the same per-model protocol, a few single-model trainings' cost); other models train
one at a time. Resumable: a checkpoint holds every finished model's record and the training state of the model
(or the stack) in progress; a population resumed from it trains only what is missing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from samprivacy import catalog
from samprivacy.audit.memorization import memorization
from samprivacy.audit.lowfpr import missing_reason
from samprivacy.audit.population import (ConfidenceVariance, PopulationAttackOptions, PopulationAttackResult,
                                         audit_population, confidence_variance)
from samprivacy.catalog import LOW_FPRS
from samprivacy.errors import ConfigError
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.population import STAT_FIELDS, PopulationPlan, PopulationStats, default_queries
from samprivacy.learn.train import resolve_device
from samprivacy.pipeline.members import (ModelRecord, stack_models, stacks_of, train_member,
                                         train_members_stacked)
from samprivacy.pipeline.privacy import best_attacks, finite_or_none, per_target_table, population_attack_metrics
from samprivacy.pipeline.references import ReferenceStore
from samprivacy.pipeline.setup import load_data, population_pool
from samprivacy.pipeline.single import save_roc
from samprivacy.spec import Population, TrialConfig


@dataclass(eq=False)
class PopulationTrialResult:
    config: TrialConfig
    dataset: Dataset
    plan: PopulationPlan
    records: list[ModelRecord]
    stats: PopulationStats
    strong: dict[str, PopulationAttackResult]  # population attacks (LiRA, RMIA) by name
    variance: ConfidenceVariance
    seconds: float
    device: str

    def eval_negatives(self) -> int:
        """Non-members per target in the pool's eval half (the fewest any target has): what a single-model
        attack's TPR stands on."""
        return int((~self.plan.known[None, :] & ~self.plan.keep).sum(axis=1).min())

    def attack_tables(self) -> tuple[dict[str, dict], dict[str, dict]]:
        """Every attack's headline measures and their spread over targets. Single-model attacks: means over
        targets (eval half); population attacks: AUC and TPRs of the pooled ROC (whole pool), accuracy and
        advantage as means. A TPR below 1 / negatives is None."""
        table = per_target_table([r.attacks for r in self.records], self.strong, self.eval_negatives())
        means, stds = {}, {}
        for name, values in table.items():
            means[name] = {k: finite_or_none(float(v.mean())) for k, v in values.items()}
            stds[name] = {k: finite_or_none(float(v.std(ddof=1)) if len(v) > 1 else 0.0) for k, v in values.items()}
        for name, result in self.strong.items():
            means[name] = result.primary()
        return means, stds

    def low_fpr(self) -> dict[str, dict]:
        """attack -> `tpr_at_fpr_F` -> {value, low, high, negatives, missing, pooled}: every low-FPR TPR with the
        negatives behind it (population attacks: the pooled ROC with its 95% interval; single-model attacks: the
        mean over targets on the eval half, no interval)."""
        out = {}
        negatives = self.eval_negatives()
        means = self.attack_tables()[0]
        for name in self.records[0].attacks:
            out[name] = {f"tpr_at_fpr_{f}": {"value": means[name][f"tpr_at_fpr_{f}"], "low": None, "high": None,
                                             "negatives": negatives, "missing": missing_reason(f, negatives,
                                                                                               " per target"),
                                             "pooled": False} for f in LOW_FPRS}
        for name, r in self.strong.items():
            out[name] = {f"tpr_at_fpr_{f}": {**r.figures.pooled[f].to_dict(), "pooled": True} for f in LOW_FPRS}
        return out

    def summary(self) -> dict:
        """The trial's JSON document: the single-trial fields (averaged over the population) plus
        test_acc_std, each population attack's figures (pipeline.privacy), the low-FPR table, the confidence
        variance, and what is missing and why."""
        means, stds = self.attack_tables()
        per_model = {key: np.array([r.metrics[key] for r in self.records], float)
                     for key in ("train_acc", "val_acc", "test_acc", "best_epoch")}
        table = per_target_table([r.attacks for r in self.records], self.strong, self.eval_negatives())
        strong, missing = population_attack_metrics(self.strong)
        warnings = [w for r in self.strong.values() for w in r.warnings]
        pop = _population(self.config)
        return {
            "config": self.config.model_dump(mode="json"),
            "test_acc": float(per_model["test_acc"].mean()),
            "test_acc_std": float(per_model["test_acc"].std(ddof=1)) if len(self.records) > 1 else 0.0,
            "train_acc": float(per_model["train_acc"].mean()),
            "val_acc": float(per_model["val_acc"].mean()),
            **best_attacks(table),
            **strong,
            **({"rmia_a": float(np.mean(self.strong["rmia"].a))} if "rmia" in self.strong else {}),
            **self.variance.summary,
            "best_epoch": int(round(per_model["best_epoch"].mean())),
            "method": self.config.method,
            # a defense's own numbers (dp: epsilon, the same for every model of the population), their mean
            **{key: float(np.mean([r.metrics[key] for r in self.records]))
               for key in self.records[0].metrics if key not in (*per_model, "seconds")},
            "attacks": means,
            "attacks_std": stds,
            "low_fpr": self.low_fpr(),
            "missing": missing,
            "warnings": warnings,
            "population": {"models": len(self.records), "fraction": pop.fraction, "pool_protocol": pop.pool,
                           "pool": int(len(self.plan.pool)), "test": int(len(self.plan.test)),
                           "negatives_per_target": int((~self.plan.keep).sum(axis=1).min()),
                           "negatives_pooled": int((~self.plan.keep).sum()),
                           "shared_references": pop.shared_references,
                           "per_model": [dict(r.metrics) for r in self.records]},
            "history": [{"model": k, **row} for k, r in enumerate(self.records) for row in r.history],
            "device": self.device,
            "seconds": self.seconds,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-example arrays saved as population.npz (dataset indices, membership, statistics, scores)."""
        mem, mem_err = memorization(self.stats.keep, self.stats.correct)
        return {"pool": self.plan.pool, "test": self.plan.test, "keep": self.plan.keep, "known": self.plan.known,
                "seeds": self.plan.seeds, "labels": self.dataset.y[self.plan.pool].numpy(),
                "test_labels": self.dataset.y[self.plan.test].numpy(),
                **{f: getattr(self.stats, f) for f in STAT_FIELDS},
                "memorization": mem, "memorization_stderr": mem_err,
                "conf_var_out": self.variance.out, "conf_var_test": self.variance.test,
                **{f"{name}_scores": r.scores.astype(np.float32) for name, r in self.strong.items()}}

    def save(self, directory: str | Path) -> Path:
        """Write summary.json, splits.npz, population.npz (per-example arrays, not the models), and roc.npz /
        roc.png of the first target's attacks."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "summary.json").write_text(json.dumps(self.summary(), indent=2))
        self.dataset.splits.save(directory / "splits.npz")
        np.savez_compressed(directory / "population.npz", **self.arrays())  # type: ignore[arg-type]  # numpy stubs
        curves = {**self.records[0].attacks, **{n: r.per_target[0] for n, r in self.strong.items()}}
        save_roc(curves, directory, title="membership inference ROC (target: model 0)")
        return directory


def _population(config: TrialConfig) -> Population:
    if config.population is None:
        raise ConfigError("run_population_trial needs config.population; use run_trial for a single model")
    return config.population


def attack_options(config: TrialConfig) -> PopulationAttackOptions:
    pop = _population(config)
    return PopulationAttackOptions(lira_variance=pop.lira.variance, rmia_reference_models=pop.rmia.reference_models,
                                   rmia_a=pop.rmia.a, rmia_gamma=pop.rmia.gamma, seed=config.seed)


def restore_records(resume: dict | None, plan: PopulationPlan) -> dict[int, ModelRecord]:
    if not resume:
        return {}
    if resume.get("fingerprint") != plan.fingerprint():
        raise ConfigError("the population checkpoint belongs to another membership plan (a different dataset, "
                          "split, seed or population size); start the trial afresh")
    return {int(k): ModelRecord.from_state(state) for k, state in resume["records"].items()}


def run_population_trial(config: TrialConfig, *, on_epoch: Callable | None = None, resume: dict | None = None,
                         references: ReferenceStore | None = None, stacked: bool = True) -> PopulationTrialResult:
    """Train and audit the population of `config.population`. on_epoch(row, checkpoint): row carries `model`
    and `step` (a running epoch count over models); checkpoint() returns what `resume` takes. stacked=False
    trains every model in a row even where they could stack (the reference path)."""
    start = time.perf_counter()
    pop = _population(config)
    if pop.shared_references and references is None:
        raise ConfigError("population.shared_references needs a folder for the reference models; pass "
                          "--references DIR (the sweep service uses <workdir>/references)")
    dataset = load_data(config)
    plan = PopulationPlan.make(dataset, pop.models, pop.fraction, seed=config.seed,
                               pool=population_pool(dataset, pop.pool))
    queries = pop.queries or default_queries(dataset.feature_kind)
    names = config.attack_names()
    single = tuple(n for n in names if not catalog.ATTACKS[n].needs_population)
    strong = tuple(n for n in names if catalog.ATTACKS[n].needs_population)
    records = restore_records(resume, plan)
    missing = [k for k in range(plan.models) if k not in records]
    sequential_state = resume is not None and "model" in resume  # a model half-trained alone continues alone
    size = stack_models(config, dataset) if missing and stacked and not sequential_state else 1
    if size > 1:
        _train_stacks(config, dataset, plan, missing, size, queries, single, records, on_epoch, resume)
    for k in missing:
        if k in records:
            continue
        train_state = resume["train"] if resume and resume.get("model") == k else None

        def hook(row: dict, checkpoint: Callable[[], dict], k: int = k) -> None:
            if on_epoch is not None:
                on_epoch({**row, "model": k, "step": k * config.epochs + row["epoch"]},
                         lambda: {"fingerprint": plan.fingerprint(), "model": k, "train": checkpoint(),
                                  "records": {j: r.to_state(keep_roc=j == 0) for j, r in records.items()}})

        records[k] = train_member(config, dataset, plan, k, queries, single, temperature=pop.rmia.temperature,
                                  on_epoch=hook, resume=train_state)
    ordered = [records[k] for k in range(plan.models)]
    stats = PopulationStats.stack(plan.keep, [r.stats for r in ordered])
    refs = (references.get(config, dataset, pop.shared_references, pop.fraction, queries, pop.rmia.temperature,
                           pool=plan.pool)
            if pop.shared_references and strong and references is not None else None)
    results = audit_population(stats, plan.known, strong, attack_options(config), refs)
    return PopulationTrialResult(config, dataset, plan, ordered, stats, results, confidence_variance(stats),
                                 time.perf_counter() - start, str(resolve_device(config.device)))


def _train_stacks(config: TrialConfig, dataset: Dataset, plan: PopulationPlan, missing: list[int], size: int,
                  queries: int, attacks: tuple[str, ...], records: dict[int, ModelRecord], on_epoch: Callable | None,
                  resume: dict | None) -> None:
    """The missing models, stack after stack, into `records`; on_epoch sees one row per model each epoch, as it
    would in a row, and a checkpoint holds the finished records and the stack in progress. A resumed stack goes on
    as it was cut (another device may cut the rest otherwise)."""
    state = (resume or {}).get("stack")
    first = state["members"] if state is not None else []
    if missing[:len(first)] != first:
        raise ConfigError("the population checkpoint's stacked models are not the ones left to train; "
                          "start the trial afresh")
    stacks = ([first] if first else []) + stacks_of(missing[len(first):], size)
    for members in stacks:
        def hook(rows: list[dict], checkpoint: Callable[[], dict], members: list[int] = members) -> None:
            snapshot = lambda: {"fingerprint": plan.fingerprint(),  # noqa: E731 (called only when one is due)
                                "stack": {"members": members, "train": checkpoint()},
                                "records": {j: r.to_state(keep_roc=j == 0) for j, r in records.items()}}
            for k, row in zip(members, rows):
                if on_epoch is not None:
                    on_epoch({**row, "model": k, "step": k * config.epochs + row["epoch"]}, snapshot)

        train_state = state["train"] if state is not None and state["members"] == members else None
        records.update(train_members_stacked(config, dataset, plan, members, queries, attacks,
                                             temperature=_population(config).rmia.temperature, on_epoch=hook,
                                             resume=train_state))
