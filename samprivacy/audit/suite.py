"""Run a set of membership-inference attacks on one trained model: the audit step of a trial.

The model is queried once on the four attack splits; the resulting Signals are shared by every single-query
attack. Every attack fits on known_members vs known_nonmembers and is scored on eval_members vs eval_nonmembers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from samprivacy import catalog
from samprivacy.audit.label_only import label_only_scores
from samprivacy.audit.lowfpr import missing_reason
from samprivacy.audit.metrics import AttackMetrics, attack_metrics, best_threshold
from samprivacy.audit.nn import nn_attack
from samprivacy.audit.signals import Signals, model_logits
from samprivacy.audit.threshold import classwise_threshold_attack, global_threshold_attack
from samprivacy.catalog import AttackEntry, AttackKind
from samprivacy.errors import ConfigError
from samprivacy.learn.data.base import Dataset

ATTACK_SPLITS = ("known_members", "known_nonmembers", "eval_members", "eval_nonmembers")


@dataclass(frozen=True, eq=False)
class AttackContext:
    """What an attack may use. known/eval: Signals of (known_members + known_nonmembers) and (eval_members +
    eval_nonmembers) in that order; *_membership: (N,) bool. model/dataset/*_index are None for signal-only runs."""

    known: Signals
    known_membership: np.ndarray
    eval: Signals
    eval_membership: np.ndarray
    seed: int = 0
    model: torch.nn.Module | None = None
    dataset: Dataset | None = None
    known_index: np.ndarray | None = None
    eval_index: np.ndarray | None = None
    device: Any = None
    batch_size: int = 1024
    options: dict = field(default_factory=dict)  # per-attack keyword arguments, e.g. {"nn": {"epochs": 50}}


@dataclass(frozen=True)
class AttackSpec:
    kind: AttackKind
    fit_and_score: Callable[[AttackContext], tuple[np.ndarray, float]]  # -> (eval scores (N_eval,), threshold)


def _threshold(entry: AttackEntry) -> AttackSpec:
    signal = entry.options["signal"]
    return AttackSpec(entry.kind, lambda c: global_threshold_attack(signal, c.known, c.known_membership, c.eval))


def _classwise(entry: AttackEntry) -> AttackSpec:
    signal = entry.options["signal"]
    return AttackSpec(entry.kind, lambda c: classwise_threshold_attack(signal, c.known, c.known_membership, c.eval))


def _nn(c: AttackContext) -> tuple[np.ndarray, float]:
    return nn_attack(c.known, c.known_membership, c.eval, seed=c.seed, **c.options.get("nn", {}))


def _label_only(c: AttackContext) -> tuple[np.ndarray, float]:
    if c.model is None or c.dataset is None:
        raise ConfigError("attack 'label_only' needs the model and dataset; call run_attacks(model, dataset, ...)")
    ds, opts = c.dataset, dict(c.options.get("label_only", {}))
    if ds.feature_kind == "continuous":
        # Noise scale from the attacker's own data (known sets), the same for known and eval queries.
        opts.setdefault("feature_std", ds.x[torch.as_tensor(c.known_index)].std(dim=0))
    # One call over known + eval, so a single seeded generator draws every perturbation.
    index = torch.as_tensor(np.concatenate([c.known_index, c.eval_index]))
    scores = label_only_scores(c.model, ds.x[index], ds.y[index], ds.feature_kind, seed=c.seed,
                               batch_size=c.batch_size, device=c.device, **opts)
    n_known = len(c.known_index) if c.known_index is not None else 0
    known_scores, eval_scores = scores[:n_known], scores[n_known:]
    return eval_scores, best_threshold(known_scores, c.known_membership)


# How each family of catalog.ATTACKS runs against one target model. Population attacks (LiRA, RMIA) need
# reference models and run in audit.population instead.
FAMILIES: dict[str, Callable[[AttackEntry], AttackSpec]] = {
    "threshold": _threshold,
    "classwise": _classwise,
    "nn": lambda entry: AttackSpec(entry.kind, _nn),
    "label_only": lambda entry: AttackSpec(entry.kind, _label_only),
}
ATTACKS: dict[str, AttackSpec] = {name: FAMILIES[entry.family](entry) for name, entry in catalog.ATTACKS.items()
                                  if not entry.needs_population}
DEFAULT_ATTACKS = catalog.DEFAULT_ATTACKS


def validate_attack_names(names: Iterable[str] | str | None) -> tuple[str, ...]:
    """Known attack names (catalog.ATTACKS), deduplicated in order (None -> every attack that needs no
    population); ConfigError naming the first unknown one."""
    if names is None:
        return DEFAULT_ATTACKS
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in catalog.ATTACKS:
            raise ConfigError(f"unknown attack {name!r}; choose from: {', '.join(catalog.ATTACKS)}")
    if not names:
        raise ConfigError(f"attacks is empty; choose at least one of: {', '.join(catalog.ATTACKS)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True, eq=False)
class AttackResult:
    name: str
    kind: AttackKind
    metrics: AttackMetrics
    scores: np.ndarray | None = field(default=None, repr=False)  # eval scores, in the eval sets' order


@dataclass(frozen=True, eq=False)
class AttackReport:
    results: dict[str, AttackResult]
    eval_membership: np.ndarray | None = field(default=None, repr=False)

    def held_out_best(self, measure: str = "accuracy", kind: AttackKind | None = None,
                      seed: int = 0) -> float | None:
        """The strongest attack by `measure`, chosen on data it is not scored on: the eval sets are halved at
        random (members and non-members each), the attack with the best value on one half is measured on the
        other, both ways, and the two are averaged; None when no attack reports the measure on a half (a TPR
        at an FPR below 1 / the half's non-members)."""
        pool = [r for r in self.results.values() if (kind is None or r.kind == kind) and r.scores is not None]
        if not pool or self.eval_membership is None:
            return None
        membership = self.eval_membership
        rng = np.random.default_rng([seed, 29])
        first = np.zeros(len(membership), bool)
        for group in (np.flatnonzero(membership), np.flatnonzero(~membership)):
            first[rng.permutation(group)[: len(group) // 2]] = True
        values = {}
        for r in pool:
            values[r.name] = [_measure(r, half, membership, measure) for half in (first, ~first)]
        usable: dict[str, tuple[float, float]] = {}  # the attacks measured on both halves
        for n, (on_first, on_second) in values.items():
            if on_first is not None and on_second is not None:
                usable[n] = (on_first, on_second)
        if not usable:
            return None
        held_out = [usable[max(usable, key=lambda n: usable[n][a])][1 - a] for a in (0, 1)]
        return float(np.mean(held_out))

    def _best(self, kind: AttackKind | None) -> AttackResult | None:
        pool = [r for r in self.results.values() if kind is None or r.kind == kind]
        return max(pool, key=lambda r: r.metrics.accuracy, default=None)

    @property
    def best(self) -> AttackResult:
        """The attack with the highest evaluation accuracy (the paper's "attack accuracy")."""
        best = self._best(None)
        if best is None:
            raise ValueError("no attack ran")
        return best

    @property
    def best_single_query(self) -> AttackResult | None:
        return self._best("single_query")

    @property
    def best_label_only(self) -> AttackResult | None:
        return self._best("label_only")

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {name: r.metrics.to_dict() for name, r in self.results.items()}


def _measure(result: AttackResult, half: np.ndarray, membership: np.ndarray, measure: str) -> float | None:
    """`measure` of one attack on one half of the eval sets, at the threshold fitted on the known sets."""
    fpr = next((f for f in catalog.LOW_FPRS if measure == f"tpr_at_fpr_{f}"), None)
    if fpr is not None and missing_reason(fpr, int((~membership[half]).sum())) is not None:
        return None
    assert result.scores is not None  # the caller pools only attacks that kept their scores
    return attack_metrics(result.scores[half], membership[half], result.metrics.threshold).to_dict()[measure]


def run_attack(name: str, context: AttackContext) -> AttackResult:
    """Fit attack `name` on the known sets in `context` and score it on the eval sets."""
    name = validate_attack_names([name])[0]
    if name not in ATTACKS:
        raise ConfigError(f"attack {name!r} needs a population of models (reference models); run it with "
                          "audit.population.audit_population, or give the trial a `population`")
    spec = ATTACKS[name]
    eval_scores, threshold = spec.fit_and_score(context)
    return AttackResult(name, spec.kind, attack_metrics(eval_scores, context.eval_membership, threshold),
                        np.asarray(eval_scores, dtype=np.float64))


def run_attacks(
    model: torch.nn.Module,
    dataset: Dataset,
    attacks: Iterable[str] | None = None,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 1024,
    seed: int = 0,
    label_only_queries: int = 16,
    nn_options: dict | None = None,
    label_only_options: dict | None = None,
    sets: Mapping[str, np.ndarray] | None = None,
    logits: torch.Tensor | None = None,
) -> AttackReport:
    """Run `attacks` (default: every attack that needs no population) on `model`.

    sets: index arrays into the dataset for each of ATTACK_SPLITS (default: dataset.splits, i.e. the model
    trained on dataset.splits.train); a population passes each model's own members and non-members.
    logits: the model's logits on known_members, known_nonmembers, eval_members, eval_nonmembers concatenated
    in that order, if the caller has them already (else one forward pass computes them).
    label_only_queries: perturbed copies per example for "label_only"; nn_options / label_only_options:
    keyword arguments for nn.nn_attack and label_only.perturb (e.g. {"epochs": 50}, {"num_flips": 4}).
    """
    names = validate_attack_names(attacks)
    sets = sets if sets is not None else {name: getattr(dataset.splits, name) for name in ATTACK_SPLITS}
    splits = {name: np.asarray(sets[name], dtype=np.int64) for name in ATTACK_SPLITS}
    for name, idx in splits.items():
        if idx.size == 0:
            raise ConfigError(f"split {name!r} of dataset {dataset.name!r} is empty; attacks need all of "
                              f"{', '.join(ATTACK_SPLITS)} non-empty (check the split sizes)")
    known_index = np.concatenate([splits["known_members"], splits["known_nonmembers"]])
    eval_index = np.concatenate([splits["eval_members"], splits["eval_nonmembers"]])
    # One forward pass over the four splits, shared by every single-query attack.
    index = np.concatenate([known_index, eval_index])
    if logits is None:
        logits = model_logits(model, dataset.x[torch.as_tensor(index)], batch_size=batch_size, device=device)
    signals = Signals.from_logits(logits, dataset.y[torch.as_tensor(index)])
    n_known = len(known_index)
    context = AttackContext(
        known=signals.select(np.arange(n_known)),
        known_membership=np.arange(n_known) < len(splits["known_members"]),
        eval=signals.select(np.arange(n_known, len(signals.labels))),
        eval_membership=np.arange(len(eval_index)) < len(splits["eval_members"]),
        seed=seed, model=model, dataset=dataset, known_index=known_index, eval_index=eval_index,
        device=device, batch_size=batch_size,
        options={"nn": dict(nn_options or {}),
                 "label_only": {"num_queries": label_only_queries, **(label_only_options or {})}},
    )
    return AttackReport({name: run_attack(name, context) for name in names}, context.eval_membership)
