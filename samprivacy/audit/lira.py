"""LiRA, the likelihood-ratio attack of Carlini et al. (2022), as pure numpy on per-example statistics.

The statistic is the logit-scaled confidence phi = log p_y - log sum_{j != y} p_j, close to Gaussian over the
randomness of training. For each example, shadow models that trained on it (IN) and did not (OUT) give Gaussians
N(mu_in, s_in^2) and N(mu_out, s_out^2); the target model's phi is then scored:

    online   log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2)          (higher = member)
    offline  log Phi((phi - mu_out) / s_out) = log Pr[Z <= phi], Z ~ N(mu_out, s_out^2)

The offline test is one-sided, as the paper's Equation 4 (1 - Pr[Z > phi]): a member's confidence is higher than
OUT models give it, never lower. The reference code scores offline with the two-sided -log N(phi; mu_out, s_out^2),
which also flags examples the target is unusually *unsure* about. With several queries per example (an image and
its mirror image) each query has its own Gaussians and the scores are averaged over queries, as in the reference.

Every example's Gaussians are fitted on the same number of shadows: each group is cut to the smallest count any
example has (the first shadows in order, as the reference code does). Otherwise, with the target left out, a
target's members have one IN shadow fewer than its non-members, so their IN mean is noisier, their squared
distance to it larger in expectation, and a weak signal ranks non-members above members (AUC below 0.5).

Variance: "global" pools the within-example variance over all examples (one s_in and one s_out per query);
"per_example" estimates it per example. Carlini et al. find the global variance better below 64 shadow models,
which is what "auto" picks. Two further differences from the reference code: the means are means (it uses
medians), and the global variance is the pooled within-example variance (it takes the std of all values pooled,
which adds the spread between examples, and its online variant uses the IN values for the OUT std too).

Shapes: target (N, Q); shadows (S, N, Q); shadow_in (S, N) bool.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch

VARIANCES = ("auto", "global", "per_example")
PER_EXAMPLE_FROM = 64  # shadow models from which "auto" estimates the variance per example
_VAR_FLOOR = 1e-12


def _as_arrays(target: npt.ArrayLike, shadows: npt.ArrayLike,
               shadow_in: npt.ArrayLike | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    target = np.asarray(target, dtype=np.float64)
    target = target[:, None] if target.ndim == 1 else target
    shadows = np.asarray(shadows, dtype=np.float64)
    shadows = shadows[..., None] if shadows.ndim == 2 else shadows
    shadow_in = np.asarray(shadow_in, dtype=bool)
    if shadows.shape[1:] != target.shape or shadow_in.shape != shadows.shape[:2]:
        raise ValueError(f"target (N, Q), shadows (S, N, Q) and shadow_in (S, N) must agree, got "
                         f"{target.shape}, {shadows.shape}, {shadow_in.shape}")
    return target, shadows, shadow_in


def gaussian(shadows: np.ndarray, members: np.ndarray, variance: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean (N, Q) and variance (N, Q) of each example's statistic over the shadows flagged in `members` (S, N).

    An example with no such shadow gets NaN. variance "global": the within-example variance pooled over all
    examples (one value per query, broadcast to (N, Q)); "per_example": each example's own (ddof 0).
    """
    if variance not in ("global", "per_example"):
        raise ValueError(f"variance must be 'global' or 'per_example', got {variance!r}")
    weight = members[..., None].astype(np.float64)  # (S, N, 1)
    count = weight.sum(axis=0)  # (N, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (weight * shadows).sum(axis=0) / count
        squares = (weight * (shadows - np.nan_to_num(mean)) ** 2).sum(axis=0)  # (N, Q)
        if variance == "per_example":
            var = squares / count
        else:
            var = np.broadcast_to(squares.sum(axis=0) / count.sum(), mean.shape)
    return mean, np.maximum(var, _VAR_FLOOR)


def _log_normal(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * (np.log(2 * math.pi * var) + (x - mean) ** 2 / var)


def resolve_variance(variance: str, shadows: int) -> str:
    if variance not in VARIANCES:
        raise ValueError(f"LiRA variance must be one of {', '.join(VARIANCES)}, got {variance!r}")
    if variance == "auto":
        return "per_example" if shadows >= PER_EXAMPLE_FROM else "global"
    return variance


def first_shadows(members: np.ndarray, count: int) -> np.ndarray:
    """`members` (S, N) cut to its first `count` True entries in every column."""
    return members & (np.cumsum(members, axis=0) <= count)


def equal_groups(shadow_in: np.ndarray, online: bool) -> tuple[np.ndarray, np.ndarray]:
    """IN and OUT masks with the same number of shadows for every example (and, online, in both groups)."""
    counts_in, counts_out = shadow_in.sum(axis=0), (~shadow_in).sum(axis=0)
    n_out = int(counts_out.min()) if counts_out.size else 0
    n_in = int(counts_in.min()) if counts_in.size else 0
    if online:
        n_in = n_out = min(n_in, n_out)
    if n_out < 1 or (online and n_in < 1):
        raise ValueError("every example needs at least one OUT shadow" + (" and one IN shadow" if online else ""))
    return first_shadows(shadow_in, n_in), first_shadows(~shadow_in, n_out)


def lira_online(target: npt.ArrayLike, shadows: npt.ArrayLike, shadow_in: npt.ArrayLike, variance: str = "auto") -> np.ndarray:
    """Online LiRA scores (N,): mean over queries of log N(phi; IN) - log N(phi; OUT). Higher = member."""
    phi, stats, inside = _as_arrays(target, shadows, shadow_in)
    assert inside is not None
    variance = resolve_variance(variance, stats.shape[0])
    members, others = equal_groups(inside, online=True)
    mu_in, var_in = gaussian(stats, members, variance)
    mu_out, var_out = gaussian(stats, others, variance)
    return (_log_normal(phi, mu_in, var_in) - _log_normal(phi, mu_out, var_out)).mean(axis=1)


def lira_offline(target: npt.ArrayLike, shadows: npt.ArrayLike, shadow_in: npt.ArrayLike | None = None, variance: str = "auto") -> np.ndarray:
    """Offline LiRA scores (N,): mean over queries of log Pr[Z <= phi], Z ~ N(mu_out, s_out^2) from the OUT
    shadows only (shadow_in None: every shadow is OUT). Higher = member."""
    shadows_arr = np.asarray(shadows)
    phi, stats, inside = _as_arrays(target, shadows_arr,
                                    np.zeros(shadows_arr.shape[:2], bool) if shadow_in is None else shadow_in)
    assert inside is not None
    variance = resolve_variance(variance, stats.shape[0])
    _, others = equal_groups(inside, online=False)
    mu_out, var_out = gaussian(stats, others, variance)
    z = torch.as_tensor((phi - mu_out) / np.sqrt(var_out))
    return torch.special.log_ndtr(z).numpy().mean(axis=1)
