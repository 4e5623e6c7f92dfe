"""Attack metrics, pure numpy: ROC, AUC, TPR at low FPR, and thresholds fitted to maximise balanced accuracy.

Convention: a higher score means "more likely a member"; the decision rule is `member iff score >= threshold`.
Thresholds are fitted on the attacker's known sets; `attack_metrics` only scores the evaluation sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from samprivacy.catalog import ATTACK_MEASURES
from samprivacy.catalog import LOW_FPRS


def _as_inputs(scores: npt.ArrayLike, membership: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    membership = np.asarray(membership).astype(bool).ravel()
    if scores.shape != membership.shape:
        raise ValueError(f"scores has {scores.size} entries but membership has {membership.size}; "
                         "pass one membership label per score")
    if np.isnan(scores).any():
        raise ValueError(f"scores contain {int(np.isnan(scores).sum())} NaN values; check the model's logits")
    return scores, membership


def roc_curve(scores: npt.ArrayLike, membership: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of the rule `member iff score >= t` over every distinct score t (ties form one point).

    scores: (N,) float; membership: (N,) bool, both classes present.
    Returns fpr, tpr, thresholds, each (M + 1,) for M distinct scores; the first point is (0, 0) at t = +inf.
    """
    scores, membership = _as_inputs(scores, membership)
    n_pos, n_neg = int(membership.sum()), int((~membership).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"membership needs both members and non-members, got {n_pos} members and {n_neg} non-members")
    order = np.argsort(-scores, kind="stable")
    s, m = scores[order], membership[order]
    # Cut only after the last example of each tie group, so tied scores move FPR and TPR together.
    cut = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tps, fps = np.cumsum(m)[cut], np.cumsum(~m)[cut]
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, s[cut]]


def auc_from_roc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Trapezoid area under the ROC; with tie groups as single points this equals Mann-Whitney U / (n+ n-)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def auc(scores: npt.ArrayLike, membership: npt.ArrayLike) -> float:
    """Area under the ROC curve; ties count 1/2 (equals sklearn.metrics.roc_auc_score)."""
    fpr, tpr, _ = roc_curve(scores, membership)
    return auc_from_roc(fpr, tpr)


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Largest TPR among ROC points with FPR <= target (no interpolation, so never optimistic)."""
    ok = np.asarray(fpr) <= target
    return float(np.max(np.asarray(tpr)[ok])) if ok.any() else 0.0


def fit_group_thresholds(scores: npt.ArrayLike, membership: npt.ArrayLike, groups: npt.ArrayLike, num_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """One threshold per group maximising balanced accuracy (TPR + TNR) / 2 = (1 + TPR - FPR) / 2 on that group.

    scores: (N,) float; membership: (N,) bool; groups: (N,) int in [0, num_groups).
    Returns thresholds (G,) float64 and fitted (G,) bool: False where a group lacks members or non-members
    (its threshold is NaN and the caller must fall back). Vectorised: one lexsort, no loop over groups.
    Each threshold sits midway between the last score predicted member and the next lower score.
    """
    scores, membership = _as_inputs(scores, membership)
    groups = np.asarray(groups, dtype=np.int64).ravel()
    n = scores.size
    # Sort by group, then by score descending inside each group.
    order = np.lexsort((-scores, groups))
    s, m, g = scores[order], membership[order], groups[order]
    n_pos = np.bincount(g, weights=m, minlength=num_groups)
    n_neg = np.bincount(g, minlength=num_groups) - n_pos
    start = np.searchsorted(g, np.arange(num_groups))
    # Within-group cumulative counts: global cumsum minus the cumsum before the group's first row.
    ctp, cfp = np.r_[0, np.cumsum(m)], np.r_[0, np.cumsum(~m)]
    tp, fp = ctp[1:] - ctp[start][g], cfp[1:] - cfp[start][g]
    same_next = np.r_[(s[1:] == s[:-1]) & (g[1:] == g[:-1]), False]
    with np.errstate(divide="ignore", invalid="ignore"):
        youden = tp / n_pos[g] - fp / n_neg[g]  # TPR - FPR if cut after row i
    youden[same_next | ~np.isfinite(youden)] = -np.inf
    # Per-group argmax, ties to the earliest row (highest threshold): sort by (group, -J, row), take group heads.
    by_j = np.lexsort((np.arange(n), -youden, g))
    fitted = (n_pos > 0) & (n_neg > 0)
    thresholds = np.full(num_groups, np.nan)
    if n == 0 or not fitted.any():
        return thresholds, fitted
    best = by_j[np.minimum(start, n - 1)]
    next_in_group = np.r_[g[1:] == g[:-1], False]
    nxt = np.minimum(best + 1, n - 1)
    mid = 0.5 * s[best] + 0.5 * s[nxt]
    # Midpoint of adjacent floats may round down onto the lower score; then the cut score itself separates.
    mid = np.where(mid > s[nxt], mid, s[best])
    cut_thr = np.where(next_in_group[best], mid, s[best])
    # J <= 0 everywhere: the best rule is "nobody is a member" (threshold just above the group's top score).
    none_thr = np.nextafter(s[np.minimum(start, n - 1)], np.inf)
    thresholds = np.where(youden[best] > 0, cut_thr, none_thr)
    return np.where(fitted, thresholds, np.nan), fitted


def best_threshold(scores: npt.ArrayLike, membership: npt.ArrayLike) -> float:
    """Threshold maximising balanced accuracy on the KNOWN sets; scores (N,), membership (N,) bool."""
    scores, membership = _as_inputs(scores, membership)
    thresholds, fitted = fit_group_thresholds(scores, membership, np.zeros(scores.size, dtype=np.int64), 1)
    if not fitted[0]:
        raise ValueError(
            f"cannot fit a threshold: known sets have {int(membership.sum())} members and "
            f"{int((~membership).sum())} non-members; both must be non-empty"
        )
    return float(thresholds[0])


@dataclass(frozen=True, eq=False)
class AttackMetrics:
    """Evaluation-set metrics of one attack.

    accuracy (balanced: (TPR + TNR) / 2) and advantage (TPR - FPR) use the threshold fitted on the known sets;
    auc and tpr_at_fpr_* are threshold-free. fpr, tpr: the eval ROC arrays (M + 1,).
    """

    accuracy: float
    auc: float
    tpr_at_fpr_0001: float
    tpr_at_fpr_001: float
    advantage: float
    threshold: float
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, float]:
        values = (self.accuracy, self.auc, self.tpr_at_fpr_0001, self.tpr_at_fpr_001, self.advantage)
        return {key: float(v) for key, v in zip(ATTACK_MEASURES, values)}


def attack_metrics(eval_scores: npt.ArrayLike, eval_membership: npt.ArrayLike, threshold: float) -> AttackMetrics:
    """Score an attack on the evaluation sets with a threshold fitted elsewhere (on the known sets).

    eval_scores: (N,) float; eval_membership: (N,) bool (balanced in the protocol); threshold: float.
    """
    scores, membership = _as_inputs(eval_scores, eval_membership)
    fpr, tpr, _ = roc_curve(scores, membership)
    predicted = scores >= threshold
    rule_tpr = predicted[membership].mean()
    rule_fpr = predicted[~membership].mean()
    return AttackMetrics(
        # balanced accuracy: plain accuracy on the protocol's balanced sets, and fair on a population's halves
        accuracy=float((1.0 + rule_tpr - rule_fpr) / 2.0),
        auc=auc_from_roc(fpr, tpr),
        tpr_at_fpr_0001=tpr_at_fpr(fpr, tpr, LOW_FPRS[0]),
        tpr_at_fpr_001=tpr_at_fpr(fpr, tpr, LOW_FPRS[1]),
        advantage=float(rule_tpr - rule_fpr),
        threshold=float(threshold),
        fpr=fpr,
        tpr=tpr,
    )
