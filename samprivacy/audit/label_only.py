"""Label-only multi-query attack (Choquette-Choo et al. 2021): members stay correctly classified under perturbation.

Each example is queried on K perturbed copies; its score is the fraction classified correctly (higher = member).
Perturbations follow `Dataset.feature_kind`: "image" shifts and horizontal flips (a fixed, ordered set),
"binary" flips of k random features, "continuous" Gaussian noise of sigma * per-feature std (both seeded).
The threshold is fitted on the known sets by the caller; queries are batched over examples and copies.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from samprivacy.audit.signals import model_logits
from samprivacy.errors import ConfigError
from samprivacy.learn.augment import shift, view_list

FEATURE_KINDS = ("image", "binary", "continuous")


def image_augmentations(max_shift: int) -> list[tuple[bool, int, int]]:
    """All (flip, dx, dy) with |dx| + |dy| <= max_shift, identity first, then by shift size (Choquette-Choo Sec. 4)."""
    return view_list(max_shift)


def perturb(
    x: torch.Tensor,
    feature_kind: str,
    num_queries: int,
    generator: torch.Generator | None = None,
    *,
    max_shift: int = 2,
    num_flips: int | None = None,
    noise_scale: float = 0.1,
    feature_std: torch.Tensor | None = None,
) -> torch.Tensor:
    """K = num_queries perturbed copies of x (N, ...) -> (K, N, ...), same dtype.

    image: the first K of image_augmentations(max_shift) (deterministic); binary: flip num_flips random features
    per copy (default 1% of D, at least 1); continuous: add N(0, (noise_scale * feature_std)^2), feature_std (D,)
    defaulting to x's own std. Random choices come from `generator` (seed it for reproducible queries).
    """
    if feature_kind not in FEATURE_KINDS:
        raise ConfigError(f"unknown feature_kind {feature_kind!r}; choose from: {', '.join(FEATURE_KINDS)}")
    if num_queries < 1:
        raise ConfigError(f"label_only_queries must be >= 1, got {num_queries}; use e.g. 16")
    if feature_kind == "image":
        augs = image_augmentations(max_shift)
        if num_queries > len(augs):
            raise ConfigError(f"label_only_queries={num_queries} exceeds the {len(augs)} image augmentations with "
                              f"max_shift={max_shift}; lower label_only_queries or raise max_shift")
        return torch.stack([shift(x.flip(-1) if flip else x, dx, dy) for flip, dx, dy in augs[:num_queries]])
    copies = x.unsqueeze(0).expand(num_queries, *x.shape)
    if feature_kind == "binary":
        d = x.shape[1]
        k = num_flips if num_flips is not None else max(1, math.ceil(0.01 * d))
        if not 1 <= k <= d:
            raise ConfigError(f"num_flips must be in [1, {d}] (the feature count), got {k}")
        # k distinct features per copy: indices of the k largest of D uniform draws.
        idx = torch.rand(num_queries, x.shape[0], d, generator=generator).topk(k, dim=-1).indices
        mask = torch.zeros(num_queries, x.shape[0], d, dtype=torch.bool).scatter_(-1, idx, True)
        return torch.where(mask, 1 - copies, copies)
    std = feature_std if feature_std is not None else x.std(dim=0)
    noise = torch.randn(copies.shape, generator=generator, dtype=x.dtype)
    return copies + noise * (noise_scale * std)


def label_only_scores(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    feature_kind: str,
    num_queries: int = 16,
    *,
    seed: int = 0,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    **perturb_kwargs: Any,
) -> np.ndarray:
    """Fraction (N,) float64 of the K perturbed copies of each example that `model` labels y (N,).

    Examples are processed in chunks of about batch_size model inputs (chunk * K <= batch_size when possible).
    """
    generator = torch.Generator().manual_seed(seed)
    if feature_kind == "continuous" and "feature_std" not in perturb_kwargs:
        perturb_kwargs["feature_std"] = x.std(dim=0)  # one std for all chunks, so scores don't depend on chunking
    chunk = max(1, batch_size // num_queries)
    correct = []
    for i in range(0, x.shape[0], chunk):
        xb, yb = x[i : i + chunk], y[i : i + chunk]
        queries = perturb(xb, feature_kind, num_queries, generator, **perturb_kwargs)
        logits = model_logits(model, queries.reshape(-1, *xb.shape[1:]), batch_size=batch_size, device=device)
        pred = logits.argmax(dim=1).reshape(num_queries, -1)
        correct.append((pred == yb[None, :]).double().mean(dim=0))
    return torch.cat(correct).numpy() if correct else np.empty(0)
