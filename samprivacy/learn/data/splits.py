"""Member / non-member partitions (docs/decisions.md, "Data and splits"), one generic function for every source.

    members pool     -> eval_members (n_eval) | known_members (n_known) | extra_members (the rest, trained on)
    non-members pool -> eval_nonmembers (n_eval) | known_nonmembers (n_known) | val (n_val) | unused

Both evaluation sets have n_eval examples and both attacker's known sets n_known, so each is balanced; val
comes from the non-members only, so it is never trained on and never an evaluation set. Every array is a
sorted int64 index array; the same seed gives identical arrays.
"""

from __future__ import annotations

import numpy as np

from samprivacy.errors import ConfigError

from .base import Splits


def check_seed(seed: object) -> int:
    """`seed` as a plain int; numpy's generators need a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"`seed` must be a non-negative integer, got {seed!r}")
    return int(seed)


def random_pools(n: int, n_members: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw which of n examples the target model trains on: (members, non-members), for single-pool sources."""
    if not 0 < n_members < n:
        raise ConfigError(f"`n_members` must be in 1..{n - 1} for a dataset of {n} examples, got {n_members}")
    # A stream of its own, so that make_splits(seed) below does not reuse the same permutation.
    order = np.random.default_rng([check_seed(seed), 0]).permutation(n)
    return np.sort(order[:n_members]), np.sort(order[n_members:])


def make_splits(
    members: np.ndarray,
    nonmembers: np.ndarray,
    *,
    n_known: int,
    n_eval: int,
    n_val: int | None = None,
    seed: int,
    pin_eval_members: np.ndarray | None = None,
    pin_eval_nonmembers: np.ndarray | None = None,
) -> Splits:
    """Partition a member pool and a non-member pool into `Splits`, deterministically by `seed`.

    members, nonmembers: 1-D index arrays into the dataset, disjoint (who the target model trains on, and who not).
    n_known: size of known_members and of known_nonmembers (the attacker's reference, balanced).
    n_eval: size of eval_members and of eval_nonmembers (the evaluation sets, balanced).
    n_val: size of val, drawn from the non-members; None takes every non-member left over.
    pin_eval_members / pin_eval_nonmembers: indices that must land in the evaluation sets (planted examples
        whose membership is what a study measures, e.g. longtail's singletons and their held-out twins).
    Members beyond n_known + n_eval become extra_members: trained on, in no attack set.
    """
    seed = check_seed(seed)
    members = _as_index(members, "members")
    nonmembers = _as_index(nonmembers, "nonmembers")
    if np.intersect1d(members, nonmembers).size:
        raise ValueError("the member and non-member pools overlap; an example cannot be both")
    for name, value in (("n_known", n_known), ("n_eval", n_eval)):
        if int(value) < 1:
            raise ConfigError(f"`{name}` must be >= 1, got {value}: the dataset is too small for this split")
    left_for_val = len(nonmembers) - n_known - n_eval
    n_val = left_for_val if n_val is None else int(n_val)
    if len(members) < n_known + n_eval:
        raise ConfigError(
            f"too few members: n_known + n_eval = {n_known} + {n_eval} = {n_known + n_eval}, but the member pool "
            f"holds {len(members)}; use a larger dataset or smaller split sizes"
        )
    if n_val < 1 or n_val > left_for_val:
        raise ConfigError(
            f"too few non-members: n_known + n_eval + n_val = {n_known} + {n_eval} + {max(n_val, 1)} needs "
            f"{n_known + n_eval + max(n_val, 1)}, but the non-member pool holds {len(nonmembers)} (val needs >= 1); "
            "use a larger dataset or smaller split sizes"
        )

    rng = np.random.default_rng([seed, 1])
    eval_m, rest_m = _draw(rng, members, n_eval, pin_eval_members, "pin_eval_members")
    eval_n, rest_n = _draw(rng, nonmembers, n_eval, pin_eval_nonmembers, "pin_eval_nonmembers")
    # rest_* come back shuffled, so slicing them is a uniform random draw.
    return Splits(
        known_members=np.sort(rest_m[:n_known]),
        eval_members=eval_m,
        known_nonmembers=np.sort(rest_n[:n_known]),
        eval_nonmembers=eval_n,
        val=np.sort(rest_n[n_known : n_known + n_val]),
        extra_members=np.sort(rest_m[n_known:]),
    )


def _draw(rng: np.random.Generator, pool: np.ndarray, k: int, pinned: np.ndarray | None,
          name: str) -> tuple[np.ndarray, np.ndarray]:
    """k indices from pool (all of `pinned` among them) and the shuffled remainder of pool."""
    pinned = np.empty(0, np.int64) if pinned is None else _as_index(pinned, name)
    if not np.isin(pinned, pool).all():
        raise ValueError(f"`{name}` holds indices outside its pool")
    if len(pinned) > k:
        raise ConfigError(f"`{name}` pins {len(pinned)} examples into an evaluation set of n_eval = {k}; raise n_eval")
    free = rng.permutation(np.setdiff1d(pool, pinned))
    chosen = np.sort(np.concatenate([pinned, free[: k - len(pinned)]]))
    return chosen, free[k - len(pinned) :]


def _as_index(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"`{name}` must be a 1-D integer index array, got shape {a.shape} dtype {a.dtype}")
    a = a.astype(np.int64)
    if np.unique(a).size != a.size:
        raise ValueError(f"`{name}` holds duplicate indices")
    return np.sort(a)


def check_splits(splits: Splits, n: int) -> None:
    """Raise ValueError unless the arrays are disjoint, in range and both attack pairs are balanced."""
    parts = {name: getattr(splits, name) for name in ("known_members", "eval_members", "extra_members",
                                                      "known_nonmembers", "eval_nonmembers", "val")}
    everything = np.concatenate(list(parts.values()))
    if np.unique(everything).size != everything.size:
        raise ValueError("split index arrays overlap")
    if everything.size and (everything.min() < 0 or everything.max() >= n):
        raise ValueError(f"split indices fall outside 0..{n - 1}")
    if len(splits.eval_members) != len(splits.eval_nonmembers):
        raise ValueError("evaluation sets are not balanced")
    if len(splits.known_members) != len(splits.known_nonmembers):
        raise ValueError("the attacker's known sets are not balanced")
