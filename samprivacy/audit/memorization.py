"""Memorization and influence (Feldman & Zhang 2020) from a model population, and the paper's influence-entropy
buckets: pure numpy on a membership matrix and correctness arrays.

    mem_i       = P[h(x_i) = y_i | i IN] - P[h(x_i) = y_i | i OUT]             (Equation 1; pool example i)
    infl_{i,j}  = P[h(x'_j) = y'_j | i IN] - P[h(x'_j) = y'_j | i OUT]         (Equation 2; test example j)
    I_ent[j]    = -sum_i p_i log p_i,  p_i = |infl_{i,j}| / sum_i |infl_{i,j}|  (Equation 3; i of j's class)

Probabilities are averages over the models of a population (the subsampled estimator of Feldman & Zhang, who
train on 70% subsets; the LiRA-style population here trains on `fraction` of the pool). Standard error of an
estimate from n_in IN and n_out OUT models is sqrt(p_in(1-p_in)/n_in + p_out(1-p_out)/n_out) <= 1/sqrt(K) for a
balanced population of K models: 0.1 needs about 100 models, 0.05 about 400.

Test examples are put in 5 buckets by I_ent, from lowest (influenced by a few training examples: memorization)
to highest (influence spread out: learning); buckets are fixed from one population (the paper: SGD's) and every
optimizer's test accuracy is measured per bucket. With few models the buckets mostly sort noise: `null_buckets`
repeats the computation with the membership matrix shuffled (true influence zero), the spread a reader must see
beside every bucket table. Test examples every model gets right (or wrong) have no influence at all and no
entropy: they are counted, in no bucket.

Shapes: keep (K, N) bool; correct (K, N) bool; test_correct (K, M) bool; labels (N,), test_labels (M,) ints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BUCKETS = 5


def _counts(keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Models each pool example is IN for and OUT of (N,) each; both must be positive."""
    n_in = keep.sum(axis=0)
    n_out = keep.shape[0] - n_in
    if (n_in == 0).any() or (n_out == 0).any():
        raise ValueError("every pool example must be IN for at least one model and OUT for at least one")
    return n_in, n_out


def memorization(keep: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pool example's memorization score (N,) and its standard error (N,)."""
    keep, correct = np.asarray(keep, bool), np.asarray(correct, np.float64)
    n_in, n_out = _counts(keep)
    p_in = (correct * keep).sum(axis=0) / n_in
    p_out = (correct * ~keep).sum(axis=0) / n_out
    return p_in - p_out, np.sqrt(p_in * (1 - p_in) / n_in + p_out * (1 - p_out) / n_out)


def influence(keep: np.ndarray, test_correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """infl (N, M): pool example i's influence on test example j, and its standard error (N, M).
    Memory: a few N * M floats, so call it per class."""
    keep = np.asarray(keep, dtype=np.float64)
    values = np.asarray(test_correct, dtype=np.float64)
    n_in, n_out = _counts(keep)
    p_in = keep.T @ values / n_in[:, None]
    p_out = (1 - keep).T @ values / n_out[:, None]
    return p_in - p_out, np.sqrt(p_in * (1 - p_in) / n_in[:, None] + p_out * (1 - p_out) / n_out[:, None])


@dataclass(frozen=True, eq=False)
class InfluenceSummary:
    """Per test example: influence entropy (M,), its most influential same-class pool example (index into the
    pool, M,) and that influence (M,); NaN / -1 where a class has no pool examples or no influence at all."""

    entropy: np.ndarray
    top_index: np.ndarray
    top_influence: np.ndarray


def influence_entropy(keep: np.ndarray, test_correct: np.ndarray, labels: np.ndarray, test_labels: np.ndarray,
                      significance: float = 2.0) -> InfluenceSummary:
    """Equation (3) for every test example over the pool examples of its class, one class at a time.

    significance: influences within this many standard errors of zero count as zero. With K models every
    estimate carries noise of about 1/sqrt(K); summed over hundreds of same-class examples that noise, not the
    few real influences, would decide the entropy (the paper's estimates came from thousands of models). 0 keeps
    every estimate as it is.
    """
    labels, test_labels = np.asarray(labels), np.asarray(test_labels)
    m = len(test_labels)
    entropy, top_index, top_influence = np.full(m, np.nan), np.full(m, -1), np.full(m, np.nan)
    for c in np.unique(test_labels):
        pool_c, test_c = np.flatnonzero(labels == c), np.flatnonzero(test_labels == c)
        if pool_c.size == 0:
            continue
        infl, stderr = influence(keep[:, pool_c], test_correct[:, test_c])
        infl, stderr = infl.T, stderr.T  # (M_c, N_c)
        mass = np.where(np.abs(infl) > significance * stderr, np.abs(infl), 0.0)
        total = mass.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = mass / total
            h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
        entropy[test_c] = np.where(total[:, 0] > 0, h, np.nan)
        best = infl.argmax(axis=1)
        top_index[test_c] = pool_c[best]
        top_influence[test_c] = infl[np.arange(len(test_c)), best]
    return InfluenceSummary(entropy, top_index, top_influence)


def entropy_buckets(entropy: np.ndarray, buckets: int = BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """Bucket (M,) of each test example, 0 (lowest entropy) .. buckets - 1, by equal-count quantiles, and the
    bucket edges (buckets + 1,). Examples with NaN entropy (no influence at all) get bucket -1."""
    finite = np.isfinite(entropy)
    if finite.sum() < buckets:
        raise ValueError(f"{int(finite.sum())} test examples have an influence entropy; {buckets} buckets need more")
    edges = np.quantile(entropy[finite], np.linspace(0, 1, buckets + 1))
    bucket = np.clip(np.searchsorted(edges, entropy, side="right") - 1, 0, buckets - 1)
    return np.where(finite, bucket, -1), edges


def bucket_accuracy(test_correct: np.ndarray, bucket: np.ndarray, buckets: int = BUCKETS
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test accuracy per bucket: mean over models (buckets,), its standard error over models (buckets,), and each
    bucket's size. A population's models are independent draws, so the error is std over models / sqrt(K)."""
    test_correct = np.asarray(test_correct, np.float64)
    k = test_correct.shape[0]
    mean, stderr, size = np.full(buckets, np.nan), np.full(buckets, np.nan), np.zeros(buckets, int)
    for b in range(buckets):
        members = bucket == b
        size[b] = int(members.sum())
        if size[b]:
            per_model = test_correct[:, members].mean(axis=1)
            mean[b] = per_model.mean()
            stderr[b] = per_model.std(ddof=1) / np.sqrt(k) if k > 1 else np.nan
    return mean, stderr, size


def shuffled_membership(keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """keep (K, N) with each column's models permuted: every example keeps its IN count, but which models trained
    on it no longer has anything to do with what they got right (the true influence is zero)."""
    order = rng.random(keep.shape).argsort(axis=0)
    return np.take_along_axis(keep, order, axis=0)


@dataclass(frozen=True, eq=False)
class NullBuckets:
    """The bucket computation with the membership matrix shuffled (shuffles times): what noise alone gives.

    bucket_acc (B,): the mean over shuffles of each bucket's accuracy; spread: the mean over shuffles of the
    largest minus the smallest bucket accuracy, spread_std its standard deviation over shuffles."""

    bucket_acc: np.ndarray
    spread: float
    spread_std: float
    shuffles: int


def null_buckets(keep: np.ndarray, test_correct: np.ndarray, labels: np.ndarray, test_labels: np.ndarray, *,
                 rng: np.random.Generator, buckets: int = BUCKETS, significance: float = 0.0,
                 shuffles: int = 5, measured: np.ndarray | None = None) -> NullBuckets:
    """The null baseline of a bucket table: influence entropy and buckets recomputed from the same models'
    correctness with `keep` shuffled (shuffled_membership), and the accuracy per bucket of `measured` (K', M)
    (default: test_correct, the models that fixed the buckets)."""
    measured = test_correct if measured is None else measured
    rows, spreads = [], []
    for _ in range(shuffles):
        entropy = influence_entropy(shuffled_membership(keep, rng), test_correct, labels, test_labels,
                                    significance).entropy
        if np.isfinite(entropy).sum() < buckets:
            continue
        acc = bucket_accuracy(measured, entropy_buckets(entropy, buckets)[0], buckets)[0]
        rows.append(acc)
        spreads.append(np.nanmax(acc) - np.nanmin(acc))
    if not rows:
        return NullBuckets(np.full(buckets, np.nan), float("nan"), float("nan"), 0)
    return NullBuckets(np.nanmean(rows, axis=0), float(np.mean(spreads)),
                       float(np.std(spreads, ddof=1)) if len(spreads) > 1 else 0.0, len(rows))


def split_models(keep: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Two halves of a population's models (even and odd indices) such that, in each, every example is IN for
    one model at least and OUT of one at least; None when the population is too small for that."""
    halves = (np.arange(keep.shape[0]) % 2 == 0, np.arange(keep.shape[0]) % 2 == 1)
    for half in halves:
        n_in = keep[half].sum(axis=0)
        if half.sum() < 2 or (n_in == 0).any() or (n_in == half.sum()).any():
            return None
    return halves
