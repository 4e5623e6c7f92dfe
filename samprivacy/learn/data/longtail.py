"""A synthetic long-tailed mixture for memorization studies (Feldman 2020, "Does learning require memorization?").

Each of `classes` classes is a mixture of `subpopulations` Gaussian clusters in `dim` dimensions. Cluster j of a
class holds a Zipf share of the class (proportional to j**-zipf, at least 2 examples), so a few clusters are large
and most are tiny. Every cluster of exactly two examples is a planted pair: one example is a *singleton* member
(its cluster's only training example) pinned into eval_members, the other its held-out *twin* pinned into
eval_nonmembers. A model can only get the twin right by memorizing the singleton, so memorization shows up in
both test accuracy and attack scores. The pairs land one on each side, so members and non-members of every
attack set follow the same distribution.

With binary=True the features are Purchase-like bits instead (e.g. dim=600, classes=100 has Purchase-100's
shape): each class has a random prototype (bits set with probability `density`), each subpopulation flips a
`spread` share of its class's bits, and each example flips a `flip` share of its subpopulation's bits.

Split: n_eval = n_known = n // 5; members = 2 * n // 5 (known and eval halves); the other non-members form val.
info: "subpopulation" (id per example), "subpopulation_label", "subpopulation_sizes", "singletons" and
"singleton_twins" (aligned index arrays: twin k shares a subpopulation with singleton k).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from samprivacy.errors import ConfigError

from .base import DatasetArrays
from .splits import check_seed, make_splits


def zipf_sizes(total: int, k: int, exponent: float) -> np.ndarray:
    """k cluster sizes summing to total, proportional to rank**-exponent, each at least 2 (a planted pair)."""
    weights = np.arange(1, k + 1, dtype=np.float64) ** -exponent
    sizes = np.maximum(2, np.floor(total * weights / weights.sum())).astype(np.int64)
    sizes[0] += total - sizes.sum()  # the head absorbs rounding, so the tail keeps its Zipf shape
    if sizes[0] < sizes[1:].max(initial=2):
        raise ConfigError(f"{total} examples per class are too few for {k} subpopulations with zipf={exponent}; "
                          f"raise `n` or lower `subpopulations`")
    return sizes


def read_longtail(
    *,
    root: str | Path | None = None,
    seed: int = 0,
    download: bool = False,
    n: int = 3000,
    classes: int = 10,
    dim: int = 32,
    subpopulations: int = 30,
    zipf: float = 1.3,
    noise: float = 0.5,
    data_seed: int | None = None,
    binary: bool = False,
    density: float = 0.2,
    spread: float = 0.3,
    flip: float = 0.15,
) -> DatasetArrays:
    """Generate the mixture (by `data_seed`, default `seed`) and split it (by `seed`); root/download are ignored.
    noise: Gaussian features only; density, spread, flip: binary features only."""
    seed = check_seed(seed)
    data_seed = seed if data_seed is None else check_seed(data_seed)
    _check_options(n=n, classes=classes, dim=dim, subpopulations=subpopulations, zipf=zipf, noise=noise,
                   density=density, spread=spread, flip=flip)

    gen = np.random.default_rng([data_seed, 3])
    per_class = [n // classes + (c < n % classes) for c in range(classes)]
    sizes = np.concatenate([zipf_sizes(t, subpopulations, zipf) for t in per_class])
    sub_label = np.repeat(np.arange(classes), subpopulations)
    sub = gen.permutation(np.repeat(np.arange(len(sizes)), sizes))  # shuffled so no slice is one class
    if binary:
        prototypes = gen.random((classes, dim)) < density
        centres = prototypes[sub_label] ^ (gen.random((len(sizes), dim)) < spread)
        x = (centres[sub] ^ (gen.random((n, dim)) < flip)).astype(np.float32)
    else:
        means = gen.standard_normal((len(sizes), dim))  # ~8 apart in 32 dims; noise 0.5 keeps clusters apart
        x = (means[sub] + noise * gen.standard_normal((n, dim))).astype(np.float32)
    y = sub_label[sub]

    # Planted pairs: the first example of each two-example cluster is the singleton, the second its twin.
    pair_ids = np.flatnonzero(sizes == 2)
    order = np.argsort(sub, kind="stable")
    first = np.searchsorted(sub[order], pair_ids)
    singletons, twins = order[first], order[first + 1]

    n_eval = n_known = n // 5
    if len(singletons) > n_eval:
        raise ConfigError(f"{len(singletons)} planted singletons do not fit in eval_members of {n_eval}; "
                          "lower `subpopulations` or `zipf`, or raise `n`")
    split_rng = np.random.default_rng([seed, 2])
    free = split_rng.permutation(np.setdiff1d(np.arange(n), np.concatenate([singletons, twins])))
    n_free_members = n_eval + n_known - len(singletons)
    members = np.concatenate([singletons, free[:n_free_members]])
    nonmembers = np.concatenate([twins, free[n_free_members:]])
    splits = make_splits(members, nonmembers, n_known=n_known, n_eval=n_eval, seed=seed,
                         pin_eval_members=singletons, pin_eval_nonmembers=twins)
    return DatasetArrays(
        name="longtail", x=x, y=y.astype(np.int64), num_classes=classes,
        feature_kind="binary" if binary else "continuous", splits=splits,
        info={
            "source": f"synthetic long-tailed {'binary' if binary else 'Gaussian'} mixture (Feldman 2020)",
            "seed": seed, "data_seed": data_seed,
            "options": dict(n=n, classes=classes, dim=dim, subpopulations=subpopulations, zipf=zipf, noise=noise,
                            binary=binary, density=density, spread=spread, flip=flip),
            "subpopulation": sub, "subpopulation_label": sub_label, "subpopulation_sizes": sizes,
            "singletons": singletons, "singleton_twins": twins,
        },
    )


def _check_options(*, n: object, classes: object, dim: object, subpopulations: object, zipf: object,
                   noise: object, density: object, spread: object, flip: object) -> None:
    integers = (("n", n, 10), ("classes", classes, 2), ("dim", dim, 1), ("subpopulations", subpopulations, 1))
    for name, value, low in integers:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
            raise ConfigError(f"`{name}` must be an integer >= {low}, got {value!r}")
    for name, value, bound in (("zipf", zipf, "> 0"), ("noise", noise, ">= 0")):
        number = float(value) if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else None
        if number is None or not np.isfinite(number) or number < 0 or (name == "zipf" and number == 0):
            raise ConfigError(f"`{name}` must be a finite number {bound}, got {value!r}")
    for name, value in (("density", density), ("spread", spread), ("flip", flip)):
        number = float(value) if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else None
        if number is None or not 0 <= number <= 0.5:
            raise ConfigError(f"`{name}` must be a share of bits in [0, 0.5], got {value!r}")
