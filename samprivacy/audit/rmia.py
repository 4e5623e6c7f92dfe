"""RMIA (Zarifzadeh, Liu and Shokri, ICML 2024), offline, as pure numpy on per-example probabilities.

For a candidate x and a population sample z (an example no model trained on), with Pr(x | theta) the target
model's probability of x's true label:

    LR(x, z) = [Pr(x | theta) / Pr(x)] / [Pr(z | theta) / Pr(z)]
    score(x) = fraction of population samples z with LR(x, z) >= gamma          (higher = member)

Pr(x) is the average over reference models. Offline, only reference models that did NOT train on x exist, and
the missing IN models are stood in for linearly: Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2, i.e. Pr_IN(x) is
taken as a Pr_OUT(x) + (1 - a). The same formula gives Pr(z) (every reference model is OUT for z).
a = 1 trusts the OUT models as they are; smaller a assumes training lifts a member's probability more. The best a
depends on the data, the model and the softmax temperature: the authors' configurations use a = 0.33 (CIFAR-10),
0.6 (CIFAR-100) and 0.2 (Purchase-100), and their tool picks a by attacking one reference model with the others.
`tune_a` does that here, on reference models only (never the target), which is the default ("auto").
With 1 to 4 reference models RMIA is already strong: the affordable strong attack for sweeps.

Shapes: target_x (N,), reference_x (R, N) OUT references' probabilities (NaN where a model is not a reference
for that example), target_z (Z,), reference_z (R, Z).
"""

from __future__ import annotations

import numpy as np



from samprivacy.audit.metrics import auc


def prior(reference: np.ndarray, a: float) -> np.ndarray:
    """Offline Pr(.) (n,) from OUT reference probabilities (R, n): ((1 + a) mean_OUT + (1 - a)) / 2."""
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"RMIA's a must lie in [0, 1], got {a}")
    mean_out = np.nanmean(np.asarray(reference, dtype=np.float64), axis=0)
    return (1 + a) / 2 * mean_out + (1 - a) / 2


def rmia_scores(target_x: np.ndarray, reference_x: np.ndarray, target_z: np.ndarray, reference_z: np.ndarray, *, a: float = 0.3, gamma: float = 1.0) -> np.ndarray:
    """Offline RMIA scores (N,) in [0, 1): the fraction of population samples z with LR(x, z) >= gamma.

    Vectorised by sorting: LR(x, z) >= gamma  <=>  ratio_z <= ratio_x / gamma, counted with one searchsorted.
    Equal counts (a finite population ties many x, e.g. every x beats none of z when the target is unsure of
    everything) are ordered by ratio_x = Pr(x | theta) / Pr(x) itself, what a denser population would tell
    apart: score = (count + rank) / (|Z| + 1) with rank in [0, 1) the place of ratio_x among all x. For one target
    and one population the ranking is then that of ratio_x, whatever gamma; gamma sets where the counts fall.
    """
    if gamma <= 0:
        raise ValueError(f"RMIA's gamma must be > 0, got {gamma}")
    ratio_x = np.asarray(target_x, dtype=np.float64) / prior(reference_x, a)
    ratio_z = np.sort(np.asarray(target_z, dtype=np.float64) / prior(reference_z, a))
    if ratio_z.size == 0:
        raise ValueError("RMIA needs population samples z (examples no model trained on); got none")
    count = np.searchsorted(ratio_z, ratio_x / gamma, side="right")
    order = ratio_x.argsort(kind="stable").argsort(kind="stable") / max(len(ratio_x), 1)  # in [0, 1)
    return (count + order) / (ratio_z.size + 1)


def choose_out_references(out: np.ndarray, count: int, rng: np.random.Generator, *,
                          strict: bool = True) -> np.ndarray:
    """(R, N) bool: for each example, `count` of the models flagged in `out` (R, N), chosen at random per column
    (a random priority per model and example, so that examples do not all share the same references).
    strict False: examples with fewer than `count` flagged models get all they have."""
    out = np.asarray(out, dtype=bool)
    priority = np.where(out, rng.random(out.shape), np.inf)
    rank = priority.argsort(axis=0).argsort(axis=0)  # 0 = the chosen first
    chosen = (rank < count) & out
    short = int((chosen.sum(axis=0) < count).sum())
    if short and strict:
        raise ValueError(f"{short} examples have fewer than {count} OUT reference models; lower the count")
    return chosen


A_GRID = tuple(round(0.1 * i, 1) for i in range(11))
DEFAULT_A = 0.3  # the authors' default, used (with a warning) where there is nothing to tune on


def tune_a(prob_x: np.ndarray, keep: np.ndarray, prob_z: np.ndarray, count: int, rng: np.random.Generator,
           gamma: float = 1.0) -> float | None:
    """The a of A_GRID under which RMIA best attacks (by AUC) model 0 of a set of reference models with up to
    `count` of the others, as the authors' tool picks it; None where it cannot (the caller falls back to
    DEFAULT_A and says so). Uses reference models only, never the target.

    prob_x (R, N) and prob_z (R, Z): each reference model's Pr(.|theta); keep (R, N): their membership.
    The tuning uses as many OUT references per example as every example has among models 1..R-1 (at most
    `count`, at least 1): with 4 references at fraction 0.5 model 0's non-members have only one other OUT model,
    so the tool tunes with one reference model (what the authors' offline tuning does with few references).
    """
    if keep.shape[0] < 2:
        return None
    available = int((~keep[1:]).sum(axis=0).min()) if keep.shape[1] else 0
    count = min(count, available)
    if count < 1:
        return None
    chosen = choose_out_references(~keep[1:], count, rng)
    if keep[0].all() or not keep[0].any():
        return None
    reference_x = np.where(chosen, prob_x[1:], np.nan)
    reference_z = prob_z[1:1 + count]

    def score(a: float) -> float:
        return auc(rmia_scores(prob_x[0], reference_x, prob_z[0], reference_z, a=a, gamma=gamma), keep[0])

    return max(A_GRID, key=score)
