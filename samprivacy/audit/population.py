"""Population attacks under the standard protocol: each model of a population in turn is the target, the
others are its shadow (LiRA) or reference (RMIA) models.

What each figure is scored on (docs/attacks.md):
- AUC and TPR at low FPR: on EVERY pool example against the target's own membership. LiRA and RMIA fit nothing on
  the target's known half, so they need no known/eval split, and the whole pool doubles the negatives.
- accuracy and advantage: a decision rule needs a threshold, fitted on the pool's known half (plan.known True)
  and scored on the eval half, as for the single-model attacks.
- The primary TPR at low FPR is the ROC pooled over targets (audit.lowfpr): every target's scores on its own
  members and non-members in one ROC, with its negatives, a 95% bootstrap interval, and a missing value where the
  negatives cannot reach the FPR; the mean over targets of each target's TPR is reported beside it.

Shared references: with `references` given (statistics of models trained once, e.g. with plain SGD, on their own
random halves of the same pool), RMIA and offline LiRA use those instead of the population's other models; so an
attack costs one target model, not K. Online LiRA always needs IN models of the target's own configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from samprivacy import catalog
from samprivacy.audit.lira import lira_offline, lira_online
from samprivacy.audit.lowfpr import LowFprFigures, low_fpr_figures
from samprivacy.audit.metrics import AttackMetrics, attack_metrics, auc_from_roc, best_threshold, roc_curve, tpr_at_fpr
from samprivacy.audit.rmia import DEFAULT_A, choose_out_references, rmia_scores, tune_a
from samprivacy.catalog import LOW_FPRS
from samprivacy.learn.population import PopulationStats


@dataclass(frozen=True)
class PopulationAttackOptions:
    lira_variance: str = "auto"
    rmia_reference_models: int = 2
    rmia_a: float | str = "auto"
    rmia_gamma: float = 1.0
    seed: int = 0
    resamples: int = 400  # bootstrap resamples behind each interval (audit.lowfpr)


@dataclass(frozen=True, eq=False)
class PopulationAttackResult:
    """One population attack over every target: per-target metrics, each target's scores on the pool, the
    pooled low-FPR figures, and warnings (e.g. RMIA's a that could not be tuned)."""

    name: str
    per_target: list[AttackMetrics]
    scores: np.ndarray  # (K, N) float64: target k's membership score of every pool example
    figures: LowFprFigures
    warnings: tuple[str, ...] = ()
    a: tuple[float, ...] = ()  # RMIA: the a each target used

    def mean(self) -> dict[str, float]:
        """Per-target means of every measure (AUC and TPRs on the whole pool, accuracy on the eval half)."""
        return summarise([m.to_dict() for m in self.per_target])[0]

    def std(self) -> dict[str, float]:
        return summarise([m.to_dict() for m in self.per_target])[1]

    def primary(self) -> dict[str, float | None]:
        """The attack's headline measures: AUC and TPRs of the pooled ROC (None where missing), accuracy and
        advantage as per-target means."""
        means = self.mean()
        return {"accuracy": means["accuracy"], "auc": self.figures.pooled_auc,
                **{f"tpr_at_fpr_{f}": self.figures.pooled[f].value for f in LOW_FPRS},
                "advantage": means["advantage"]}


def summarise(rows: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and standard deviation (ddof 1; 0 for one row) of each measure over targets."""
    keys = rows[0].keys()
    values = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in keys}
    return ({k: float(v.mean()) for k, v in values.items()},
            {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()})


def score_split(scores: np.ndarray, membership: np.ndarray, known: np.ndarray) -> AttackMetrics:
    """Metrics on the eval half (known False) with the threshold fitted on the known half."""
    threshold = best_threshold(scores[known], membership[known])
    return attack_metrics(scores[~known], membership[~known], threshold)


def score_target(scores: np.ndarray, membership: np.ndarray, known: np.ndarray) -> AttackMetrics:
    """A population attack against one target: accuracy and advantage as score_split (a threshold needs the known
    half), AUC, TPRs and the ROC on the whole pool (nothing was fitted on it)."""
    rule = score_split(scores, membership, known)
    fpr, tpr, _ = roc_curve(scores, membership)
    return AttackMetrics(accuracy=rule.accuracy, auc=auc_from_roc(fpr, tpr),
                         tpr_at_fpr_0001=tpr_at_fpr(fpr, tpr, LOW_FPRS[0]),
                         tpr_at_fpr_001=tpr_at_fpr(fpr, tpr, LOW_FPRS[1]), advantage=rule.advantage,
                         threshold=rule.threshold, fpr=fpr, tpr=tpr)


def _others(k: int, models: int) -> np.ndarray:
    return np.delete(np.arange(models), k)


def target_scores(name: str, k: int, stats: PopulationStats, options: PopulationAttackOptions,
                  references: PopulationStats | None = None) -> tuple[np.ndarray, float | None, str | None]:
    """Attack `name`'s scores (N,) of target model k on every pool example; RMIA's a (else None) and a warning
    when a had to fall back to the default."""
    family, online = catalog.ATTACKS[name].family, catalog.ATTACKS[name].options.get("online")
    own = stats.select(_others(k, stats.keep.shape[0]))
    refs = own if references is None or (family == "lira" and online) else references
    if family == "lira" and online:
        return lira_online(stats.conf[k], own.conf, own.keep, options.lira_variance), None, None
    if family == "lira":
        return lira_offline(stats.conf[k], refs.conf, refs.keep, options.lira_variance), None, None
    if family == "rmia":
        rng = np.random.default_rng([options.seed, 17, k])
        a: float
        warning = None
        if options.rmia_a == "auto":
            tuned = tune_a(refs.p_y, refs.keep, refs.test_p_y, options.rmia_reference_models, rng, options.rmia_gamma)
            if tuned is None:
                a = DEFAULT_A
                warning = (f"rmia: a could not be tuned on {refs.keep.shape[0]} reference models (no example has "
                           f"an OUT model among the others); used the default a = {DEFAULT_A}")
            else:
                a = tuned
        elif isinstance(options.rmia_a, str):
            raise ValueError(f"`rmia_a` must be a number or 'auto', got {options.rmia_a!r}")
        else:
            a = options.rmia_a
        chosen = choose_out_references(~refs.keep, options.rmia_reference_models, rng)
        reference_x = np.where(chosen, refs.p_y, np.nan)
        # population samples z: every reference is OUT for them; take as many (the first, in a random order)
        z_refs = rng.permutation(refs.keep.shape[0])[: options.rmia_reference_models]
        return rmia_scores(stats.p_y[k], reference_x, stats.test_p_y[k], refs.test_p_y[z_refs],
                           a=a, gamma=options.rmia_gamma), float(a), warning
    raise ValueError(f"attack {name!r} is not a population attack; population attacks: "
                     f"{', '.join(catalog.POPULATION_ATTACKS)}")


def audit_population(stats: PopulationStats, known: np.ndarray, attacks: Iterable[str], options: PopulationAttackOptions,
                     references: PopulationStats | None = None) -> dict[str, PopulationAttackResult]:
    """Run each population attack in `attacks` with every model as the target in turn.

    stats: the population's statistics; known (N,) bool: the pool's known half (where accuracy's threshold is
    fitted); references: shared reference models' statistics on the same pool and test set (None: the
    population's other models).
    """
    results = {}
    for name in attacks:
        per_target, score_rows, a_values, warnings = [], [], [], []
        for k in range(stats.keep.shape[0]):
            s, a, warning = target_scores(name, k, stats, options, references)
            score_rows.append(s)
            per_target.append(score_target(s, stats.keep[k], known))
            a_values += [a] if a is not None else []
            warnings += [warning] if warning and warning not in warnings else []
        scores = np.stack(score_rows)
        figures = low_fpr_figures(scores, stats.keep, rng=np.random.default_rng([options.seed, 23]),
                                  resamples=options.resamples)
        results[name] = PopulationAttackResult(name, per_target, scores, figures, tuple(warnings), tuple(a_values))
    return results


@dataclass(frozen=True)
class ConfidenceVariance:
    """The paper's latest finding: SAM lowers the variance of the confidence on unseen examples.

    out (N,): variance over the OUT models of each pool example's logit-scaled confidence (plain query);
    test (M,): variance over all models of each held-out example's (every model is OUT for them).
    """

    out: np.ndarray
    test: np.ndarray
    summary: dict[str, float] = field(default_factory=dict)


def confidence_variance(stats: PopulationStats) -> ConfidenceVariance:
    """NaN where fewer than 2 models are OUT; the summaries average the finite values (NaN if there are none)."""
    conf = stats.conf[..., 0].astype(np.float64)
    out = ~stats.keep
    n_out = out.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (conf * out).sum(axis=0) / n_out
        var_out = (((conf - mean) ** 2) * out).sum(axis=0) / np.maximum(n_out - 1, 1)
    var_out = np.where(n_out >= 2, var_out, np.nan)
    test = stats.test_conf[..., 0].astype(np.float64)
    var_test = test.var(axis=0, ddof=1) if test.shape[0] >= 2 else np.full(test.shape[1], np.nan)
    return ConfidenceVariance(var_out, var_test, {"conf_var_out": _finite_mean(var_out),
                                                  "conf_var_test": _finite_mean(var_test)})


def _finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
