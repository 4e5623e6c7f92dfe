"""TPR at a low FPR that holds as a measurement: the ROC pooled over targets, the negatives behind every figure, a
95% interval, and a missing value where the negatives cannot reach the FPR.

    figures = low_fpr_figures(scores, membership, rng=rng)      # scores, membership: (K, N), one row per target
    figures.pooled[0.001]        # LowFprTpr(value, low, high, negatives, missing) of the pooled ROC
    figures.per_target[0.001]    # the mean over targets of each target's own TPR, the same way

Pooled ROC (the LiRA reference code's figure): every target's scores on its own members and non-members in one
ROC, so K targets of N examples put about K * N * (1 - fraction) negatives behind a TPR, against N * (1 -
fraction) for one target. One threshold serves every target, as an attacker with one rule would use it.

Missing rule: with n negatives the smallest FPR above zero is 1 / n, so a "TPR at FPR f" with f * n < 1 is the
TPR at zero false positives, decided by the single highest-scoring non-member. It is reported as None with the
reason, never as a number.

Interval: a percentile bootstrap over examples (pool examples are resampled with replacement, each carrying its
scores under every target). Not an exact binomial interval at the chosen threshold: that treats the threshold as
fixed, but the threshold is itself the (1 - f) quantile of the negatives, whose noise dominates at low FPR, and
targets share examples and shadow models, so their scores are not independent draws. Resampling examples carries
both. tests/audit/test_lowfpr.py checks the coverage by simulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from samprivacy.audit.metrics import auc_from_roc, roc_curve, tpr_at_fpr
from samprivacy.catalog import LOW_FPRS

LEVEL = 0.95
BOOTSTRAPS = 400  # percentiles at 2.5% and 97.5% from 400 resamples move by about 0.1 of the interval's width
_CHUNK_ENTRIES = 2_000_000  # resamples at a time x scores per resample: each (chunk, M) float64 array <= 16 MB


@dataclass(frozen=True)
class LowFprTpr:
    """One TPR at FPR `fpr`: value and its 95% interval (None when missing), the negatives behind it, and why it
    is missing (None when it is not)."""

    fpr: float
    value: float | None
    low: float | None
    high: float | None
    negatives: int
    missing: str | None = None

    def to_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "negatives": self.negatives,
                "missing": self.missing}


def missing_reason(fpr: float, negatives: int, what: str = "") -> str | None:
    """Why a TPR at `fpr` cannot be measured on `negatives` non-members, or None when it can (fpr * n >= 1)."""
    if fpr * negatives >= 1:
        return None
    return (f"FPR {fpr:g} is below 1/{negatives} (the smallest FPR {negatives} non-members{what} can show): "
            f"it would be the TPR at zero false positives; {int(np.ceil(1 / fpr))} non-members are the least")


@dataclass(frozen=True)
class _Sorted:
    """One ROC's entries split by class and sorted by descending score, with the example (column) of each."""

    neg_scores: np.ndarray
    neg_column: np.ndarray
    pos_scores: np.ndarray
    pos_column: np.ndarray
    neg_per_example: np.ndarray  # (n,) non-member entries of each example (for the resample's total)
    pos_per_example: np.ndarray


def _sorted(scores: np.ndarray, membership: np.ndarray, column: np.ndarray, n: int) -> _Sorted:
    parts = []
    for mask in (~membership, membership):
        order = np.argsort(-scores[mask], kind="stable")
        parts.append((scores[mask][order], column[mask][order]))
    (neg_scores, neg_column), (pos_scores, pos_column) = parts
    return _Sorted(neg_scores, neg_column, pos_scores, pos_column,
                   np.bincount(column[~membership], minlength=n), np.bincount(column[membership], minlength=n))


def _weighted_tprs(roc: _Sorted, weights: np.ndarray, fprs: tuple[float, ...]) -> np.ndarray:
    """(B, F): for each row of example weights (B, n), the TPR at each FPR of the weighted ROC (an example drawn w
    times counts w times); NaN where a resample has no member or no non-member.

    The largest TPR with FPR <= f is that of the rule "score > v", v the score of the first non-member (in
    descending order) whose weight takes the weighted false positives past f: so only the top of the non-members
    is summed, which keeps a CIFAR-sized pool (800,000 scores) to seconds."""
    neg_total = weights @ roc.neg_per_example
    pos_total = weights @ roc.pos_per_example
    out = np.full((len(weights), len(fprs)), np.nan)
    n_neg = len(roc.neg_scores)
    top = min(n_neg, int(np.ceil(3 * max(fprs) * n_neg)) + 64)  # weights average 1: f * n_neg is rarely passed by 3x
    rows = np.arange(len(weights))
    ok = (pos_total > 0) & (neg_total > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.cumsum(weights[:, roc.neg_column[:top]], axis=1) / neg_total[:, None]
        for j, f in enumerate(fprs):
            passed = (rate <= f).sum(axis=1)  # non-members inside the budget (rate is non-decreasing)
            if (unsure := (passed == top) & (top < n_neg)).any():  # the budget reaches past the top: sum them all
                full = np.cumsum(weights[np.ix_(rows[unsure], roc.neg_column)], axis=1) / neg_total[unsure, None]
                passed[unsure] = (full <= f).sum(axis=1)
            v = np.where(passed < n_neg, roc.neg_scores[np.minimum(passed, n_neg - 1)], -np.inf)
            above = np.searchsorted(-roc.pos_scores, -v, side="left")  # members scored strictly above v
            tp = np.zeros(len(rows))
            if above.max() > 0:
                cum_pos = np.cumsum(weights[:, roc.pos_column[: above.max()]], axis=1)
                tp = np.where(above > 0, cum_pos[rows, np.maximum(above, 1) - 1], 0.0)
            out[:, j] = np.where(ok, tp / np.where(ok, pos_total, 1), np.nan)
    return out


def bootstrap_tprs(scores: np.ndarray, membership: np.ndarray, fprs: tuple[float, ...], rng: np.random.Generator,
                   pooled: bool, resamples: int = BOOTSTRAPS) -> np.ndarray:
    """(resamples, F) bootstrap replicates over examples (columns of scores (K, N)) of the pooled TPR (pooled True)
    or of the mean over targets of each target's TPR (pooled False)."""
    k, n = scores.shape
    if pooled:
        rocs = [_sorted(scores.ravel(), membership.ravel(), np.tile(np.arange(n), k), n)]
    else:
        rocs = [_sorted(scores[t], membership[t], np.arange(n), n) for t in range(k)]
    out = []
    chunk = max(1, _CHUNK_ENTRIES // scores.size)
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(b)]).astype(np.float64)
        out.append(np.mean([_weighted_tprs(roc, weights, fprs) for roc in rocs], axis=0))
    return np.concatenate(out)


@dataclass(frozen=True)
class LowFprFigures:
    """pooled / per_target: {fpr: LowFprTpr}; pooled_auc: the AUC of the pooled ROC; fpr, tpr: its arrays."""

    pooled: dict[float, LowFprTpr]
    per_target: dict[float, LowFprTpr]
    pooled_auc: float
    fpr: np.ndarray
    tpr: np.ndarray


def _figure(fpr: float, value: float, replicates: np.ndarray, negatives: int, what: str) -> LowFprTpr:
    reason = missing_reason(fpr, negatives, what)
    if reason is not None:
        return LowFprTpr(fpr, None, None, None, negatives, reason)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.nanpercentile(replicates, [tail, 100 - tail]) if np.isfinite(replicates).any() else (None, None)
    return LowFprTpr(fpr, float(value), None if low is None else float(low), None if high is None else float(high),
                     negatives)


def low_fpr_figures(scores: npt.ArrayLike, membership: npt.ArrayLike, *, rng: np.random.Generator,
                    fprs: tuple[float, ...] = LOW_FPRS, resamples: int = BOOTSTRAPS) -> LowFprFigures:
    """The pooled and the per-target TPR at each FPR in `fprs`, with negatives, intervals and missing values.

    scores (K, N): target k's membership score of every example; membership (K, N) bool: whether target k trained
    on it. Per target, the negatives reported are the fewest any target has (the missing rule holds for each).
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    membership = np.atleast_2d(np.asarray(membership, dtype=bool))
    if scores.shape != membership.shape:
        raise ValueError(f"scores {scores.shape} and membership {membership.shape} must have the same shape (K, N)")
    fpr, tpr, _ = roc_curve(scores.ravel(), membership.ravel())
    pooled_neg = int((~membership).sum())
    target_neg = int((~membership).sum(axis=1).min())
    per_target_values = []
    for t in range(scores.shape[0]):
        f_t, t_t, _ = roc_curve(scores[t], membership[t])
        per_target_values.append([tpr_at_fpr(f_t, t_t, f) for f in fprs])
    per_target_mean = np.mean(per_target_values, axis=0)
    reachable = [f for f in fprs if missing_reason(f, pooled_neg) is None]
    pooled_reps = bootstrap_tprs(scores, membership, fprs, rng, True, resamples) if reachable and resamples else \
        np.full((1, len(fprs)), np.nan)
    target_reps = bootstrap_tprs(scores, membership, fprs, rng, False, resamples) \
        if resamples and any(missing_reason(f, target_neg) is None for f in fprs) else np.full((1, len(fprs)), np.nan)
    return LowFprFigures(
        pooled={f: _figure(f, tpr_at_fpr(fpr, tpr, f), pooled_reps[:, j], pooled_neg, "")
                for j, f in enumerate(fprs)},
        per_target={f: _figure(f, per_target_mean[j], target_reps[:, j], target_neg, " per target")
                    for j, f in enumerate(fprs)},
        pooled_auc=auc_from_roc(fpr, tpr), fpr=fpr, tpr=tpr)
