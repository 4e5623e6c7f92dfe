"""A trial with a population: K models of the trial's configuration on random halves of the member pool, every
attack run with each model in turn as the target, metrics averaged over targets with their spread.

    result = run_population_trial(config)           # config.population = Population(models=16)
    result.summary()["lira_tpr_at_fpr_0.001"]       # mean over the 16 targets; ..._std beside it

Single-model attacks (thresholds, NN, label-only) run against each model right after it trains, with its own
members and non-members in the pool's known half (fit) and eval half (score); then LiRA and RMIA run on the
stacked per-example statistics (audit.population). Resumable: a checkpoint holds every finished model's record
and the current model's training state; a population resumed from it trains only what is missing.
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
from samprivacy.audit.population import (ConfidenceVariance, PopulationAttackOptions, PopulationAttackResult,
                                         audit_population, confidence_variance, summarise)
from samprivacy.errors import ConfigError
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.population import STAT_FIELDS, PopulationPlan, PopulationStats, default_queries
from samprivacy.learn.train import resolve_device
from samprivacy.pipeline.members import ModelRecord, train_member
from samprivacy.pipeline.references import ReferenceStore
from samprivacy.pipeline.setup import load_data
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

    def attack_tables(self) -> tuple[dict[str, dict], dict[str, dict]]:
        """Every attack's measures averaged over targets, and their standard deviations."""
        means, stds = {}, {}
        for name in self.records[0].attacks:
            means[name], stds[name] = summarise([r.attacks[name].to_dict() for r in self.records])
        for name, result in self.strong.items():
            means[name], stds[name] = result.mean(), result.std()
        return means, stds

    def summary(self) -> dict:
        """The trial's JSON document: the single-trial fields (averaged over the population) plus
        test_acc_std, each population attack's `<attack>_<measure>` (and `_std`), and the confidence variance."""
        means, stds = self.attack_tables()
        per_model = {key: np.array([r.metrics[key] for r in self.records], float)
                     for key in ("train_acc", "val_acc", "test_acc", "best_epoch")}

        def best(kind: str | None) -> str | None:
            pool = [n for n in means if kind is None or catalog.ATTACKS[n].kind == kind]
            return max(pool, key=lambda n: means[n]["accuracy"], default=None)

        top, sq, lo = best(None), best("single_query"), best("label_only")
        assert top is not None  # every trial runs at least one attack
        strong = {catalog.attack_measure_metric(name, key): value for name in self.strong
                  for key, value in means[name].items()}
        strong |= {f"{catalog.attack_measure_metric(name, key)}_std": value for name in self.strong
                   for key, value in stds[name].items()}
        return {
            "config": self.config.model_dump(mode="json"),
            "test_acc": float(per_model["test_acc"].mean()),
            "test_acc_std": float(per_model["test_acc"].std(ddof=1)) if len(self.records) > 1 else 0.0,
            "train_acc": float(per_model["train_acc"].mean()),
            "val_acc": float(per_model["val_acc"].mean()),
            "attack_acc": means[top]["accuracy"],
            "best_attack": top,
            **{f"attack_{key}": max(m[key] for m in means.values())
               for key in ("auc", "advantage", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01")},
            "single_query_acc": means[sq]["accuracy"] if sq else None,
            "label_only_acc": means[lo]["accuracy"] if lo else None,
            **strong,
            **self.variance.summary,
            "best_epoch": int(round(per_model["best_epoch"].mean())),
            "attacks": means,
            "attacks_std": stds,
            "population": {"models": len(self.records), "fraction": _population(self.config).fraction,
                           "pool": int(len(self.plan.pool)), "test": int(len(self.plan.test)),
                           "shared_references": _population(self.config).shared_references,
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
                         references: ReferenceStore | None = None) -> PopulationTrialResult:
    """Train and audit the population of `config.population`. on_epoch(row, checkpoint): row carries `model`
    and `step` (a running epoch count over models); checkpoint() returns what `resume` takes."""
    start = time.perf_counter()
    pop = _population(config)
    if pop.shared_references and references is None:
        raise ConfigError("population.shared_references needs a folder for the reference models; pass "
                          "--references DIR (the sweep service uses <workdir>/references)")
    dataset = load_data(config)
    plan = PopulationPlan.make(dataset, pop.models, pop.fraction, seed=config.seed)
    queries = pop.queries or default_queries(dataset.feature_kind)
    names = config.attack_names()
    single = tuple(n for n in names if not catalog.ATTACKS[n].needs_population)
    strong = tuple(n for n in names if catalog.ATTACKS[n].needs_population)
    records = restore_records(resume, plan)
    for k in range(plan.models):
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
    refs = (references.get(config, dataset, pop.shared_references, pop.fraction, queries, pop.rmia.temperature)
            if pop.shared_references and strong and references is not None else None)
    results = audit_population(stats, plan.known, strong, attack_options(config), refs)
    return PopulationTrialResult(config, dataset, plan, ordered, stats, results, confidence_variance(stats),
                                 time.perf_counter() - start, str(resolve_device(config.device)))
