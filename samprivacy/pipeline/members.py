"""Training the members of a population, one at a time (`train_member`) or as one stacked model
(`train_members_stacked`, in stacks of the size `stack_models` allows), and what each leaves behind: a
`ModelRecord` (its per-example statistics, accuracies and, for a trial's own models, the single-model attacks
against it). Both ways give a member the same seed, subset and batch order, so the same record to float tolerance.

Records round-trip through plain dicts of tensors (`to_state` / `from_state`), so a sweep trial can checkpoint a
half-trained population and `torch.load(..., weights_only=True)` reads it back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import torch

from samprivacy.audit import AttackMetrics, run_attacks
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.population import ModelStats, PopulationPlan, model_statistics
from samprivacy.learn.stacked import plain_training, stack_size, stackable, train_stacked
from samprivacy.learn.train import TrainResult, resolve_augment, train
from samprivacy.pipeline.setup import new_model
from samprivacy.spec import TrialConfig

ATTACK_SETS = ("known_members", "known_nonmembers", "eval_members", "eval_nonmembers")


@dataclass(frozen=True, eq=False)
class ModelRecord:
    stats: ModelStats
    metrics: dict[str, float]  # train_acc, val_acc, test_acc, best_epoch, seconds
    attacks: dict[str, AttackMetrics]  # single-model attacks against this model (empty for reference models)
    history: list[dict]  # the training curves, one row per epoch

    def to_state(self, keep_roc: bool) -> dict:
        attacks = {name: {**m.to_dict(), "threshold": m.threshold,
                          **({"fpr": torch.from_numpy(m.fpr), "tpr": torch.from_numpy(m.tpr)} if keep_roc else {})}
                   for name, m in self.attacks.items()}
        return {"stats": {f.name: torch.from_numpy(np.asarray(getattr(self.stats, f.name)))
                          for f in fields(ModelStats)},
                "metrics": dict(self.metrics), "attacks": attacks, "history": list(self.history)}

    @classmethod
    def from_state(cls, state: dict) -> "ModelRecord":
        stats = ModelStats(**{k: v.numpy() for k, v in state["stats"].items()})
        attacks = {name: AttackMetrics(accuracy=m["accuracy"], auc=m["auc"], tpr_at_fpr_0001=m["tpr_at_fpr_0.001"],
                                       tpr_at_fpr_001=m["tpr_at_fpr_0.01"], advantage=m["advantage"],
                                       threshold=m["threshold"],
                                       fpr=m["fpr"].numpy() if "fpr" in m else np.empty(0),
                                       tpr=m["tpr"].numpy() if "tpr" in m else np.empty(0))
                   for name, m in state["attacks"].items()}
        return cls(stats, dict(state["metrics"]), attacks, list(state["history"]))


def member_sets(plan: PopulationPlan, k: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Model k's attack sets (dataset indices): its members and non-members in the pool's known half and eval
    half; and the positions of those rows in the pool, in the order run_attacks concatenates them."""
    member = plan.keep[k]
    masks = {"known_members": plan.known & member, "known_nonmembers": plan.known & ~member,
             "eval_members": ~plan.known & member, "eval_nonmembers": ~plan.known & ~member}
    positions = [np.flatnonzero(masks[name]) for name in ATTACK_SETS]
    return {name: plan.pool[p] for name, p in zip(ATTACK_SETS, positions)}, np.concatenate(positions)


def stack_models(config: TrialConfig, dataset: Dataset) -> int:
    """How many models of `config` train as one stacked model: FC/MLP models without augmentation, as many as
    learn.stacked.stack_size allows on the trial's device; 1 (one at a time) for every other model, and for
    plain training's variants that hook into learn.train only (a defense, label smoothing, last-epoch selection)."""
    if not plain_training(config):
        return 1
    model = new_model(config, dataset, 0)
    if not stackable(model) or resolve_augment(config.augment, dataset.feature_kind):
        return 1
    return stack_size(model, config.device)


def stacks_of(members: list[int], size: int) -> list[list[int]]:
    """`members` in stacks of `size`, in order (a resumed population cuts its first stack where it was cut)."""
    return [members[i:i + size] for i in range(0, len(members), size)]


def train_member(config: TrialConfig, dataset: Dataset, plan: PopulationPlan, k: int, queries: int,
                 attacks: tuple[str, ...] = (), *, temperature: float = 1.0, on_epoch: Callable | None = None,
                 resume: dict | None = None) -> ModelRecord:
    """Train model k of the plan (its own seed, its own subset of the pool), measure it, attack it.
    metrics["seconds"] covers all three."""
    start = time.perf_counter()
    seed = int(plan.seeds[k])
    result = train(new_model(config, dataset, seed), dataset, config.model_copy(update={"seed": seed}),
                   train_index=plan.train_index(k), on_epoch=on_epoch, resume=resume)
    return measure_member(dataset, plan, k, result, queries, attacks, temperature, start)


def train_members_stacked(config: TrialConfig, dataset: Dataset, plan: PopulationPlan, members: list[int],
                          queries: int, attacks: tuple[str, ...] = (), *, temperature: float = 1.0,
                          on_epoch: Callable | None = None, resume: dict | None = None) -> dict[int, ModelRecord]:
    """Models `members` of the plan trained as one stacked model (learn.stacked), then each measured and attacked
    as train_member does. on_epoch(rows, checkpoint): one row per member each epoch. metrics["seconds"] is a
    member's share of the stacked training plus its own measuring."""
    start = time.perf_counter()
    seeds = [int(plan.seeds[k]) for k in members]
    results = train_stacked([new_model(config, dataset, s) for s in seeds], dataset,
                            [config.model_copy(update={"seed": s}) for s in seeds], [plan.train_index(k) for k in members],
                            on_epoch=on_epoch, resume=resume)
    share = (time.perf_counter() - start) / len(members)
    return {k: measure_member(dataset, plan, k, result, queries, attacks, temperature, time.perf_counter() - share)
            for k, result in zip(members, results)}


def measure_member(dataset: Dataset, plan: PopulationPlan, k: int, result: TrainResult, queries: int,
                   attacks: tuple[str, ...], temperature: float, start: float) -> ModelRecord:
    """Model k's record: its per-example statistics and, when `attacks` are named, the single-model attacks."""
    seed = int(plan.seeds[k])
    stats, pool_logits = model_statistics(result.model, dataset, plan, queries, temperature)
    report = {}
    if attacks:
        sets, positions = member_sets(plan, k)
        results = run_attacks(result.model, dataset, attacks, sets=sets, logits=pool_logits[positions],
                              device=result.device, seed=seed).results
        report = {name: r.metrics for name, r in results.items()}
    metrics = {"train_acc": result.train_acc, "val_acc": result.val_acc, "test_acc": result.test_acc,
               "best_epoch": result.best_epoch, "seconds": time.perf_counter() - start, **result.defense_metrics}
    return ModelRecord(stats, metrics, report, result.history)
